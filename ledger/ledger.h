// The ledger: parses nothing, decides and records commands. Execute() and
// ExecuteBatch() are the one write path (apply, simulate and the service all
// use it): idempotency check, Decide, Evolve, and an atomic append of the
// events, the projection changes and the outcome -- or of the rejection
// record and its outcome.
//
// A Ledger is safe for concurrent use. Writes go through group commit
// (ledger/group_commit.cc): concurrent callers queue their commands; the
// caller at the front of the queue leads, takes up to kGroupCommandsMax
// queued commands as a group and decides them one after another -- each
// against the state the ones before it leave, so a group means exactly what
// executing its commands one at a time in queue order would mean. The
// group's events, record changes and outcomes then go to the log as one
// WriteBatch, while the next leader already decides the next group against
// this one's changes (a pipeline: the two cores decide and write at once).
// Groups land in the order they were decided, each only after the one
// before it is written.
//
// Durability: every caller is answered only after a WAL sync that covers
// its command. A group whose leader has nothing more queued (Execute) is
// written by that leader without a sync, and synced apart (RunSyncs): one
// EventLog::Sync covers every group written before it, so the next group
// is written while the previous sync is under way, and a sync waits up to
// kSyncGatherMax for a group being decided or written to join it. A group
// whose leader has more to lead (an ExecuteBatch chunk) is written, with
// its sync, by the ledger's writer thread, and the caller decides its next
// chunk meanwhile. At most kQueuedCommandsMax commands wait in the queue;
// further callers block until there is room (back-pressure, not unbounded
// memory).
//
// Between a group's write and its sync, reads by key (Ledger::State, the
// stream index, projections) may see it; position-ordered reads
// (EventLog::head, Read, Scan, the feed) stop at the last durable event.
// After a write or sync error the ledger answers nothing more (not even
// the stored result of a repeated command id) until it is reopened.
#ifndef STORELEDGER_LEDGER_LEDGER_H_
#define STORELEDGER_LEDGER_LEDGER_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/decide.h"
#include "core/policy.h"
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

// Told about the group commit as it goes (storeledgerd's metrics). Called
// with the ledger's internal lock held: it must be quick, must not block and
// must not call the ledger. Implementations are thread-safe.
class LedgerObserver {
 public:
  virtual ~LedgerObserver() = default;
  // A group of `commands` was decided and handed to a write.
  virtual void OnGroupDecided(size_t commands) = 0;
  // A group's write (AppendBatch, with its sync when not deferred) took
  // `duration`.
  virtual void OnGroupWritten(absl::Duration duration) = 0;
  // One EventLog::Sync covering groups written unsynced took `duration`.
  virtual void OnSynced(absl::Duration duration) = 0;
};

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
};

// Where the group commit's time goes (Ledger::stats()): for benchmarks and
// the README's analysis. Times are wall time of the stage.
struct GroupCommitStats {
  uint64_t groups = 0;    // decided and handed to a write
  uint64_t commands = 0;  // in those groups (retries and repeats included)
  uint64_t written_by_leader = 0;  // groups their own leader wrote
  absl::Duration deciding;         // DecideGroup
  absl::Duration waiting;  // a decided group waiting for the one before it
  absl::Duration writing;  // WriteGroup: AppendBatch (with its sync, if any)
  uint64_t syncs = 0;      // EventLog::Sync calls of groups written unsynced
  absl::Duration syncing;  // in those calls
};

// How long a sync of groups written unsynced waits, at most, for a group
// being decided or written to join it (Ledger::RunSyncs).
inline constexpr absl::Duration kSyncGatherMax = absl::Microseconds(500);

