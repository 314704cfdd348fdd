// One replica of a partition (replication/replica.h).
//
// Leading: with Ack::kReplicated a group is stored (and its commands
// answered) only after JetStream acknowledged every message that carries
// it; a lost acknowledgement is settled by reading the stream at the
// expected sequence and comparing the bytes, and the publish is retried
// (same Nats-Msg-Id, same expected sequence) while no answer comes -- the
// leader then answers nothing, it never falls back to local-only. A
// refused publish (someone else extended the stream) or a lost lease
// deposes the replica: it answers nothing more and calls on_deposed
// (storeledgerd re-executes itself and comes back as a follower).
//
// Following: each message is checked (replication/log_batch.h) before
// anything of it is stored; its envelopes are stored unchanged and the
// projections folded from them (replay/projection_store.h). A message
// that fails a check stops the follower there: kDataLoss naming the
// position (status().data_loss); nothing past it is stored or served, and
// the replica never takes the lease.
//
// Starting: a log that holds positions the stream does not (a diverged
// tail) has them moved aside by Reconcile, before the ledger opens, into a
// diverged record that audit lists and nothing serves.

#include "replication/replica.h"

#include <filesystem>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "replay/projection_store.h"
#include "replay/rebuild.h"
#include "replication/log_batch.h"
#include "storage/diverged.h"
#include "storage/format.h"
#include "storeledger/v1/replication.pb.h"

