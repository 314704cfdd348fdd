// The ledger: decides and records commands (it parses nothing: callers hand
// it protobuf commands). Execute and ExecuteBatch are the one write path --
// apply, simulate and the service all use it: the idempotency check, Decide,
// Evolve and one atomic append of the events, the record changes and the
// outcome, or of the rejection record and its outcome.
//
// Ownership: a Ledger owns its EventLog and its group commit (ledger/
// group_commit.h: the queue, the writer thread, the syncs); the clock,
// observer, env and directory of its options are borrowed.
// Thread-safety: safe for concurrent use. Concurrent commands are decided
// one after another in queue order, and each caller is answered only once
// its command is durable (LedgerOptions::sync permitting).
// Errors: a refused command is a REJECTED result, a malformed one INVALID;
// a non-ok status is an I/O or corruption error, after which the ledger
// answers nothing more until it is reopened.
#ifndef STORELEDGER_LEDGER_LEDGER_H_
#define STORELEDGER_LEDGER_LEDGER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/decide.h"
#include "core/policy.h"
#include "ledger/command_shape.h"
#include "ledger/group_commit.h"
#include "ledger/state_cache.h"
#include "ledger/store_directory.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"
#include "replay/store_view.h"
#include "storage/event_log.h"

namespace storeledger {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // The recorded_at of the events `command` appends. Default: Now(). A
  // simulation overrides it to follow its own timeline (cli/simulate_verb.cc).
  // Called once per decided command, in position order.
  virtual absl::Time RecordedAt(const v1::Command& command) const {
    (void)command;
    return Now();
  }
};
// The wall clock.
const Clock& SystemClock();

struct LedgerOptions {
  // The platform's rules as data (core/policy.h). Default: DefaultPolicy().
  Policy policy = DefaultPolicy();
  // Sync the WAL before acknowledging. Default: true.
  bool sync = true;
  // recorded_at comes from here. Default: the system clock.
  const Clock* clock = nullptr;
  // Open without the write lock (readers: state, history, audit, ...).
  // Default: false.
  bool read_only = false;
  // K of replay/snapshots.h: a store gets a snapshot (written in the same
  // batch as its events) every K events of its stream. 0: none.
  // Default: kSnapshotEveryEventsDefault (1000).
  uint64_t snapshot_every_events = kSnapshotEveryEventsDefault;
  // Passed to EventLogOptions::env: the RocksDB Env; not owned. Tests pass a
  // file system that fails or loses power on purpose (tests/support/
  // fault_env.h). Default: nullptr (Env::Default()).
  rocksdb::Env* env = nullptr;
  // Entries of the in-memory LRU of recently used records the append path
  // decides against (ledger/state_cache.h). 0: no cache. Default:
  // kStateCacheEntriesDefault.
  size_t state_cache_entries = kStateCacheEntriesDefault;
  // Passed to EventLogOptions::write_batch_tap (benchmarks). Default: none.
  std::function<void(absl::string_view write_batch)> write_batch_tap = nullptr;
  // Not owned; must outlive the ledger. Default: nullptr (none).
  LedgerObserver* observer = nullptr;
  // Passed to EventLogOptions::memtables_bytes_max (tests). Default: 0 (the
  // log's own budget).
  size_t memtables_bytes_max = 0;
  // Passed to EventLogOptions::before_write: replication/ publishes each
  // group there before it is stored; a refusal fails the group's commands
  // and every later one (the ledger answers nothing more until reopened).
  // Default: none.
  std::function<absl::Status(const StoredGroup& group)> before_write = nullptr;
  // A partitioned cluster's store directory (ledger/store_directory.h),
  // asked while a command that creates a store is decided. Not owned; must
  // outlive the ledger. Default: nullptr (store ids are this ledger's own).
  StoreDirectory* directory = nullptr;
  // Passed to EventLogOptions::open_stats (benchmarks). Default: nullptr.
  EventLogOpenStats* open_stats = nullptr;
  // Passed to EventLogOptions::write_behind: the projections, stream index
  // and heads written behind the log (storage/FORMAT.md "Written behind the
  // log"). Every open passes the ledger's fold (DeriveProjections), so a
  // ledger left behind by a crash opens either way. Default: true.
  bool write_behind = true;
  // Passed to EventLogOptions::write_behind_events_max (tests shrink the
  // write-behind distance). Default: 0 (kWriteBehindEventsMax).
  uint64_t write_behind_events_max = 0;
};

class Ledger {
 public:
  static absl::StatusOr<std::unique_ptr<Ledger>> Open(
      const std::string& dir, LedgerOptions options = {});
  // REQUIRES: no Execute or ExecuteBatch call in progress.
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Decides and records `command`. The result is ACCEPTED or REJECTED (both
  // recorded and durable when this returns), or INVALID when the command is
  // over kCommandBytesMax or lacks a valid commandId, occurredAt or body
  // (nothing written). A retried
  // command id returns the stored result with replayed = true; the same id
  // with a different body is REJECTED with IDEMPOTENCY_CONFLICT and writes
  // nothing. A non-ok status is an I/O or corruption error: nothing is
  // acknowledged.
  absl::StatusOr<v1::CommandResult> Execute(const v1::Command& command);

  // Executes `commands` in order, as many Execute calls one after another
  // would, but in groups of up to kGroupCommandsMax that share a WriteBatch
  // and a sync. Result i is what Execute(commands[i]) would have returned
  // (durable when this returns). At the first command whose status is not ok
  // the batch stops: the commands after it are not executed and get
  // kCancelled.
  std::vector<absl::StatusOr<v1::CommandResult>> ExecuteBatch(
      std::vector<v1::Command> commands);

  // For a follower (replication/): EventLog::AppendReplicated, and the
  // decided-state cache is dropped before the next group is decided.
  // REQUIRES: no command is being executed (a follower executes none).
  absl::StatusOr<std::vector<AppendResult>> AppendReplicated(
      std::vector<AppendRequest> requests);

  // The store now (from the projections), or as of a business time and/or a
  // position (folded from its stream).
  absl::StatusOr<v1::StoreState> State(absl::string_view store_id,
                                       const AsOf& as_of = {}) const;

  GroupCommitStats stats() const;

  const EventLog& log() const { return *log_; }
  EventLog* mutable_log() { return log_.get(); }
  const Policy& policy() const { return options_.policy; }
  const Clock& clock() const { return *options_.clock; }

 private:
  Ledger(std::unique_ptr<EventLog> log, LedgerOptions options);

  // Decide, asking options_.directory about a store `command` creates.
  absl::StatusOr<Decision> DecidePlaced(const v1::Command& command,
                                        const StateReader& state);
  // The group commit's DecideCommandFn (ledger/group_commit.h): decides one
  // new command against `state` and records it in `request`.
  absl::Status DecideOne(const v1::Command& command,
                         const std::string& fingerprint, StateOverlay& state,
                         uint64_t first_position, AppendRequest* request,
                         v1::CommandResult* result, bool* rejected);

  // Destroyed in reverse order: the group commit (and its writer thread)
  // before the log it writes to.
  std::unique_ptr<EventLog> log_;
  LedgerOptions options_;
  std::unique_ptr<GroupCommit> group_commit_;
};

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_LEDGER_H_
