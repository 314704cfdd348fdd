#include "base/time.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "base/limits.h"

namespace storeledger {

absl::StatusOr<absl::Time> ParseTimeInput(absl::string_view flag,
                                          absl::string_view value,
                                          absl::TimeZone zone) {
  absl::CivilDay day;
  if (value.size() == 10 && absl::ParseCivilTime(value, &day)) {
    return absl::FromCivil(day, zone);
  }
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(value), &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag,
        " must be an RFC 3339 time such as 2024-11-04T00:00:00+08:00 or a "
        "date such as 2024-11-04 (midnight in the ledger's zone), got '",
        value, "': ", error));
  }
  return t;
}

absl::Status CheckLedgerTime(absl::string_view what, absl::Time t) {
  if (t >= absl::FromUnixSeconds(kTimeSecondsMin) &&
      t < absl::FromUnixSeconds(kTimeSecondsMax) + absl::Seconds(1)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what,
      " is outside the times the ledger holds: 0001-01-01T00:00:00Z to "
      "9999-12-31T23:59:59.999999999Z"));
}

absl::StatusOr<absl::Time> ParseLedgerTime(absl::string_view what,
                                           absl::string_view value,
                                           absl::TimeZone zone) {
  absl::StatusOr<absl::Time> t = ParseTimeInput(what, value, zone);
  if (!t.ok()) return t;
  absl::Status in_range = CheckLedgerTime(absl::StrCat(what, " ", value), *t);
  if (!in_range.ok()) return in_range;
  return t;
}

}  // namespace storeledger
