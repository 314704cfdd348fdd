// Rebuild: recompute every projection record from the log and compare it
// with (or put it in place of) the live projections: the keys under the
// record prefixes of replay/projection_store.h (s/ k/ p/ o/ O/ w/ W/ m/).
// Snapshots (snap/, snapmeta/) are a cache with their own check
// (VerifySnapshotSample) and are neither compared nor touched.
//
// The log is read once, every envelope checked as EventLog::Scan checks it;
// memory is bounded by the records recently touched, never by the length of
// the log (rebuild.cc says how). Errors: see Rebuild.
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
// The flush interval, in events: a record in memory that no event touched
// for this long is written to the shadow space and dropped.
inline constexpr uint64_t kRebuildFlushEventsDefault = 50'000;
// Keys per WriteBatch, for the shadow records and for the repairs of the
// live ones (bounds one batch's memory).
inline constexpr uint64_t kRebuildSwapBatchKeysMax = 50'000;
// An eviction of at least this many shadow keys is written as one sorted
// SST file and ingested (RocksDB's IngestExternalFile: no memtable insert
// per key); a smaller one goes through WriteBatches (an ingestion costs a
// few file syncs, too much for a handful of keys).
inline constexpr uint64_t kRebuildSstKeysMinDefault = 4096;

struct RebuildOptions {
  // Compare only: leave the live projections as they are. Default: false.
  bool shadow_only = false;
  // A record no event touched for this many events is flushed to the
  // shadow space. Default: kRebuildFlushEventsDefault (50,000).
  uint64_t flush_every_events = kRebuildFlushEventsDefault;
  // Evictions of at least this many keys are ingested as one SST file.
  // Default: kRebuildSstKeysMinDefault.
  uint64_t sst_keys_min = kRebuildSstKeysMinDefault;
  // Read and verify the log on a second thread while this one folds (a
  // pipeline of two stages; the envelopes' SHA-256 is checked on this
  // thread, which evens out the stages). false: one thread does all.
  // Default: true.
  bool verify_on_second_thread = true;
  // Called now and then while replaying (events done, events in total).
  // Default: none.
  std::function<void(uint64_t done, uint64_t total)> progress;
  // Called for each key where rebuilt and live differ, in key order.
  // Default: none.
  std::function<void(const v1::ProjectionDifference&)> on_difference;
  // When set, filled with how the replay went (benchmarks, tests).
  struct Stats {
    uint64_t shadow_keys_written = 0;  // puts into the shadow space
    uint64_t reads_back = 0;          // records read back from the shadow space
    uint64_t cached_records_max = 0;  // most records held in memory
    uint64_t filter_bytes = 0;        // the written-records Bloom filter
    double replay_seconds = 0;        // wall time of the replay phase
    // CPU time of the whole process (every thread, RocksDB's included)
    // during the replay phase: steadier than the wall time on a shared
    // machine.
    double replay_cpu_seconds = 0;
  };
  // Default: nullptr (no stats).
  Stats* stats = nullptr;
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
