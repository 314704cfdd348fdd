// Group commit (ledger/group_commit.h): the queue, the leaders that decide
// groups and the writer thread that appends them.
//
//   callers --> queue_ --> leader: decide group N+1 --> writer: append N+1
//                          (against the cache and      (one WriteBatch, one
//                           group N's changes)          sync)
//
// One leader decides at a time (deciding_); the writer appends one group at
// a time (inflight_). A leader decides its group while the writer appends
// the previous one, then waits for that append before handing its own
// over, so groups land in the order they were decided and each is written
// only once the one it was decided against is durable.
//
// When an append fails its checks (an expected version the log did not
// have: the cache disagreed with the log; or an envelope over the size
// limit), only the command that caused it gets the error. Every other command
// of that group -- and of the group decided against it -- goes back to the
// front of the queue, in order, and is decided again. When the write itself
// fails (I/O), the log refuses every later append, so no command of that or
// any later group is acknowledged.
//
// Between a group's write and its sync the log's readers see only what is
// durable (EventLog's kDurable view); the leaders decide against the log as
// written (kAppended, committed_) and the cache over it.
#include "ledger/group_commit.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/check.h"
#include "core/streams.h"
#include "ledger/command_shape.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

using ledger_internal::ResultOf;
using ledger_internal::ShapeProblem;