namespace storeledger {
namespace {

// The hash of the last envelope of a message: the tail of its bytes.
std::string LastHash(const v1::LogBatch& batch) {
  return std::string(format::HashOfStoredEnvelope(
      batch.envelopes(batch.envelopes_size() - 1)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Replica>> Replica::Connect(
    ReplicaOptions options) {
  if (options.name.empty()) {
    return absl::InvalidArgumentError("a replica needs a name (its address)");
  }
  if (options.replicas == 0) {
    options.replicas = options.nats_urls.size() >= 3 ? 3 : 1;
  }
  std::unique_ptr<Replica> replica(new Replica(std::move(options)));
  const ReplicaOptions& o = replica->options_;
  ASSIGN_OR_RETURN(replica->js_, JetStream::Connect(o.nats_urls));
  RETURN_IF_ERROR(replica->js_->EnsureStream(o.partition, o.replicas));
  RETURN_IF_ERROR(replica->js_->EnsureLeaseBucket(o.lease_ttl, o.replicas));
  return replica;
}

Replica::~Replica() { Stop(); }

void Replica::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (runner_.joinable()) runner_.join();
  if (publisher_.joinable()) publisher_.join();
}

std::function<absl::Status(const StoredGroup&)> Replica::BeforeWrite() {
  return [this](const StoredGroup& group) { return Publish(group); };
}

absl::StatusOr<Replica::Fork> Replica::FindFork(const EventLog& log) {
  const Head head = log.head();
  ASSIGN_OR_RETURN(const uint64_t last, js_->LastSequence(options_.partition));
  if (head.position == 0 || last == 0) return Fork{};
  // The stream is contiguous (every message was checked when it was
  // applied or published): messages are in position order.
  auto batch_at = [&](uint64_t sequence) -> absl::StatusOr<v1::LogBatch> {
    ASSIGN_OR_RETURN(std::optional<std::string> data,
                     js_->Get(options_.partition, sequence));
    v1::LogBatch batch;
    if (!data.has_value() || !batch.ParseFromString(*data) ||
        batch.envelopes().empty()) {
      return absl::DataLossError(absl::StrCat("partition ", options_.partition,
                                              " stream sequence ", sequence,
                                              " is missing or does not parse"));
    }
    return batch;
  };
  // The last message that starts at or before the head.
  uint64_t low = 1;
  uint64_t high = last;
  uint64_t candidate = 0;
  while (low <= high) {
    const uint64_t middle = low + (high - low) / 2;
    ASSIGN_OR_RETURN(v1::LogBatch batch, batch_at(middle));
    if (batch.first_position() <= head.position) {
      candidate = middle;
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  // The messages up to the fork end where the log holds the same hash
  // (the chain makes every earlier position agree too); the ones after it
  // do not, or end past the head.
  Fork fork;
  low = 1;
  high = candidate;
  while (low <= high) {
    const uint64_t middle = low + (high - low) / 2;
    ASSIGN_OR_RETURN(v1::LogBatch batch, batch_at(middle));
    const uint64_t end = batch.first_position() + batch.envelopes_size() - 1;
    bool same = false;
    if (end <= head.position) {
      ASSIGN_OR_RETURN(Envelope local, log.Read(end));
      same = local.hash() == LastHash(batch);
    }
    if (same) {
      fork = Fork{middle, end};
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return fork;
}

absl::StatusOr<std::optional<v1::DivergedRecord>> Replica::Reconcile(
    const std::string& db_dir) {
  if (!std::filesystem::exists(std::filesystem::path(db_dir) / "CURRENT")) {
    return std::nullopt;  // a new ledger: the stream fills it
  }
  EventLogOptions open;
  open.create_if_missing = false;
  open.derive_projections = DeriveProjections;
  ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log, EventLog::Open(db_dir, open));
  const Head head = log->head();
  ASSIGN_OR_RETURN(const Fork fork, FindFork(*log));
  if (fork.position == head.position) return std::nullopt;
  ASSIGN_OR_RETURN(const uint64_t last, js_->LastSequence(options_.partition));
  const std::string reason = absl::StrCat(
      "stream ", StreamName(options_.partition),
      " holds this log up to "
      "position ",
      fork.position, " (sequence ", fork.sequence, ") and ",
      last == fork.sequence
          ? std::string("nothing after it")
          : absl::StrCat("other messages after it (up to sequence ", last, ")"),
      "; positions ", fork.position + 1, "..", head.position,
      " were never published");
  ASSIGN_OR_RETURN(
      v1::DivergedRecord record,
      MoveTailAside(log.get(), fork.position, reason, absl::Now()));
  log.reset();  // its head and caches are those of before
  ASSIGN_OR_RETURN(log, EventLog::Open(db_dir, open));
  RETURN_IF_ERROR(Rebuild(log.get(), RebuildOptions()).status());
  std::cerr << "storeledger replica " << options_.name << ": moved positions "
            << record.first_position() << ".." << record.last_position()
            << " aside as diverged record " << record.record() << " (" << reason
            << ")\n";
  return record;
}

absl::Status Replica::Start(Ledger* ledger) {
  ledger_ = ledger;
  const Head head = ledger->log().head();
  ASSIGN_OR_RETURN(const Fork fork, FindFork(ledger->log()));
  if (fork.position != head.position) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the local log's head (position ", head.position,
        ") is past what "
        "stream ",
        StreamName(options_.partition), " holds of it (position ",
        fork.position, "): a diverged tail; Reconcile moves it aside"));
  }
  const uint64_t sequence = fork.sequence;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sequence_ = sequence;
    published_position_ = head.position;
    appended_position_ = head.position;
  }
  runner_ = std::thread([this] { Run(); });
  if (options_.ack == ReplicaOptions::Ack::kLocal) {
    publisher_ = std::thread([this] { PublishLoop(); });
  }
  return absl::OkStatus();
}

void Replica::Run() {
  while (true) {
    ReplicaRole role;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      role = role_;
      if (role == ReplicaRole::kDeposed && !deposed_reported_) {
        deposed_reported_ = true;
        if (options_.on_deposed) {
          const absl::Status why = deposed_;
          mu_.unlock();
          options_.on_deposed(why);
          mu_.lock();
        }
      }
    }
    bool busy = false;
    if (role == ReplicaRole::kLeader) {
      Renew();
    } else if (role == ReplicaRole::kFollower) {
      CheckStreamLast();
      busy = ApplyAvailable();
      if (!busy && !options_.follow_only) TryLead();
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (!busy && !stop_) {
      cv_.wait_for(lock, absl::ToChronoMilliseconds(role == ReplicaRole::kLeader
                                                        ? options_.lease_ttl / 8
                                                        : kFollowPollInterval));
    }
  }
}

void Replica::CheckStreamLast() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Now() < stream_last_checked_ + kStreamLastCheckInterval) return;
    stream_last_checked_ = absl::Now();
  }
  absl::StatusOr<uint64_t> last = js_->LastSequence(options_.partition);
  if (!last.ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  stream_last_sequence_ = *last;
}

bool Replica::ApplyAvailable() {
  uint64_t next;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!data_loss_.ok()) return false;  // nothing past a bad message
    next = sequence_ + 1;
  }
  // What the stream holds from `next` on, up to one append's worth.
  std::vector<std::string> messages;
  size_t bytes = 0;
  while (messages.size() < kApplyMessagesMax && bytes < kApplyBytesMax) {
    absl::StatusOr<std::optional<std::string>> data =
        js_->Get(options_.partition, next + messages.size());
    if (!data.ok() || !data->has_value()) break;
    bytes += (*data)->size();
    messages.push_back(**std::move(data));
  }
  if (messages.empty()) return false;
  size_t applied = 0;
  absl::Status status = ApplyMessages(next, messages, &applied);
  std::lock_guard<std::mutex> lock(mu_);
  if (applied > 0) {
    ++applied_appends_;
    sequence_ = next + applied - 1;
    published_position_ = appended_position_ = ledger_->log().head().position;
    return true;
  }
  if (absl::IsDataLoss(status)) {
    data_loss_ = status;
    std::cerr << "storeledger replica: refusing " << status.message()
              << "; nothing past it is applied\n";
  }
  return false;
}

