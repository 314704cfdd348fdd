// Diverged records (storage/FORMAT.md "Diverged records", docs/cluster.md
// "Diverged tail"): a tail of the log that a replicated partition's stream
// never held -- an `--ack local` leader killed with groups unpublished, or a
// log extended beside the stream -- moved out of the log so that the
// replica can follow the stream, and kept in "meta" for investigators. The
// moved envelopes are stored unchanged; nothing reads them but the audit
// (ReadDivergedRecords, ScanDivergedEnvelopes) and investigators.
//
// A ledger holding a diverged record carries format version
// kFormatVersionDiverged, so that a build that cannot report it refuses it.
#ifndef STORELEDGER_STORAGE_DIVERGED_H_
#define STORELEDGER_STORAGE_DIVERGED_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Moves positions (keep, head] of `log` into a new diverged record, in one
// synced WriteBatch: their envelopes (unchanged), the stored outcomes of
// their commands and the signed checkpoints over them go to the record;
// their events, stream index entries, Merkle nodes, outcomes and
// checkpoints leave the log; stream heads and the log's head step back to
// what `keep` left; every snapshot (a cache) is dropped. `reason` says where
// the log and the stream part.
//
// REQUIRES: no other writer, and keep < head. Afterwards the caller closes
// `log` (its in-memory head, stream-head cache and Merkle edge are those of
// before), reopens the directory and rebuilds the projections
// (replay/rebuild.h). kFailedPrecondition when a command's events straddle
// `keep` (a tail is whole commands).
absl::StatusOr<v1::DivergedRecord> MoveTailAside(EventLog* log, uint64_t keep,
                                                 absl::string_view reason,
                                                 absl::Time now);

// Every diverged record of the ledger, in record order (none: empty).
// `snapshot` (may be null) is the point the audit reads at.
absl::StatusOr<std::vector<v1::DivergedRecord>> ReadDivergedRecords(
    const EventLog& log, const rocksdb::Snapshot* snapshot = nullptr);

// The stored bytes of record `record`'s envelopes, in position order.
absl::Status ScanDivergedEnvelopes(
    const EventLog& log, uint64_t record, const rocksdb::Snapshot* snapshot,
    const std::function<void(uint64_t position, absl::string_view raw)>& fn);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_DIVERGED_H_