// A StateReader that reads through another one, which can be changed: a
// group is decided against the previous group's changes over the cache, and
// once the previous group is durable and folded into the cache, against the
// cache alone.
class ForwardingReader : public StateReader {
 public:
  const StateReader* target = nullptr;

  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view store_id) const override {
    return target->Store(store_id);
  }
  absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const override {
    return target->Product(store_id, product_id);
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override {
    return target->Products(store_id);
  }
  absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view order_id) const override {
    return target->Order(order_id);
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const override {
    return target->Orders(store_id);
  }
  absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const override {
    return target->Withdrawal(withdrawal_id);
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const override {
    return target->Withdrawals(store_id);
  }
  absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const override {
    return target->Merchant(merchant_id);
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const override {
    return target->StoreIds(kind);
  }
  absl::StatusOr<RecordRef<StreamHead>> Head(
      absl::string_view stream_id) const override {
    return target->Head(stream_id);
  }
};

// The answer to a command id that already has an outcome (`first`, with
// fingerprint `first_fingerprint`): the stored result again, or a conflict
// when the body differs. The id's outcome is not replaced, so nothing is
// written either way.
v1::CommandResult Repeated(const v1::Command& command,
                           const std::string& fingerprint,
                           const std::string& first_fingerprint,
                           const v1::CommandResult& first) {
  if (first_fingerprint == fingerprint) {
    v1::CommandResult result = first;
    result.set_replayed(true);
    return result;
  }
  v1::CommandResult result = ResultOf(command);
  result.set_status(v1::REJECTED);
  result.set_rule("R0");
  result.set_code(v1::IDEMPOTENCY_CONFLICT);
  result.set_message(
      absl::StrCat("commandId ", command.command_id(),
                   " was already used for a different command (first outcome: ",
                   v1::OutcomeStatus_Name(first.status()),
                   "); a retry must resend the identical command"));
  return result;
}

absl::Status NotExecuted() {
  return absl::CancelledError(
      "not executed: an earlier command of the batch failed");
}

}  // namespace

// A thread inside Execute or ExecuteBatch; woken when one of its waiters is
// answered, may lead, or may queue.
struct GroupCommit::Caller {
  std::condition_variable cv;
};

// One caller's commands in the queue: Execute's one command, or one chunk of
// an ExecuteBatch. The caller answers the INVALID ones itself (answered set
// before queueing); the leaders and the writer answer the rest.
struct GroupCommit::Waiter {
  Caller* caller = nullptr;
  const v1::Command* commands = nullptr;
  // Execute hashes its command on the caller's thread (many callers, many
  // threads); ExecuteBatch leaves them empty for the leader, whose stage of
  // the pipeline is the lighter one.
  std::string* fingerprints = nullptr;
  absl::StatusOr<v1::CommandResult>* results = nullptr;
  size_t count = 0;
  std::vector<char> answered;
  size_t unanswered = 0;
  // ExecuteBatch: the batch index of the first command that failed (a non-ok
  // status; SIZE_MAX while none has); the batch's later commands are not
  // executed. Shared by the chunks of one batch; read by the leader deciding
  // one chunk while the writer may be answering an earlier chunk with a
  // failure, hence atomic. `offset`: the batch index of commands[0].
  std::atomic<size_t>* first_failure = nullptr;
  size_t offset = 0;
  bool stop_at_first_error = false;
  bool done = false;  // guarded by mu_
};

// One unanswered command of a group.
struct GroupCommit::Slot {
  enum class State {
    kPending,          // being decided
    kAnswered,         // its waiter holds the answer
    kWrites,           // decided; requests[request] records it
    kFollows,          // same command id as slot `earlier` of this group
    kFollowsPrevious,  // same id as slot `earlier` of the previous group
  };
  Waiter* waiter = nullptr;
  size_t index = 0;  // within the waiter
  State state = State::kPending;
  size_t request = 0;
  size_t earlier = 0;
  // kWrites: the answer (positions set after the append) and the
  // fingerprint, kept here because a later group may need them after this
  // command's caller has gone.
  v1::CommandResult result;
  std::string fingerprint_copy;

  const v1::Command& command() const { return waiter->commands[index]; }
  const std::string& fingerprint() const {
    std::string& fingerprint = waiter->fingerprints[index];
    if (fingerprint.empty()) fingerprint = CommandFingerprint(command());
    return fingerprint;
  }
  size_t batch_index() const { return waiter->offset + index; }
  // After a failure earlier in its batch.
  bool Stopped() const {
    return batch_index() >
           waiter->first_failure->load(std::memory_order_relaxed);
  }
  void Answer(absl::StatusOr<v1::CommandResult> answer) {
    if (!answer.ok() && waiter->stop_at_first_error) {
      size_t first = waiter->first_failure->load(std::memory_order_relaxed);
      while (batch_index() < first &&
             !waiter->first_failure->compare_exchange_weak(
                 first, batch_index(), std::memory_order_relaxed)) {
      }
    }
    waiter->results[index] = std::move(answer);
    waiter->answered[index] = 1;
    --waiter->unanswered;
    state = State::kAnswered;
  }
};

// Commands decided together and written together.
struct GroupCommit::Group {
  std::vector<Waiter*> waiters;
  std::vector<Slot> slots;
  // The state before this group: the previous group's changes over the
  // cache while that group is being written, the cache once it is folded in.
  ForwardingReader before;
  // This group's changes, over `before`.
  std::unique_ptr<StateOverlay> state;
  // Command ids this group records -> slot (owned strings: a later group
  // looks them up while this group's callers may have gone).
  absl::flat_hash_map<std::string, size_t> first_use;
  std::vector<AppendRequest> requests;
  std::vector<size_t> request_slots;
  uint64_t first_position = 0;  // of its first event
  uint64_t events = 0;
  bool any_rejection = false;

  // Written without a sync (its leader writes it; RunSyncs makes it
  // durable). Set before the write.
  bool deferred_sync = false;
  // The group being written when this one was decided: the first uses of
  // this group's kFollowsPrevious slots, answered when this group is.
  std::shared_ptr<Group> previous;

  // Set by the writer.
  bool wrote = false;  // its requests were written (synced or not)
  enum class Outcome {
    kPending,
    kDurable,     // written and synced (or nothing to write)
    kWritten,     // written, awaiting a sync (deferred_sync)
    kRetry,       // not written: decide again (see WriteGroupTimed)
    kWriteError,  // not written, or unknown: the log refuses appends now
  };
  Outcome outcome = Outcome::kPending;
  absl::Status error;  // kRetry, kWriteError
  absl::Duration write_time;
  bool write_started = false;  // guarded by mu_
  bool complete = false;       // guarded by mu_: written (or failed)

  // In the log (durable, or awaiting its sync), or nothing to write.
  bool Written() const {
    return outcome == Outcome::kDurable || outcome == Outcome::kWritten;
  }
};

GroupCommit::GroupCommit(EventLog* log, GroupCommitOptions options,
                         DecideCommandFn decide)
    : log_(log), options_(options), decide_(std::move(decide)) {
  // The leaders decide against their groups written and not yet synced.
  committed_ =
      std::make_unique<ProjectionReader>(log_, EventLog::ReadView::kAppended);
  cache_ = std::make_unique<StateCache>(committed_.get(),
                                        options_.state_cache_entries);
  writer_ = std::thread([this] { WriterLoop(); });
}

GroupCommit::~GroupCommit() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  writer_cv_.notify_all();
  writer_.join();
}