absl::Status Replica::ApplyMessages(uint64_t first_sequence,
                                    absl::Span<const std::string> messages,
                                    size_t* applied) {
  *applied = 0;
  // The projections, folded from the envelopes as a rebuild folds them:
  // each message in an overlay of its own, kept only if it folds whole.
  ProjectionReader base(&ledger_->log());
  StateOverlay folded(&base);
  std::vector<AppendRequest> requests;
  Head head = ledger_->log().head();
  absl::Status stopped;
  size_t count = 0;
  for (; count < messages.size(); ++count) {
    const uint64_t sequence = first_sequence + count;
    absl::StatusOr<VerifiedBatch> verified =
        VerifyLogBatch(messages[count], options_.partition, sequence, head);
    if (!verified.ok()) {
      stopped = verified.status();
      break;
    }
    StateOverlay message(&folded);
    for (const Envelope& envelope : verified->envelopes) {
      if (absl::Status evolved = EvolveEnvelope(envelope, &message);
          !evolved.ok()) {
        stopped = absl::DataLossError(absl::StrCat(
            "partition ", options_.partition, " stream sequence ", sequence,
            ", position ", envelope.position(), ": ", evolved.message()));
        break;
      }
    }
    if (!stopped.ok()) break;
    folded.MergeFrom(std::move(message));
    size_t next = 0;
    for (v1::StoredOutcome& outcome : verified->outcomes) {
      AppendRequest& request = requests.emplace_back();
      const uint64_t events = outcome.result().last_position() -
                              outcome.result().first_position() + 1;
      for (uint64_t i = 0; i < events; ++i, ++next) {
        NewEvent& event = request.events.emplace_back();
        event.stored = verified->batch.envelopes(static_cast<int>(next));
      }
      request.outcome = std::move(outcome);
    }
    head = Head{verified->envelopes.back().position(),
                verified->envelopes.back().hash()};
  }
  // A bad message after good ones: the good ones are applied now, and the
  // next call meets the bad one first and reports it.
  if (count == 0) return stopped;
  SL_CHECK(!requests.empty(), "verified messages with no outcome");
  requests.back().projection_puts = ProjectionPuts(folded);
  absl::StatusOr<std::vector<AppendResult>> appended =
      ledger_->AppendReplicated(std::move(requests));
  if (appended.ok()) {
    *applied = count;
    return absl::OkStatus();
  }
  // The log's own checks refused one of them: the first half alone, down
  // to the first message, so that the good ones before the bad one land
  // in a few halvings (not one append per round) and a refusal names the
  // message at fault.
  if (count > 1) {
    return ApplyMessages(first_sequence, messages.first(count / 2), applied);
  }
  if (absl::IsDataLoss(appended.status())) {
    return absl::DataLossError(absl::StrCat("partition ", options_.partition,
                                            " stream sequence ", first_sequence,
                                            ": ", appended.status().message()));
  }
  return appended.status();
}

