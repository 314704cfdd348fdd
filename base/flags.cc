#include "base/flags.h"

#include <algorithm>
#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "base/time.h"

namespace storeledger {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::vector<std::string>& boolean) {
  Flags flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() > 2 && arg.compare(0, 2, "--") == 0) {
      std::string name = arg.substr(2);
      std::string value;
      const size_t eq = name.find('=');
      const bool is_boolean =
          std::find(boolean.begin(), boolean.end(), name) != boolean.end();
      if (eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
      } else if (!is_boolean) {
        if (i + 1 >= args.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " needs a value"));
        }
        value = args[++i];
      }
      flags.values_[name] = value;
    } else {
      flags.positional_.push_back(arg);
    }
  }
  return flags;
}

bool Flags::Has(absl::string_view name) const {
  return values_.find(name) != values_.end();
}

std::optional<std::string> Flags::Get(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Flags::GetOr(absl::string_view name,
                         absl::string_view fallback) const {
  return Get(name).value_or(std::string(fallback));
}

absl::StatusOr<std::optional<uint64_t>> Flags::GetUint(
    absl::string_view name) const {
  std::optional<std::string> value = Get(name);
  if (!value.has_value()) return std::optional<uint64_t>();
  uint64_t n;
  if (!absl::SimpleAtoi(*value, &n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", name, " must be a non-negative integer, got '", *value, "'"));
  }
  return std::optional<uint64_t>(n);
}

absl::StatusOr<std::optional<absl::Time>> Flags::GetTime(
    absl::string_view name) const {
  std::optional<std::string> value = Get(name);
  if (!value.has_value()) return std::optional<absl::Time>();
  ASSIGN_OR_RETURN(absl::Time t,
                   ParseLedgerTime(absl::StrCat("--", name), *value, zone_));
  return std::optional<absl::Time>(t);
}

absl::Status Flags::CheckKnown(const std::vector<std::string>& known) const {
  for (const auto& [name, value] : values_) {
    if (name == "db" || name == "policy" || name == "tz") continue;
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", name, " (known: --",
                       absl::StrJoin(known, ", --"), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace storeledger