absl::StatusOr<v1::CommandResult> GroupCommit::Execute(
    const v1::Command& command) {
  if (std::optional<v1::CommandResult> invalid = ShapeProblem(command)) {
    return *std::move(invalid);
  }
  // Hashed here, on the caller's thread, not by the leader.
  std::string fingerprint = CommandFingerprint(command);
  absl::StatusOr<v1::CommandResult> result = absl::InternalError("not run");
  std::atomic<size_t> first_failure{SIZE_MAX};
  Caller caller;
  Waiter waiter;
  waiter.caller = &caller;
  waiter.commands = &command;
  waiter.fingerprints = &fingerprint;
  waiter.results = &result;
  waiter.count = 1;
  waiter.answered.assign(1, 0);
  waiter.unanswered = 1;
  waiter.first_failure = &first_failure;
  Submit(&caller, {&waiter});
  return result;
}

std::vector<absl::StatusOr<v1::CommandResult>> GroupCommit::ExecuteBatch(
    std::vector<v1::Command> commands) {
  const size_t n = commands.size();
  std::vector<absl::StatusOr<v1::CommandResult>> results(
      n, absl::InternalError("not run"));
  std::vector<std::string> fingerprints(n);
  std::atomic<size_t> first_failure{SIZE_MAX};
  Caller caller;
  std::vector<std::unique_ptr<Waiter>> chunks;
  for (size_t offset = 0; offset < n; offset += kGroupCommandsMax) {
    auto waiter = std::make_unique<Waiter>();
    waiter->caller = &caller;
    waiter->commands = commands.data() + offset;
    waiter->fingerprints = fingerprints.data() + offset;
    waiter->results = results.data() + offset;
    waiter->count = std::min(kGroupCommandsMax, n - offset);
    waiter->answered.assign(waiter->count, 0);
    waiter->first_failure = &first_failure;
    waiter->offset = offset;
    waiter->stop_at_first_error = true;
    for (size_t i = 0; i < waiter->count; ++i) {
      if (std::optional<v1::CommandResult> invalid =
              ShapeProblem(commands[offset + i])) {
        results[offset + i] = *std::move(invalid);
        waiter->answered[i] = 1;
      } else {
        ++waiter->unanswered;
      }
    }
    if (waiter->unanswered > 0) chunks.push_back(std::move(waiter));
  }
  std::vector<Waiter*> waiters;
  for (const auto& chunk : chunks) waiters.push_back(chunk.get());
  if (!waiters.empty()) Submit(&caller, waiters);
  // INVALID commands after the first failure were answered before it was
  // known; like every command after it, they count as not executed.
  const size_t failed = first_failure.load();
  for (size_t i = failed == SIZE_MAX ? n : failed + 1; i < n; ++i) {
    results[i] = NotExecuted();
  }
  return results;
}

void GroupCommit::Submit(Caller* caller, const std::vector<Waiter*>& waiters) {
  std::unique_lock<std::mutex> lock(mu_);
  size_t queued = 0;
  while (true) {
    // Queue what there is room for (an empty queue always has room).
    while (queued < waiters.size() &&
           (queue_.empty() || queued_commands_ + waiters[queued]->unanswered <=
                                  kQueuedCommandsMax)) {
      queue_.push_back(waiters[queued]);
      queued_commands_ += waiters[queued]->unanswered;
      ++queued;
    }
    if (queued == waiters.size() &&
        std::all_of(waiters.begin(), waiters.end(),
                    [](const Waiter* w) { return w->done; })) {
      return;
    }
    if (!syncing_ && !unsynced_.empty() && Waits(*unsynced_.front(), caller)) {
      RunSyncs(lock);
      continue;
    }
    if (!deciding_ && !queue_.empty() && queue_.front()->caller == caller) {
      Lead(caller, /*more_to_queue=*/queued < waiters.size(), lock);
      continue;
    }
    const bool wants_room = queued < waiters.size();
    if (wants_room) room_waiters_.push_back(caller);
    caller->cv.wait(lock);
    if (wants_room) {
      room_waiters_.erase(
          std::remove(room_waiters_.begin(), room_waiters_.end(), caller),
          room_waiters_.end());
    }
  }
}

