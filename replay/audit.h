// The audit engine behind `storeledger audit` (DESIGN.md §3-§5): checks,
// without trusting the code that wrote it, that the log and its projections
// are sound, and reports each violation under its check's name: events,
// streams, commands, projections, merkle tree (audit.cc lists what each
// checks). Damage is a violation, never a crash or an early stop; memory is
// bounded by the largest store's records, not by the log.
//
// Thread-safe beside appends, on the live EventLog: the report is of the
// durable log as of the audit's start. (Not on a read-only open of a
// directory another process writes: RocksDB deletes the files it reads.)
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
  // "projections", "merkle tree"; "events (second look)", "commands (second
  // look)" when needed), the items done in it, and the total when known
  // (events: the head position; otherwise 0). Default: none.
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
