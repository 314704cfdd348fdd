#include "cli/terms.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "core/policy.h"

namespace storeledger {
namespace {

// "+08:00" for 28800 seconds.
std::string OffsetText(int seconds) {
  const char sign = seconds < 0 ? '-' : '+';
  const int magnitude = std::abs(seconds);
  return absl::StrFormat("%c%02d:%02d", sign, magnitude / 3600,
                         magnitude % 3600 / 60);
}

// "+HH:MM" / "-HH:MM" as seconds east of UTC.
bool ParseOffset(absl::string_view spec, int* seconds) {
  if (spec.size() != 6 || (spec[0] != '+' && spec[0] != '-') ||
      spec[3] != ':') {
    return false;
  }
  int hours = 0, minutes = 0;
  if (!absl::SimpleAtoi(spec.substr(1, 2), &hours) ||
      !absl::SimpleAtoi(spec.substr(4, 2), &minutes) || hours > 14 ||
      minutes > 59) {
    return false;
  }
  *seconds = (hours * 3600 + minutes * 60) * (spec[0] == '-' ? -1 : 1);
  return true;
}

}  // namespace

absl::StatusOr<LedgerZone> ResolveZone(absl::string_view spec) {
  if (spec.empty()) spec = kLedgerZoneDefault;
  if (spec == "UTC" || spec == "Z" || spec == "utc") {
    return LedgerZone{absl::UTCTimeZone(), "UTC"};
  }
  int seconds = 0;
  if (ParseOffset(spec, &seconds)) {
    return LedgerZone{
        absl::FixedTimeZone(seconds),
        seconds == 0 ? "UTC" : absl::StrCat("UTC", OffsetText(seconds))};
  }
  absl::TimeZone zone;
  if (!absl::LoadTimeZone(std::string(spec), &zone)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time zone '", spec,
        "' is neither UTC, an offset such as +08:00, nor a known IANA name "
        "such as Asia/Shanghai"));
  }
  return LedgerZone{zone, std::string(spec)};
}

std::string ZoneTime(absl::Time t, const LedgerZone& zone) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*S%Ez", t, zone.zone);
}

std::string ZoneTime(const google::protobuf::Timestamp& t,
                     const LedgerZone& zone) {
  return ZoneTime(ToTime(t), zone);
}

std::string AmountText(int64_t fen, bool yuan) {
  if (!yuan) return absl::StrCat(fen);
  // Magnitude in unsigned arithmetic: INT64_MIN has no positive int64.
  const uint64_t magnitude =
      fen < 0 ? 0 - static_cast<uint64_t>(fen) : static_cast<uint64_t>(fen);
  return absl::StrFormat("%s%d.%02d", fen < 0 ? "-" : "", magnitude / 100,
                         magnitude % 100);
}

}  // namespace storeledger
