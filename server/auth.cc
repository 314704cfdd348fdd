#include "server/auth.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "replay/projection_store.h"
#include "replay/read_views.h"
#include "storage/event_log.h"

namespace storeledger {

absl::StatusOr<Principal> ParseRole(absl::string_view text) {
  Principal principal;
  if (text == "writer") {
    principal.role = Role::kWriter;
  } else if (text == "auditor") {
    principal.role = Role::kAuditor;
  } else if (text == "investigator") {
    principal.role = Role::kInvestigator;
  } else if (absl::StartsWith(text, "merchant:") &&
             text.size() > std::string("merchant:").size()) {
    principal.role = Role::kMerchant;
    principal.merchant_id = std::string(text.substr(9));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown role '", text,
        "' (one of writer, auditor, investigator, merchant:<merchant id>)"));
  }
  return principal;
}

std::string RoleName(const Principal& principal) {
  if (principal.unrestricted) return "unrestricted";
  switch (principal.role) {
    case Role::kWriter:
      return "writer";
    case Role::kAuditor:
      return "auditor";
    case Role::kInvestigator:
      return "investigator";
    case Role::kMerchant:
      return absl::StrCat("merchant:", principal.merchant_id);
  }
  return "?";
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text) {
  TokenTable table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (line_number > static_cast<int>(kTokenFileLinesMax)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file has more than ", kTokenFileLinesMax, " lines"));
    }
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file line ", line_number, ": expected `TOKEN ROLE`"));
    }
    if (fields[0].size() < kTokenBytesMin ||
        fields[0].size() > kTokenBytesMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("token file line ", line_number, ": a token must be ",
                       kTokenBytesMin, "..", kTokenBytesMax, " characters"));
    }
    absl::StatusOr<Principal> principal = ParseRole(fields[1]);
    if (!principal.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token file line ", line_number, ": ", principal.status().message()));
    }
    Entry entry{Sha256(fields[0]), *std::move(principal)};
    for (const Entry& other : table.entries_) {
      if (other.token_sha256 == entry.token_sha256) {
        return absl::InvalidArgumentError(absl::StrCat(
            "token file line ", line_number, ": token given twice"));
      }
    }
    table.entries_.push_back(std::move(entry));
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError("token file has no tokens");
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat("--tokens ", path, ": cannot read the file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--tokens %s: the file is accessible by group or others (mode %04o); "
        "run chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("--tokens ", path, ": cannot read the file"));
  }
  std::stringstream text;
  text << file.rdbuf();
  absl::StatusOr<TokenTable> table = Parse(text.str());
  if (!table.ok()) {
    return absl::Status(
        table.status().code(),
        absl::StrCat("--tokens ", path, ": ", table.status().message()));
  }
  return table;
}

std::optional<Principal> TokenTable::Lookup(absl::string_view token) const {
  const std::string presented = Sha256(token);
  const Entry* found = nullptr;
  // Every entry is compared, with no early exit, and CRYPTO_memcmp takes the
  // same time wherever the bytes differ.
  for (const Entry& entry : entries_) {
    const bool equal =
        CRYPTO_memcmp(presented.data(), entry.token_sha256.data(),
                      presented.size()) == 0;
    if (equal) found = &entry;
  }
  if (found == nullptr) return std::nullopt;
  return found->principal;
}

absl::StatusOr<Principal> Authorize(
    const TokenTable* tokens, std::optional<absl::string_view> authorization,
    Permission permission) {
  Principal principal;
  if (tokens == nullptr) {
    principal.unrestricted = true;
    return principal;
  }
  if (!authorization.has_value()) {
    return absl::UnauthenticatedError(
        "missing `authorization: Bearer <token>`");
  }
  std::optional<absl::string_view> token = BearerToken(*authorization);
  if (!token.has_value()) {
    return absl::UnauthenticatedError("authorization is not `Bearer <token>`");
  }
  std::optional<Principal> found = tokens->Lookup(*token);
  if (!found.has_value()) return absl::UnauthenticatedError("unknown token");
  principal = *std::move(found);
  const Role role = principal.role;
  bool allowed = false;
  switch (permission) {
    case Permission::kWrite:
      allowed = role == Role::kWriter;
      break;
    case Permission::kReadStore:
      allowed = role == Role::kAuditor || role == Role::kInvestigator ||
                role == Role::kMerchant;
      break;
    case Permission::kReadLog:
    case Permission::kDigest:
      allowed = role == Role::kAuditor || role == Role::kInvestigator;
      break;
    case Permission::kAudit:
      allowed = role == Role::kAuditor;
      break;
  }
  if (!allowed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "role ", RoleName(principal), " may not call this method"));
  }
  return principal;
}