void GroupCommit::NotifyFront() {
  if (!deciding_ && !queue_.empty()) queue_.front()->caller->cv.notify_one();
}

bool GroupCommit::Waits(const Group& group, const Caller* caller) {
  return std::any_of(
      group.waiters.begin(), group.waiters.end(),
      [caller](const Waiter* w) { return w->caller == caller && !w->done; });
}

void GroupCommit::WakeSyncer() {
  if (syncing_ || unsynced_.empty()) return;
  for (Waiter* waiter : unsynced_.front()->waiters) {
    if (!waiter->done) {
      waiter->caller->cv.notify_one();
      return;
    }
  }
}

void GroupCommit::Publish(const Group& group) {
  for (Waiter* waiter : group.waiters) {
    if (waiter->unanswered == 0 && !waiter->done) {
      waiter->done = true;
      waiter->caller->cv.notify_one();
    }
  }
}

void GroupCommit::Requeue(const std::vector<Group*>& groups) {
  std::vector<Waiter*> again;
  for (const Group* group : groups) {
    Publish(*group);
    for (Waiter* waiter : group->waiters) {
      if (!waiter->done) again.push_back(waiter);
    }
  }
  for (auto it = again.rbegin(); it != again.rend(); ++it) {
    queue_.push_front(*it);
    queued_commands_ += (*it)->unanswered;
  }
  NotifyFront();
}

void GroupCommit::Lead(Caller* caller, bool more_to_queue,
                       std::unique_lock<std::mutex>& lock) {
  deciding_ = true;
  // (The writer requeues a group to be decided again itself when no leader
  // is deciding, and a deciding leader does so before it steps down; this
  // only keeps that invariant from costing a lost answer.)
  if (inflight_ != nullptr && inflight_->complete &&
      inflight_->outcome == Group::Outcome::kRetry) {
    if (absl::IsAborted(inflight_->error)) clear_cache_ = true;
    std::shared_ptr<Group> again = std::move(inflight_);
    Requeue({again.get()});
  }
  auto group = std::make_shared<Group>();
  size_t taken = 0;
  while (!queue_.empty()) {
    Waiter* waiter = queue_.front();
    if (!group->waiters.empty() &&
        taken + waiter->unanswered > kGroupCommandsMax) {
      break;
    }
    group->waiters.push_back(waiter);
    taken += waiter->unanswered;
    queued_commands_ -= waiter->unanswered;
    queue_.pop_front();
  }
  for (Caller* waiting : room_waiters_) waiting->cv.notify_one();
  // A leader with nothing more to lead writes its group itself, as the
  // writer thread would: its thread would only wait for the answer, and the
  // two hand-offs (to the writer and back) cost more than deciding a small
  // group on this VM. A leader with more queued (ExecuteBatch) hands the
  // group to the writer and decides the next one meanwhile.
  const bool write_here =
      !more_to_queue &&
      std::none_of(queue_.begin(), queue_.end(),
                   [caller](const Waiter* w) { return w->caller == caller; });
  // A group the writer finished while no one was deciding: fold it into the
  // cache now (a group that must be decided again was requeued by the
  // writer already).
  std::shared_ptr<Group> finished;
  if (inflight_ != nullptr && inflight_->complete) {
    finished = std::move(inflight_);
  }
  const Group* previous = inflight_.get();  // being written, or none
  const bool clear_cache = std::exchange(clear_cache_, false);
  lock.unlock();

  if (clear_cache) cache_->Clear();
  if (finished != nullptr && finished->Written()) {
    cache_->Apply(*finished->state);
    if (finished->any_rejection) cache_->ForgetHead(kRejectionsStream);
  }
  finished.reset();
  const absl::Time decide_start = absl::Now();
  DecideGroup(group.get(), previous);
  const absl::Time decided = absl::Now();

  lock.lock();
  ++stats_.groups;
  stats_.commands += group->slots.size();
  if (options_.observer != nullptr) {
    options_.observer->OnGroupDecided(group->slots.size());
  }
  stats_.deciding += decided - decide_start;
  while (inflight_ != nullptr && !inflight_->complete) inflight_cv_.wait(lock);
  stats_.waiting += absl::Now() - decided;
  if (inflight_ != nullptr) {  // `previous`, now written (or not)
    std::shared_ptr<Group> done = std::move(inflight_);
    if (done->outcome == Group::Outcome::kRetry) {
      // This group was decided against commands that are not in the log:
      // both go back to the queue and are decided again.
      if (absl::IsAborted(done->error)) clear_cache_ = true;
      Requeue({done.get(), group.get()});
      deciding_ = false;
      NotifyFront();
      return;
    }
    lock.unlock();
    // Its first uses answer this group's kFollowsPrevious slots when this
    // group is answered (durable by then: syncs cover earlier writes).
    group->previous = done;
    if (done->Written()) {
      cache_->Apply(*done->state);
      if (done->any_rejection) cache_->ForgetHead(kRejectionsStream);
    }
    group->before.target = cache_.get();
    done.reset();
    lock.lock();
  }
  Group* mine = group.get();
  // A group its leader writes is synced apart (RunSyncs), so that the next
  // group can be written while this one's sync is under way.
  mine->deferred_sync = write_here && options_.sync;
  inflight_ = std::move(group);
  deciding_ = false;
  if (!write_here) {
    writer_cv_.notify_one();
    NotifyFront();
    return;
  }
  mine->write_started = true;
  ++stats_.written_by_leader;
  NotifyFront();  // the next leader decides against this group meanwhile
  lock.unlock();
  WriteGroup(mine);
  lock.lock();
  FinishWrite(mine);
  if (!syncing_ && !unsynced_.empty()) RunSyncs(lock);
}

