// Group commit: the write path under Ledger::Execute and ExecuteBatch. It
// owns the queue of commands, the leaders that decide them in groups, the
// writer thread that appends a group while the next one is decided, and the
// syncs of groups written unsynced. What one command means is not its
// business: the Ledger hands it a DecideCommandFn.
//
// Concurrent callers queue their commands; the caller at the front of the
// queue leads, takes up to kGroupCommandsMax queued commands as a group and
// decides them one after another -- each against the state the ones before
// it leave, so a group means exactly what executing its commands one at a
// time in queue order would mean. The group's events, record changes and
// outcomes then go to the log as one AppendBatch, while the next leader
// already decides the next group against this one's changes (a pipeline:
// the two cores decide and write at once). Groups land in the order they
// were decided, each only after the one before it is written.
//
// Durability: every caller is answered only after a WAL sync that covers
// its command. A group whose leader has nothing more queued (Execute) is
// written by that leader without a sync, and synced apart (RunSyncs): one
// EventLog::Sync covers every group written before it, so the next group
// is written while the previous sync is under way, and a sync waits up to
// kSyncGatherMax for a group being decided or written to join it. A group
// whose leader has more to lead (an ExecuteBatch chunk) is written, with
// its sync, by the writer thread, and the caller decides its next chunk
// meanwhile. At most kQueuedCommandsMax commands wait in the queue; further
// callers block until there is room (back-pressure, not unbounded memory).
//
// Thread-safe. After a write or sync error nothing more is answered (not
// even the stored result of a repeated command id): the log refuses
// appends until it is reopened.
#ifndef STORELEDGER_LEDGER_GROUP_COMMIT_H_
#define STORELEDGER_LEDGER_GROUP_COMMIT_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/state.h"
#include "ledger/state_cache.h"
#include "replay/projection_store.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Told about the group commit as it goes (storeledgerd's metrics). Called
// with the group commit's lock held: it must be quick, must not block and
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

// Where the group commit's time goes (Ledger::stats()): for benchmarks and
// docs/performance.md's analysis. Times are wall time of the stage.
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
// being decided or written to join it (GroupCommit::RunSyncs).
inline constexpr absl::Duration kSyncGatherMax = absl::Microseconds(500);

// Commands one group commit decides and appends together at most: bounds the
// memory and the latency of one group (its WriteBatch, its overlay).
inline constexpr size_t kGroupCommandsMax = 1000;
// Commands that may wait in the group-commit queue; a caller that would go
// over it waits for room first.
inline constexpr size_t kQueuedCommandsMax = 4 * kGroupCommandsMax;

// Decides one new command (of valid shape, its id not yet used) against
// `state` and, when it is accepted, folds its effects into `state`. Fills
// the append request and the result (its positions are set after the
// append); *rejected says whether it was refused. `first_position` is the
// position its first event will get. Called by one leader at a time.
using DecideCommandFn = std::function<absl::Status(
    const v1::Command& command, const std::string& fingerprint,
    StateOverlay& state, uint64_t first_position, AppendRequest* request,
    v1::CommandResult* result, bool* rejected)>;

struct GroupCommitOptions {
  // Sync the WAL before answering (LedgerOptions::sync). Default: true.
  bool sync = true;
  // Entries of the decided-state cache (ledger/state_cache.h). 0: no cache.
  // Default: kStateCacheEntriesDefault.
  size_t state_cache_entries = kStateCacheEntriesDefault;
  // Not owned; must outlive the group commit. Default: nullptr (none).
  LedgerObserver* observer = nullptr;
};

class GroupCommit {
 public:
  // `log` is not owned and must outlive the group commit. Starts the writer
  // thread.
  GroupCommit(EventLog* log, GroupCommitOptions options,
              DecideCommandFn decide);
  // REQUIRES: no Execute or ExecuteBatch call in progress.
  ~GroupCommit();
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Ledger::Execute and Ledger::ExecuteBatch (ledger/ledger.h) are these.
  absl::StatusOr<v1::CommandResult> Execute(const v1::Command& command);
  std::vector<absl::StatusOr<v1::CommandResult>> ExecuteBatch(
      std::vector<v1::Command> commands);

  // EventLog::AppendReplicated, and the decided-state cache is dropped
  // before the next group is decided. REQUIRES: no command is being
  // executed (a follower executes none).
  absl::StatusOr<std::vector<AppendResult>> AppendReplicated(
      std::vector<AppendRequest> requests);

  GroupCommitStats stats() const;

 private:
  struct Caller;  // a thread inside Execute or ExecuteBatch
  struct Waiter;  // one caller's commands in the queue (a chunk of a batch)
  struct Slot;    // one command in a group
  struct Group;   // commands decided together and written together

  // Queues `waiters` (as room allows) and returns when all of them are
  // answered, leading groups whenever one of them is at the front and no
  // other leader is deciding.
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

  EventLog* const log_;
  const GroupCommitOptions options_;
  const DecideCommandFn decide_;
  // The log as written (synced or not): the groups are decided against it.
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

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_GROUP_COMMIT_H_
