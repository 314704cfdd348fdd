// The user's terms in human outputs: times in the ledger's zone
// (the policy's, or --tz), a bare date as midnight in that zone, amounts in
// fen or, with --yuan, in yuan with two decimals. JSON outputs keep
// protobuf's UTC mapping and fen; only CSV, statements, tables and summaries
// use these.
#ifndef STORELEDGER_CLI_TERMS_H_
#define STORELEDGER_CLI_TERMS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"

namespace storeledger {

// The zone a ledger's people work in, and the name outputs print for it.
struct LedgerZone {
  absl::TimeZone zone;
  std::string name;  // "UTC+08:00", "UTC", "Asia/Shanghai (UTC+08:00 now)"
};

// The zone the calendar is written in (DESIGN.md §1): Beijing time.
inline constexpr char kLedgerZoneDefault[] = "+08:00";

// `spec` is "" (kLedgerZoneDefault), "UTC", "Z", a fixed offset "+08:00" /
// "-05:30", or an IANA name ("Asia/Shanghai"). kInvalidArgument otherwise.
absl::StatusOr<LedgerZone> ResolveZone(absl::string_view spec);

// RFC 3339 with the zone's offset: "2024-12-20T00:00:00+08:00".
std::string ZoneTime(absl::Time t, const LedgerZone& zone);
std::string ZoneTime(const google::protobuf::Timestamp& t,
                     const LedgerZone& zone);

// An amount as printed: fen as an integer ("123456"), or yuan with exactly
// two decimals ("1234.56", "-0.05"). Exact: a fen is a hundredth of a yuan,
// so a column of yuan sums to the fen total / 100 with no rounding.
std::string AmountText(int64_t fen, bool yuan);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_TERMS_H_