void GroupCommit::RunSyncs(std::unique_lock<std::mutex>& lock) {
  syncing_ = true;
  // A group being decided or written now is covered too if the sync waits
  // for it (briefly: kSyncGatherMax): one sync for both costs less than two
  // in a row -- with many clients, the ones the last sync answered are the
  // ones being decided now.
  const absl::Time gather_until = absl::Now() + kSyncGatherMax;
  while ((deciding_ || (inflight_ != nullptr && inflight_->write_started &&
                        !inflight_->complete)) &&
         absl::Now() < gather_until) {
    inflight_cv_.wait_for(lock, std::chrono::microseconds(50));
  }
  std::vector<std::shared_ptr<Group>> batch(unsynced_.begin(), unsynced_.end());
  unsynced_.clear();
  lock.unlock();
  // Covers every group in `batch`: each was written before this call.
  const absl::Time start = absl::Now();
  const absl::Status synced = log_->Sync();
  const absl::Time end = absl::Now();
  lock.lock();
  syncing_ = false;
  ++stats_.syncs;
  stats_.syncing += end - start;
  if (options_.observer != nullptr) options_.observer->OnSynced(end - start);
  for (const std::shared_ptr<Group>& group : batch) {
    AnswerWritten(*group, synced);
    Publish(*group);
  }
  if (!synced.ok()) {
    // The log refuses appends now; the groups written while this sync ran
    // may or may not be on disk: none of them is acknowledged.
    for (const std::shared_ptr<Group>& group : unsynced_) {
      AnswerWritten(*group, synced);
      Publish(*group);
    }
    unsynced_.clear();
  }
  // The groups written meanwhile: one of their callers syncs them next, so
  // that this caller (answered) returns now.
  WakeSyncer();
}

void GroupCommit::AnswerWritten(Group& group, const absl::Status& synced) {
  for (Slot& slot : group.slots) {
    if (slot.state == Slot::State::kWrites) {
      if (synced.ok()) {
        slot.Answer(slot.result);
      } else {
        slot.Answer(synced);
      }
    }
  }
  for (Slot& slot : group.slots) {
    if (slot.state != Slot::State::kFollows) continue;
    if (!synced.ok()) {
      slot.Answer(synced);
      continue;
    }
    const Slot& first = group.slots[slot.earlier];
    slot.Answer(Repeated(slot.command(), slot.fingerprint(),
                         first.fingerprint_copy, first.result));
  }
  AnswerFollowers(group, synced);
}