void Replica::TryLead() {
  const std::string key = LeaseKey(options_.partition);
  absl::StatusOr<std::optional<LeaseEntry>> lease = js_->GetLease(key);
  if (!lease.ok()) return;
  if (lease->has_value()) {
    std::lock_guard<std::mutex> lock(mu_);
    leader_ = (*lease)->holder;
    return;
  }
  // Only a replica that has applied the stream's last message may lead:
  // its first publish expects exactly that sequence.
  absl::StatusOr<uint64_t> last = js_->LastSequence(options_.partition);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!last.ok() || *last != sequence_) return;
  }
  absl::StatusOr<uint64_t> revision = js_->CreateLease(key, options_.name);
  if (!revision.ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  role_ = ReplicaRole::kLeader;
  leader_ = options_.name;
  lease_revision_ = *revision;
  renew_at_ = absl::Now() + options_.lease_ttl / 4;
  std::cerr << "storeledger replica " << options_.name << ": leading partition "
            << options_.partition << " from stream sequence " << sequence_
            << " (lease revision " << *revision << ")\n";
}

void Replica::Renew() {
  uint64_t revision;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Now() < renew_at_) return;
    revision = lease_revision_;
  }
  absl::StatusOr<uint64_t> renewed =
      js_->RenewLease(LeaseKey(options_.partition), options_.name, revision);
  if (renewed.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    lease_revision_ = *renewed;
    renew_at_ = absl::Now() + options_.lease_ttl / 4;
    return;
  }
  if (absl::IsAborted(renewed.status())) {
    Depose(absl::FailedPreconditionError(
               absl::StrCat("lease ", LeaseKey(options_.partition),
                            " lost: ", renewed.status().message())))
        .IgnoreError();
  }
  // No answer: try again soon. Safety does not rest on the lease.
}

absl::Status Replica::Depose(absl::Status why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (role_ != ReplicaRole::kDeposed) {
    role_ = ReplicaRole::kDeposed;
    deposed_ = why;
    std::cerr << "storeledger replica " << options_.name
              << ": deposed: " << why.message() << "\n";
  }
  cv_.notify_all();
  return absl::UnavailableError(absl::StrCat(
      "partition ", options_.partition, ": this replica no longer leads (",
      deposed_.message(), "); nothing more is acknowledged here"));
}

absl::Status Replica::WriteGate() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (role_ == ReplicaRole::kLeader) return absl::OkStatus();
  if (role_ == ReplicaRole::kDeposed) {
    return absl::UnavailableError(absl::StrCat(
        "partition ", options_.partition, ": this replica was deposed (",
        deposed_.message(), "); the leader is ",
        leader_.empty() ? "unknown" : leader_));
  }
  return absl::UnavailableError(absl::StrCat(
      "partition ", options_.partition, ": this replica follows",
      options_.follow_only ? " (read replica)" : "", "; the leader is ",
      leader_.empty() ? "not known yet" : leader_, ": send writes there"));
}

ReplicaStatus Replica::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ReplicaStatus{role_,
                       leader_,
                       sequence_,
                       std::max(stream_last_sequence_, sequence_),
                       published_position_,
                       data_loss_,
                       applied_appends_};
}

uint64_t Replica::publish_lag_events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return appended_position_ - published_position_;
}