// Commands one group commit decides and appends together at most: bounds the
// memory and the latency of one group (its WriteBatch, its overlay).
inline constexpr size_t kGroupCommandsMax = 1000;
// Commands that may wait in the group-commit queue; a caller that would go
// over it waits for room first.
inline constexpr size_t kQueuedCommandsMax = 4 * kGroupCommandsMax;

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
  struct Caller;  // a thread inside Execute or ExecuteBatch
  struct Waiter;  // one caller's commands in the queue (a chunk of a batch)
  struct Slot;    // one command in a group
  struct Group;   // commands decided together and written together

  Ledger(std::unique_ptr<EventLog> log, LedgerOptions options);

  // Group commit (ledger/group_commit.cc). Submit queues `waiters` (as room
  // allows) and returns when all of them are answered, leading groups
  // whenever one of them is at the front and no other leader is deciding.
  void Submit(Caller* caller, const std::vector<Waiter*>& waiters);
  // With mu_ held by `lock`: takes a group from the queue, decides it and
  // hands it to the writer thread -- or, when `caller` has nothing more to
  // queue or lead, writes it on this thread. Returns with mu_ held.
  void Lead(Caller* caller, bool more_to_queue,
            std::unique_lock<std::mutex>& lock);
  void DecideGroup(Group* group, const Group* previous);
  void WriteGroup(Group* group);  // times WriteGroupTimed
  void WriteGroupTimed(Group* group);
  // With mu_ held, after WriteGroup(group) (group is inflight_): marks it
  // complete and answers its callers (or, written without a sync, queues it
  // in unsynced_), or requeues what must be decided again when no leader
  // will.
  void FinishWrite(Group* group);
  // With mu_ held by `lock` and no sync running: one EventLog::Sync for
  // every group in unsynced_, then answers them (an error if the sync
  // failed). Returns with mu_ held.
  void RunSyncs(std::unique_lock<std::mutex>& lock);
  // Answers a written group's kWrites, kFollows and kFollowsPrevious slots
  // (`status` not ok: with that error instead).
  void AnswerWritten(Group& group, const absl::Status& status);
  void AnswerFollowers(Group& group, const absl::Status& status);
  // With mu_ held: true if `caller` waits for an answer from `group`.
  static bool Waits(const Group& group, const Caller* caller);
  // With mu_ held: wakes a caller of the oldest unsynced group to sync it.
  void WakeSyncer();
  void WriterLoop();
  // With mu_ held: puts the waiters of `groups` that still owe answers back
  // at the front of the queue, in order; answers the others.
  void Requeue(const std::vector<Group*>& groups);
  // With mu_ held: marks every fully answered waiter of `group` done and
  // wakes its caller.
  void Publish(const Group& group);
  // With mu_ held: wakes the caller of the waiter at the front of the queue
  // when it may lead.
  void NotifyFront();

  // Decides one new command against `state` and, when it is accepted, folds
  // its effects into `state`. Fills the append request and the result (its
  // positions are set after the append). `first_position` is the position
  // its first event will get.
  // Decide, asking options_.directory about a store `command` creates.
  absl::StatusOr<Decision> DecidePlaced(const v1::Command& command,
                                        const StateReader& state);
  absl::Status DecideOne(const v1::Command& command,
                         const std::string& fingerprint, StateOverlay& state,
                         uint64_t first_position, AppendRequest* request,
                         v1::CommandResult* result, bool* rejected);

  std::unique_ptr<EventLog> log_;
  LedgerOptions options_;
  std::unique_ptr<ProjectionReader> committed_;
  // The committed state, cached. Used only by the thread that is deciding
  // (deciding_), which also folds durable groups into it.
  std::unique_ptr<StateCache> cache_;

  // std::mutex as in storage/: the system Abseil is not built for TSan.
  mutable std::mutex mu_;
  std::deque<Waiter*> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_commands_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Caller*> room_waiters_ ABSL_GUARDED_BY(mu_);
  // A leader holds the deciding role (one at a time).
  bool deciding_ ABSL_GUARDED_BY(mu_) = false;
  // The group handed to the writer: being written, or written and not yet
  // folded into the cache by the next leader.
  std::shared_ptr<Group> inflight_ ABSL_GUARDED_BY(mu_);
  // Groups written without a sync (by their leaders), oldest first, until a
  // RunSyncs makes them durable and answers them; kept alive here.
  std::deque<std::shared_ptr<Group>> unsynced_ ABSL_GUARDED_BY(mu_);
  // A caller is in RunSyncs (one at a time).
  bool syncing_ ABSL_GUARDED_BY(mu_) = false;
  std::condition_variable inflight_cv_;  // inflight_ completed
  std::condition_variable writer_cv_;    // inflight_ set, or stopping_
  // The cache disagreed with the log: the next leader clears it.
  bool clear_cache_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  GroupCommitStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
};

// SHA-256 of the command's deterministic serialization (idempotency key body).
std::string CommandFingerprint(const v1::Command& command);

// The INVALID result for a command that failed shape parsing.
v1::CommandResult InvalidResult(absl::string_view command_id,
                                absl::string_view message);

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_LEDGER_H_