void GroupCommit::AnswerFollowers(Group& group, const absl::Status& status) {
  for (Slot& slot : group.slots) {
    if (slot.state != Slot::State::kFollowsPrevious) continue;
    const Group& first_group = *group.previous;
    if (!status.ok()) {
      slot.Answer(status);
    } else if (!first_group.Written()) {
      slot.Answer(first_group.error);  // its first use was not acknowledged
    } else {
      const Slot& first = first_group.slots[slot.earlier];
      slot.Answer(Repeated(slot.command(), slot.fingerprint(),
                           first.fingerprint_copy, first.result));
    }
  }
  group.previous.reset();
}

GroupCommitStats GroupCommit::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

absl::StatusOr<std::vector<AppendResult>> GroupCommit::AppendReplicated(
    std::vector<AppendRequest> requests) {
  absl::StatusOr<std::vector<AppendResult>> appended =
      log_->AppendReplicated(std::move(requests));
  // The next group decided here (after a promotion) must not decide against
  // records cached before these appends.
  std::lock_guard<std::mutex> lock(mu_);
  clear_cache_ = true;
  return appended;
}

void GroupCommit::FinishWrite(Group* group) {
  using Outcome = Group::Outcome;
  group->complete = true;
  stats_.writing += group->write_time;
  if (options_.observer != nullptr) {
    options_.observer->OnGroupWritten(group->write_time);
  }
  switch (group->outcome) {
    case Outcome::kRetry:
      if (!deciding_) {
        // No leader will look at this group: its unanswered commands go
        // back to the front of the queue now.
        if (absl::IsAborted(group->error)) clear_cache_ = true;
        std::shared_ptr<Group> done = std::move(inflight_);
        Requeue({done.get()});
      }
      break;
    case Outcome::kWriteError:
      AnswerFollowers(*group, group->error);
      Publish(*group);
      break;
    case Outcome::kDurable:
      if (!group->wrote && (syncing_ || !unsynced_.empty())) {
        // Nothing of its own to write, but what it answers (repeats of
        // commands written before it) is durable only once the writes
        // before it are: it waits for the next sync with them.
        group->outcome = Outcome::kWritten;
        unsynced_.push_back(inflight_);
      } else {
        if (!group->wrote) AnswerFollowers(*group, absl::OkStatus());
        Publish(*group);
      }
      break;
    case Outcome::kWritten:
      unsynced_.push_back(inflight_);
      break;
    case Outcome::kPending:
      break;
  }
  inflight_cv_.notify_all();
}

void GroupCommit::DecideGroup(Group* group, const Group* previous) {
  group->before.target =
      previous != nullptr
          ? static_cast<const StateReader*>(previous->state.get())
          : cache_.get();
  group->state = std::make_unique<StateOverlay>(&group->before);
  StateOverlay& state = *group->state;
  uint64_t next_position = previous != nullptr
                               ? previous->first_position + previous->events
                               : log_->appended_head().position + 1;
  group->first_position = next_position;

  for (Waiter* waiter : group->waiters) {
    for (size_t i = 0; i < waiter->count; ++i) {
      if (waiter->answered[i]) continue;
      Slot& slot = group->slots.emplace_back();
      slot.waiter = waiter;
      slot.index = i;
    }
  }
  // After a write or sync error nothing is answered, not even a repeat:
  // the outcomes in the log may be ones whose sync failed.
  const absl::Status refused = log_->WriteRefusal();
  for (size_t k = 0; k < group->slots.size(); ++k) {
    Slot& slot = group->slots[k];
    if (slot.Stopped()) {
      slot.Answer(NotExecuted());
      continue;
    }
    if (!refused.ok()) {
      slot.Answer(refused);
      continue;
    }
    const v1::Command& command = slot.command();
    // The same id earlier in this group or in the group being written:
    // answered once that command's answer is durable, exactly as a retry
    // after it would be.
    if (auto earlier = group->first_use.find(command.command_id());
        earlier != group->first_use.end()) {
      slot.state = Slot::State::kFollows;
      slot.earlier = earlier->second;
      continue;
    }
    if (previous != nullptr) {
      if (auto earlier = previous->first_use.find(command.command_id());
          earlier != previous->first_use.end()) {
        slot.state = Slot::State::kFollowsPrevious;
        slot.earlier = earlier->second;
        continue;
      }
    }
    absl::StatusOr<std::optional<v1::StoredOutcome>> stored =
        log_->GetOutcome(command.command_id(), EventLog::ReadView::kAppended);
    if (!stored.ok()) {
      slot.Answer(stored.status());
      continue;
    }
    if (stored->has_value()) {
      slot.Answer(Repeated(command, slot.fingerprint(),
                           (*stored)->fingerprint(), (*stored)->result()));
      continue;
    }
    AppendRequest request;
    bool rejected = false;
    if (absl::Status decided =
            decide_(command, slot.fingerprint(), state, next_position, &request,
                    &slot.result, &rejected);
        !decided.ok()) {
      slot.Answer(decided);
      continue;
    }
    group->any_rejection |= rejected;
    group->first_use.emplace(command.command_id(), k);
    slot.fingerprint_copy = slot.fingerprint();
    next_position += request.events.size();
    slot.state = Slot::State::kWrites;
    slot.request = group->requests.size();
    group->requests.push_back(std::move(request));
    group->request_slots.push_back(k);
  }
  group->events = next_position - group->first_position;
  // Our own bookkeeping: one request, with one outcome, per command that
  // writes, in the order of its slot.
  SL_CHECK(group->requests.size() == group->request_slots.size(),
           group->requests.size()
               << " requests for " << group->request_slots.size()
               << " commands that write");
  for (size_t r = 0; r < group->requests.size(); ++r) {
    const AppendRequest& request = group->requests[r];
    const v1::Command& command =
        group->slots[group->request_slots[r]].command();
    SL_CHECK(request.outcome.has_value() &&
                 request.outcome->result().command_id() == command.command_id(),
             "request " << r << " of the group does not carry command "
                        << command.command_id() << "'s outcome");
  }
  if (group->requests.empty()) return;
  // The group's record changes, each written once however many of its
  // commands touched it, ride with the last request: the group lands whole
  // or not at all.
  // Records are never deleted: the index entries of the records that
  // existed before the group are there already.
  for (auto& put : ProjectionPuts(state, &group->before)) {
    group->requests.back().projection_puts.push_back(std::move(put));
  }
}