absl::StatusOr<std::optional<std::vector<std::string>>> ReadableStores(
    const Principal& principal, const Ledger& ledger) {
  if (principal.unrestricted || principal.role != Role::kMerchant) {
    return std::optional<std::vector<std::string>>();
  }
  // The caller's own merchant record: the same read whichever store is
  // asked about, present, absent or another merchant's.
  ProjectionReader reader(&ledger.log());
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant,
                   reader.Merchant(principal.merchant_id));
  std::vector<std::string> stores;
  if (merchant != nullptr) {
    stores.assign(merchant->store_ids().begin(), merchant->store_ids().end());
    std::sort(stores.begin(), stores.end());
  }
  return std::optional<std::vector<std::string>>(std::move(stores));
}

absl::Status CheckStoreAccess(
    const Principal& principal,
    const std::optional<std::vector<std::string>>& readable,
    absl::string_view store_id) {
  if (!readable.has_value() ||
      std::binary_search(readable->begin(), readable->end(), store_id)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "role ", RoleName(principal), " may not read store ", store_id));
}

absl::Status CheckStoreAccess(const Principal& principal, const Ledger& ledger,
                              absl::string_view store_id) {
  ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> readable,
                   ReadableStores(principal, ledger));
  return CheckStoreAccess(principal, readable, store_id);
}

bool MayReadRefusal(const Principal& principal,
                    const std::optional<std::vector<std::string>>& readable,
                    const v1::CommandRejected& refusal) {
  if (!readable.has_value()) return true;
  for (const std::string& store : refusal.store_ids()) {
    if (!std::binary_search(readable->begin(), readable->end(), store)) {
      return false;
    }
  }
  // A command naming a merchant (an openStore refused because its store id
  // is taken, say) may name another one.
  const v1::Command& command = refusal.command();
  if (command.has_open_store() &&
      command.open_store().merchant_id() != principal.merchant_id) {
    return false;
  }
  return true;
}

absl::StatusOr<v1::Explanation> ExplainAs(const Principal& principal,
                                          const Ledger& ledger,
                                          absl::string_view command_id) {
  absl::StatusOr<v1::Explanation> explanation =
      Explain(ledger.log(), ledger.policy(), command_id);
  if (principal.unrestricted || principal.role != Role::kMerchant) {
    return explanation;
  }
  std::vector<std::string> stores;
  if (explanation.ok()) {
    stores = TouchedStores(std::vector<v1::Envelope>(
        explanation->events().begin(), explanation->events().end()));
  }
  ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> readable,
                   ReadableStores(principal, ledger));
  // None touched (unknown), one not its own, or a refusal naming another
  // merchant (as in its store's history): the same answer.
  const bool own =
      !stores.empty() &&
      std::all_of(stores.begin(), stores.end(),
                  [&](const std::string& id) {
                    return CheckStoreAccess(principal, readable, id).ok();
                  }) &&
      std::all_of(explanation->events().begin(), explanation->events().end(),
                  [&](const v1::Envelope& e) {
                    return !e.payload().has_command_rejected() ||
                           MayReadRefusal(principal, readable,
                                          e.payload().command_rejected());
                  });
  if (!own) {
    return absl::PermissionDeniedError(absl::StrCat(
        "role ", RoleName(principal), " may not read command ", command_id));
  }
  return explanation;
}

std::optional<absl::string_view> BearerToken(absl::string_view header) {
  constexpr absl::string_view kPrefix = "Bearer ";
  if (header.size() <= kPrefix.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kPrefix.size()), kPrefix)) {
    return std::nullopt;
  }
  return absl::StripAsciiWhitespace(header.substr(kPrefix.size()));
}

}  // namespace storeledger
