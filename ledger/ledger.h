// The ledger: parses nothing, decides and records commands. Execute() is the
// one write path (apply, simulate and the service all use it): idempotency
// check, Decide, Evolve, and one atomic append of the events, the projection
// changes and the outcome -- or of the rejection record and its outcome.
//
// A Ledger is safe for concurrent use; commands are decided and appended one
// at a time, in the order they take the ledger's lock.
#ifndef STORELEDGER_LEDGER_LEDGER_H_
#define STORELEDGER_LEDGER_LEDGER_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "replay/snapshots.h"
#include "replay/store_view.h"
#include "storage/event_log.h"

namespace storeledger {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};
// The wall clock.
const Clock& SystemClock();

struct LedgerOptions {
  Policy policy = DefaultPolicy();
  // Sync the WAL before acknowledging. Default: true.
  bool sync = true;
  // recorded_at comes from here. Default: the system clock.
  const Clock* clock = nullptr;
  // Open without the write lock (readers: state, history, audit, ...).
  bool read_only = false;
  // K of replay/snapshots.h: a store gets a snapshot (written in the same
  // batch as its events) every K events of its stream. 0: none.
  // Default: kSnapshotEveryEventsDefault (1000).
  uint64_t snapshot_every_events = kSnapshotEveryEventsDefault;
};

class Ledger {
 public:
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(
      const std::string& dir, LedgerOptions options = {});

  // Decides and records `command`. The result is ACCEPTED or REJECTED (both
  // recorded and durable when this returns), or INVALID when the command
  // lacks a valid commandId, occurredAt or body (nothing written). A retried
  // command id returns the stored result with replayed = true; the same id
  // with a different body is REJECTED with IDEMPOTENCY_CONFLICT and writes
  // nothing. A non-ok status is an I/O or corruption error: nothing is
  // acknowledged.
  absl::StatusOr<v1::CommandResult> Execute(const v1::Command& command);

  // The store now (from the projections), or as of a business time and/or a
  // position (folded from its stream).
  absl::StatusOr<v1::StoreState> State(absl::string_view store_id,
                                       const AsOf& as_of = {}) const;

  const EventLog& log() const { return *log_; }
  EventLog* mutable_log() { return log_.get(); }
  const Policy& policy() const { return options_.policy; }
  const Clock& clock() const { return *options_.clock; }

 private:
  Ledger(std::unique_ptr<EventLog> log, LedgerOptions options);

  std::unique_ptr<EventLog> log_;
  LedgerOptions options_;
  absl::Mutex mu_;
};

// SHA-256 of the command's deterministic serialization (idempotency key body).
std::string CommandFingerprint(const v1::Command& command);

// The INVALID result for a command that failed shape parsing.
v1::CommandResult InvalidResult(absl::string_view command_id,
                                absl::string_view message);

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_LEDGER_H_