void GroupCommit::WriteGroup(Group* group) {
  const absl::Time start = absl::Now();
  WriteGroupTimed(group);
  group->write_time = absl::Now() - start;
}

void GroupCommit::WriteGroupTimed(Group* group) {
  using Outcome = Group::Outcome;
  if (group->requests.empty()) {
    group->outcome = Outcome::kDurable;
    return;
  }
  size_t failed = 0;
  absl::StatusOr<std::vector<AppendResult>> appended = log_->AppendBatch(
      std::move(group->requests), &failed, /*sync=*/!group->deferred_sync);
  if (appended.ok()) {
    SL_CHECK(appended->size() == group->request_slots.size(),
             "AppendBatch answered " << appended->size() << " of "
                                     << group->request_slots.size()
                                     << " commands");
    group->wrote = true;
    for (Slot& slot : group->slots) {
      if (slot.state != Slot::State::kWrites) continue;
      const AppendResult& positions = (*appended)[slot.request];
      slot.result.set_first_position(positions.first_position);
      slot.result.set_last_position(positions.last_position);
    }
    if (group->deferred_sync) {
      group->outcome = Outcome::kWritten;  // answered by RunSyncs
      return;
    }
    AnswerWritten(*group, absl::OkStatus());
    group->outcome = Outcome::kDurable;
    return;
  }
  group->error = appended.status();
  if (failed >= group->request_slots.size()) {
    // A write error: no command that needed this write is acknowledged.
    for (Slot& slot : group->slots) {
      if (slot.state == Slot::State::kWrites ||
          slot.state == Slot::State::kFollows) {
        slot.Answer(appended.status());
      }
    }
    group->outcome = Outcome::kWriteError;
    return;
  }
  // One command's append failed its checks: that command gets the error;
  // the others (still unanswered) are decided again without it.
  group->slots[group->request_slots[failed]].Answer(appended.status());
  group->outcome = Outcome::kRetry;
}

void GroupCommit::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    writer_cv_.wait(lock, [&] {
      return stopping_ || (inflight_ != nullptr && !inflight_->write_started);
    });
    if (inflight_ == nullptr || inflight_->write_started) return;  // stopping
    Group* group = inflight_.get();
    group->write_started = true;
    lock.unlock();
    WriteGroup(group);
    lock.lock();
    FinishWrite(group);
  }
}

}  // namespace storeledger
