// Per-store snapshots: a store's records folded up to one version of its
// stream, so that an as-of query folds at most about K events
// (LedgerOptions::snapshot_every_events) plus the snapshot, instead of the
// store's whole history.
//
// Snapshots are a cache in the projections column family (keys snap/ and
// snapmeta/, storage/FORMAT.md): no answer depends on them, deleting every
// snapshot changes only the cost. A snapshot that does not match the log is
// ignored by readers and reported by VerifySnapshotSample.
// Thread-safety: functions here are as thread-safe as EventLog.
#ifndef STORELEDGER_REPLAY_SNAPSHOTS_H_
#define STORELEDGER_REPLAY_SNAPSHOTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "core/state.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// K: a store gets a snapshot every this many events of its stream (at least;
// see above). 0 disables snapshot writes.
inline constexpr uint64_t kSnapshotEveryEventsDefault = 1000;

inline constexpr absl::string_view kSnapshotPrefix = "snap/";
inline constexpr absl::string_view kSnapshotMetaPrefix = "snapmeta/";

std::string SnapshotKey(absl::string_view store_id, uint64_t version);
std::string SnapshotMetaKey(absl::string_view store_id, uint64_t version);

// The snapshot of `store_id` as `state` holds it, tagged with `meta`
// (meta.record_count is filled in). kNotFound when the store is absent.
absl::StatusOr<v1::StoreSnapshot> MakeSnapshot(const StateReader& state,
                                               absl::string_view store_id,
                                               v1::SnapshotMeta meta);

// The two projection writes that store `snapshot`.
std::vector<std::pair<std::string, std::string>> SnapshotPuts(
    const v1::StoreSnapshot& snapshot);

// Loads a snapshot's records into `state` (store, products, orders,
// withdrawals and the stream head), as a fold up to meta.version would.
void LoadSnapshot(const v1::StoreSnapshot& snapshot, StateOverlay* state);

// For the append path (Ledger::Execute): adds to `puts` the snapshots due
// for the stores whose streams `events` extend. `events` are the append's
// events with expected_version set to the exact version each follows (as
// Execute sets them); `first_position` is the position the first of them
// will get; `state_after` reads as the ledger will be after the append.
// Does nothing when every_events is 0.
absl::Status AddDueSnapshots(
    const EventLog& log, const StateReader& state_after,
    const std::vector<NewEvent>& events, uint64_t first_position,
    uint64_t every_events,
    std::vector<std::pair<std::string, std::string>>* puts);

// The most recent snapshot of `store_id` whose last event is admitted by
// (position <= position_max, occurred_at <= business_time_max); nullopt when
// none. The chosen snapshot is checked against the log (its position must
// hold its stream and version); one that fails the check is skipped.
absl::StatusOr<std::optional<v1::StoreSnapshot>> FindSnapshot(
    const EventLog& log, absl::string_view store_id,
    std::optional<uint64_t> position_max,
    std::optional<absl::Time> business_time_max);

// Every snapshot key and snapshot meta key (for tests and tools that drop
// the cache). Returns how many keys were deleted.
absl::StatusOr<uint64_t> DeleteAllSnapshots(EventLog* log);

// Audit: checks up to `sample` snapshots, spread evenly over all of them,
// against a fold of the store's stream from its first event up to the
// snapshot's version: records byte-identical, meta consistent with the log.
// kDataLoss naming the store and version of the first mismatch.
absl::Status VerifySnapshotSample(const EventLog& log, const Policy& policy,
                                  int sample);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_SNAPSHOTS_H_