absl::Status Replica::Publish(const StoredGroup& group) {
  uint64_t lease_revision;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (role_ != ReplicaRole::kLeader) {
      return absl::UnavailableError(
          absl::StrCat("partition ", options_.partition,
                       ": not the leader; nothing stored"));
    }
    lease_revision = lease_revision_;
  }
  ASSIGN_OR_RETURN(
      std::vector<std::string> messages,
      SplitGroup(group, options_.partition, lease_revision, kLogBatchBytesMax));
  std::vector<uint64_t> first_positions;
  for (const std::string& message : messages) {
    v1::LogBatch batch;
    batch.ParseFromString(message);
    first_positions.push_back(batch.first_position());
  }
  const uint64_t last_position =
      group.first_position + group.envelopes.size() - 1;
  if (options_.ack == ReplicaOptions::Ack::kLocal) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] {
      return stop_ || unpublished_.size() < kUnpublishedGroupsMax;
    });
    unpublished_.push_back(Pending{std::move(messages),
                                   std::move(first_positions), last_position});
    appended_position_ = last_position;
    cv_.notify_all();
    return absl::OkStatus();
  }
  std::lock_guard<std::mutex> publishing(publish_mu_);
  for (size_t i = 0; i < messages.size(); ++i) {
    RETURN_IF_ERROR(PublishMessage(messages[i], first_positions[i]));
  }
  std::lock_guard<std::mutex> lock(mu_);
  published_position_ = appended_position_ = last_position;
  return absl::OkStatus();
}

void Replica::PublishLoop() {
  while (true) {
    Pending pending;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !unpublished_.empty(); });
      if (stop_) return;
      pending = std::move(unpublished_.front());
      unpublished_.pop_front();
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> publishing(publish_mu_);
    for (size_t i = 0; i < pending.messages.size(); ++i) {
      if (!PublishMessage(pending.messages[i], pending.first_positions[i])
               .ok()) {
        return;  // deposed or stopping; the rest stays a local tail
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    published_position_ = pending.last_position;
  }
}

// One message, fenced. Retried with the same Nats-Msg-Id and expected
// sequence while no answer comes; an answer in doubt (no ack, a duplicate,
// a refusal that may be of our own earlier attempt) is settled by reading
// the stream at the sequence this message must have.
absl::Status Replica::PublishMessage(const std::string& data,
                                     uint64_t first_position) {
  const std::string msg_id = LogMsgId(options_.partition, first_position);
  absl::Duration backoff = absl::Milliseconds(20);
  while (true) {
    uint64_t expected;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) {
        return absl::UnavailableError(absl::StrCat(
            "partition ", options_.partition,
            ": shutting down before the stream acknowledged ", msg_id));
      }
      if (role_ != ReplicaRole::kLeader) return Depose(deposed_);
      expected = sequence_;
    }
    absl::StatusOr<PublishAck> ack =
        js_->Publish(options_.partition, data, msg_id, expected);
    if (options_.drop_publish_ack_every != 0 &&
        ++publishes_ % options_.drop_publish_ack_every == 0) {
      ack = absl::UnavailableError("acknowledgement dropped (test)");
    }
    if (ack.ok() && !ack->duplicate && ack->sequence == expected + 1) {
      std::lock_guard<std::mutex> lock(mu_);
      sequence_ = expected + 1;
      return absl::OkStatus();
    }
    // Settle by asking the stream what it holds at expected + 1.
    absl::StatusOr<std::optional<std::string>> stored =
        js_->Get(options_.partition, expected + 1);
    if (stored.ok() && stored->has_value()) {
      if (**stored == data) {
        std::lock_guard<std::mutex> lock(mu_);
        sequence_ = expected + 1;
        return absl::OkStatus();
      }
      return Depose(absl::FailedPreconditionError(absl::StrCat(
          "stream ", StreamName(options_.partition),
          " holds another message"
          " at sequence ",
          expected + 1, " (", msg_id, " refused by the fence",
          ack.ok() ? "" : absl::StrCat(": ", ack.status().message()), ")")));
    }
    if (!ack.ok() && absl::IsAborted(ack.status()) && stored.ok()) {
      // Refused, and nothing at expected + 1: the stream moved elsewhere
      // (a sequence we never saw); we are not its writer any more.
      return Depose(absl::FailedPreconditionError(absl::StrCat(
          msg_id, " refused by the fence: ", ack.status().message())));
    }
    // No answer, nothing stored yet (or the stream could not be asked):
    // the same publish again, once the cluster answers.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(backoff));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
}

}  // namespace storeledger
