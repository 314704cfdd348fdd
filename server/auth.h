// Who may call what on storeledgerd. Bearer tokens come from a file
// of `TOKEN ROLE` lines; a role is writer, auditor, investigator or
// merchant:<merchant id>. The file must not be readable or writable by group
// or others (refused at start). Lookup hashes the presented token and
// compares it with every known token's hash in constant time, so neither the
// answer's timing nor an early exit tells a caller how close a guess was.
//
// A TokenTable is immutable after Load and safe for concurrent use.
#ifndef STORELEDGER_SERVER_AUTH_H_
#define STORELEDGER_SERVER_AUTH_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/ledger.h"

namespace storeledger {

// Tokens shorter than this are refused at load: they could be guessed.
inline constexpr size_t kTokenBytesMin = 16;
inline constexpr size_t kTokenBytesMax = 512;
// A token file is small; a bigger one is a mistake (wrong file).
inline constexpr size_t kTokenFileLinesMax = 10'000;

enum class Role { kWriter, kAuditor, kInvestigator, kMerchant };

struct Principal {
  Role role = Role::kWriter;
  std::string merchant_id;  // for kMerchant only
  // Everyone may do everything: the server runs without --tokens.
  bool unrestricted = false;
};

// "writer", "auditor", "investigator", "merchant:<id>"; kInvalidArgument
// naming the text otherwise.
absl::StatusOr<Principal> ParseRole(absl::string_view text);
std::string RoleName(const Principal& principal);

class TokenTable {
 public:
  // Reads `path`. kFailedPrecondition when the file is readable or writable
  // by group or others; kInvalidArgument naming the line for a bad line or a
  // token given twice; kNotFound when the file cannot be read.
  static absl::StatusOr<TokenTable> Load(const std::string& path);
  // For tests: from the text of a token file.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text);

  // The principal of `token`, or nullopt when it is not in the table. Takes
  // the same time whichever entry matches, or none.
  std::optional<Principal> Lookup(absl::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string token_sha256;  // 32 bytes
    Principal principal;
  };
  std::vector<Entry> entries_;
};

// What a call needs its role to allow.
enum class Permission { kWrite, kReadStore, kReadLog, kDigest, kAudit };

// The principal of the caller presenting `authorization` (the value of an
// `authorization` header or metadata; nullopt when absent), if its role
// allows `permission`. With no token table (nullptr), everyone is an
// unrestricted principal. kUnauthenticated when the value is absent, not
// `Bearer <token>` or an unknown token; kPermissionDenied naming the role
// when it may not do this. Shared by gRPC (server/service.cc) and HTTP
// (server/http_server.cc), so both answer a token the same way.
absl::StatusOr<Principal> Authorize(
    const TokenTable* tokens, std::optional<absl::string_view> authorization,
    Permission permission);

// The stores `principal` may read, sorted: a merchant's own, from its
// merchant record alone (one read, the same whatever store is asked about);
// nullopt for every store (any other role).
absl::StatusOr<std::optional<std::vector<std::string>>> ReadableStores(
    const Principal& principal, const Ledger& ledger);

// kPermissionDenied unless `store_id` is among `readable`. Another
// merchant's store and a store that does not exist get the same answer,
// decided without reading either, so that a merchant cannot probe which
// stores exist, by the answer or by its time. Everyone else may read any
// store (an unknown store is then the reader's kNotFound).
absl::Status CheckStoreAccess(
    const Principal& principal,
    const std::optional<std::vector<std::string>>& readable,
    absl::string_view store_id);
// The same, reading `principal`'s readable stores first.
absl::Status CheckStoreAccess(const Principal& principal, const Ledger& ledger,
                              absl::string_view store_id);

// Whether a merchant may see `refusal` in its store's history: only when
// every store it names is its own, and any merchant it names is itself
// (docs/server.md "What a merchant sees"). Always true for other roles.
bool MayReadRefusal(const Principal& principal,
                    const std::optional<std::vector<std::string>>& readable,
                    const v1::CommandRejected& refusal);

// `explain` of `command_id` (replay/read_views.h Explain) as `principal`
// may see it: a merchant only when every store the command touched is its
// own and, for a refusal, when it may see the refusal (MayReadRefusal); an
// unknown command and another merchant's get the same kPermissionDenied. Shared
// by gRPC's Explain and the console's.
absl::StatusOr<v1::Explanation> ExplainAs(const Principal& principal,
                                          const Ledger& ledger,
                                          absl::string_view command_id);

// The token of an `authorization` header value "Bearer <token>", or nullopt
// when the value has another form.
std::optional<absl::string_view> BearerToken(absl::string_view header);

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_AUTH_H_
