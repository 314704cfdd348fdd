// What the reliability tests (crash, power loss, I/O errors) check on a
// ledger after something went wrong: it is a log a correct writer could have
// left, and it keeps every promise made before the trouble.
#ifndef STORELEDGER_TESTS_SUPPORT_LEDGER_CHECK_H_
#define STORELEDGER_TESTS_SUPPORT_LEDGER_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger::testing {

// Command id -> the result a client was given for it (ACCEPTED or REJECTED,
// positions included): what the ledger promised.
using AcknowledgedResults = std::map<std::string, v1::CommandResult>;

struct RecoveryCheckOptions {
  // Run replay/audit.h's Audit too. Default: true.
  bool audit = true;
  // Stores whose live projection is compared with a fold of their stream
  // (both from scratch and through replay's snapshots), picked by `seed`.
  // Default: 8. SIZE_MAX: every store.
  size_t fold_stores_max = 8;
  // Picks the stores to fold. Default: 1.
  uint64_t seed = 1;
  // The instant effective statuses are judged at. Default: the Unix epoch.
  absl::Time now = absl::UnixEpoch();
  // The rules the ledger was written with. Default: DefaultPolicy().
  Policy policy = DefaultPolicy();
};

struct RecoveryCheckStats {
  uint64_t events = 0;         // positions scanned (the head)
  uint64_t commands = 0;       // commands with events in the log
  uint64_t acknowledged = 0;   // acknowledged commands found intact
  uint64_t upgrades = 0;       // upgrades found with both streams
  uint64_t stores_folded = 0;  // stores whose projection equalled the fold
};

// Checks `log`:
//  - the chain verifies from position 1 to the head (EventLog::Scan);
//  - every command's events are one contiguous run, and its stored outcome
//    names exactly that run (nothing half there); every stored outcome with
//    positions has its run; an accepted upgrade has events in both stores'
//    streams;
//  - every acknowledged command has its outcome, with the acknowledged status
//    and positions;
//  - Audit passes (options.audit);
//  - projections equal folds for some stores.
// The first problem found is returned as kDataLoss / kFailedPrecondition.
absl::StatusOr<RecoveryCheckStats> CheckRecoveredLog(
    const EventLog& log, const AcknowledgedResults& acknowledged,
    const RecoveryCheckOptions& options = {});

// Adds `result` (one result line) to `acknowledged` if it is ACCEPTED or
// REJECTED; kFailedPrecondition when the command was acknowledged before with
// a different status or positions (a retry must see the first outcome).
absl::Status Acknowledge(const v1::CommandResult& result,
                         AcknowledgedResults* acknowledged);

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_LEDGER_CHECK_H_
