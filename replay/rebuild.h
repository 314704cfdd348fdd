// Rebuild: recompute every projection record from the log and compare it
// with (or put it in place of) the live projections.
//
// The log is streamed once, in position order, through EvolveEnvelope into a
// StateOverlay whose base reads the *shadow* key space ("shadow/" + live
// key, in the projections column family). Every `flush_every_events` events
// the overlay's records are written there (ProjectionPuts, so the bytes are
// the ones the inline path writes) and the overlay is cleared: memory is
// bounded by the flush interval and the number of streams touched in it,
// never by the length of the log.
//
// The live projection key space is the set of keys under the record prefixes
// of replay/projection_store.h (s/ k/ p/ o/ O/ w/ W/ m/). Snapshots (snap/,
// snapmeta/) are a cache with their own check (VerifySnapshotSample) and are
// neither compared nor touched.
//
// REQUIRES: no other writer appends while a rebuild runs (the CLI holds the
// database's lock for its duration).
#ifndef STORELEDGER_REPLAY_REBUILD_H_
#define STORELEDGER_REPLAY_REBUILD_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

inline constexpr absl::string_view kShadowPrefix = "shadow/";
// Events folded between two flushes of the overlay into the shadow space.
inline constexpr uint64_t kRebuildFlushEventsDefault = 50'000;
// Live writes per WriteBatch when the rebuilt projections replace the live
// ones (bounds one batch's memory).
inline constexpr uint64_t kRebuildSwapBatchKeysMax = 50'000;

struct RebuildOptions {
  // Compare only: leave the live projections as they are. Default: false.
  bool shadow_only = false;
  // Default: kRebuildFlushEventsDefault.
  uint64_t flush_every_events = kRebuildFlushEventsDefault;
  // Called now and then while replaying (events done, events in total).
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Called for each key where rebuilt and live differ, in key order.
  std::function<void(const v1::ProjectionDifference&)> on_difference;
};

// Rebuilds the projections of `log`. With shadow_only the live projections
// are untouched and summary.differences counts what a rebuild would change;
// otherwise the differing live keys are rewritten or deleted and the shadow
// space is removed. kDataLoss when the log does not verify (hash chain,
// contiguity) or an event does not fit the state folded so far.
absl::StatusOr<v1::RebuildSummary> Rebuild(EventLog* log,
                                           const RebuildOptions& options);

// The live projection record prefixes (projection_store.h's key layout).
bool IsLiveProjectionKey(absl::string_view key);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_REBUILD_H_
