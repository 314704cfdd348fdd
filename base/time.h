// Times as people type them (flags, HTTP parameters) and the range of times
// the ledger holds (base/limits.h). Pure functions; errors are
// kInvalidArgument naming what was wrong.
#ifndef STORELEDGER_BASE_TIME_H_
#define STORELEDGER_BASE_TIME_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace storeledger {

// A time flag: RFC 3339 with any offset, or a bare date "2024-10-01" meaning
// midnight in `zone`. kInvalidArgument naming `flag` otherwise.
absl::StatusOr<absl::Time> ParseTimeInput(absl::string_view flag,
                                          absl::string_view value,
                                          absl::TimeZone zone);

// kInvalidArgument, naming `what` and the accepted range, unless the time is
// one the ledger holds (kTimeSecondsMin..kTimeSecondsMax, base/limits.h).
absl::Status CheckLedgerTime(absl::string_view what, absl::Time t);

// ParseTimeInput, then CheckLedgerTime naming `what` and `value`: every time
// a person types (a flag, an argument, an HTTP parameter) goes through this.
absl::StatusOr<absl::Time> ParseLedgerTime(absl::string_view what,
                                           absl::string_view value,
                                           absl::TimeZone zone);

}  // namespace storeledger

#endif  // STORELEDGER_BASE_TIME_H_
