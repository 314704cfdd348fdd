// The audit engine behind `storeledger audit` (DESIGN.md §3-§5): checks,
// without trusting the code that wrote it, that the log and its projections
// are sound. Five streaming passes over RocksDB:
//
//  1. events (in position order): positions contiguous from 1 to the head,
//     every envelope parses and hashes to its stored hash, every prev_hash
//     links to the previous hash; every event sits in the stream it names;
//     every event's postings balance to zero and touch one store, in that
//     store's stream; the events of each command form one contiguous run.
//  2. streams (index order): every index entry points at an envelope of that
//     stream and version, versions are contiguous, the stream head names the
//     last version and its business time; each store stream is folded with
//     Evolve into fresh state and its records (store, products, orders,
//     withdrawals) compared byte for byte with the projections, its balances
//     with the sum of its postings, and no store account may go below zero
//     after any event; each merchant stream likewise.
//  3. commands: every stored outcome parses, names its key and a range of
//     the log; the multiset of (command, range, status, rejection) of the
//     stored outcomes equals the one pass 1 read off the runs of events.
//     Pass 2 likewise counts the index entries that point at an intact
//     envelope of their own stream and version: as many as pass 1 saw
//     intact envelopes means every envelope is indexed.
//  4. projections: every projection key belongs to a record pass 2 compared
//     (no stray or orphaned records).
//  5. merkle tree: every stored node of the Merkle tree equals the one
//     recomputed from the stored envelopes, none missing or extra
//     (storage/merkle_store.h CheckMerkleTree; a point read per node).
//
// Those two are compared as counts and constant-size hashes (no lookup per
// event or command). When they disagree, or damage left a run's extent
// unknown, a second look walks events and outcomes again with a lookup per
// item, to name each problem by position; a sound log never needs it.
//
// Memory does not grow with the number of events: passes 1, 3 and 4 keep a
// constant amount of state, and pass 2 folds one stream at a time, so its
// memory is bounded by the records of the largest store, not by the log
// (bench/audit_bench.cc: peak RSS 22.2 MiB at 10^5 events, 24.4 MiB at
// 10^6). The audit reads around the block cache, so it neither grows it nor
// evicts what the ledger keeps there.
//
// Thread-safety: Audit may run beside appends, on the live EventLog: every
// pass reads one RocksDB snapshot of the durable log, taken when the audit
// starts, so the report is of the log as of then, whatever is appended
// meanwhile. Its iterators are made anew every few thousand steps, so that
// a long audit pins no memtable that writers would wait for. (Do not audit
// a read-only open of a directory that another process writes: RocksDB
// deletes the files such an open reads as it compacts, and the audit would
// report damage that is not there.)
//
// Damage is a violation, never a crash or an early stop: a damaged envelope
// is DATA_LOSS at its position and the passes go on past it. Every loop is
// driven by a RocksDB iterator, so the audit always ends.
#ifndef STORELEDGER_REPLAY_AUDIT_H_
#define STORELEDGER_REPLAY_AUDIT_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Violations kept in the report; the rest are counted (violations_total),
// so a badly damaged log cannot make the report itself unbounded.
inline constexpr size_t kAuditViolationsMax = 1000;

// Check names, as they appear in AuditViolation.check and AuditReport.checks.
inline constexpr absl::string_view kCheckHashChain = "hash_chain";
inline constexpr absl::string_view kCheckPositions = "positions";
inline constexpr absl::string_view kCheckStreamIndex = "stream_index";
inline constexpr absl::string_view kCheckPostings = "postings";
inline constexpr absl::string_view kCheckBalances = "balances";
inline constexpr absl::string_view kCheckProjections = "projections";
inline constexpr absl::string_view kCheckOutcomes = "outcomes";
// The Merkle tree recomputed from the log (storage/merkle_store.h).
inline constexpr absl::string_view kCheckMerkleTree = "merkle_tree";
// Each diverged record (storage/diverged.h: a replica's tail moved aside,
// listed in AuditReport.diverged) holds its envelopes whole: contiguous
// from its first position to its last, each verifying at its position and
// linked to the one before, ending at its last hash.
inline constexpr absl::string_view kCheckDiverged = "diverged";

struct AuditOptions {
  // Called now and then with the pass ("events", "streams", "commands",
  // "projections", "merkle tree"; "events (second look)", "commands (second look)" when
  // needed), the items done in it, and the total when known (events: the
  // head position; otherwise 0). Default: none.
  std::function<void(absl::string_view pass, uint64_t done, uint64_t total)>
      progress;
  // Items between two progress calls. Default: 100000.
  uint64_t progress_every = 100'000;
  // Violations kept in the report. Default: kAuditViolationsMax.
  size_t violations_max = kAuditViolationsMax;
};

// Audits `log`. The report's ok is true only when no check found anything.
// A non-ok status means the audit itself could not run to the end (an I/O
// error from RocksDB), never that the log is damaged: damage is in the
// report.
absl::StatusOr<v1::AuditReport> Audit(const EventLog& log,
                                      const AuditOptions& options = {});

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_AUDIT_H_
