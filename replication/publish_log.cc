#include "replication/publish_log.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "replication/log_batch.h"
#include "storage/format.h"

namespace storeledger {
namespace {

// Publishes `data` as the message after `expected`, settling an answer in
// doubt by reading the stream there (as a leader does, replica.h).
absl::Status PublishAt(JetStream* js, uint32_t partition,
                       const std::string& data, uint64_t first_position,
                       uint64_t expected) {
  const std::string msg_id = LogMsgId(partition, first_position);
  absl::Duration backoff = absl::Milliseconds(20);
  absl::Status last;
  for (int attempt = 0; attempt < kPublishAttemptsMax; ++attempt) {
    absl::StatusOr<PublishAck> ack =
        js->Publish(partition, data, msg_id, expected);
    if (ack.ok() && !ack->duplicate && ack->sequence == expected + 1) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::optional<std::string>> stored =
        js->Get(partition, expected + 1);
    if (stored.ok() && stored->has_value()) {
      if (**stored == data) return absl::OkStatus();
      return absl::AbortedError(
          absl::StrCat("stream ", StreamName(partition),
                       " holds another message at "
                       "sequence ",
                       expected + 1, ": someone else writes this partition"));
    }
    if (!ack.ok() && absl::IsAborted(ack.status())) return ack.status();
    last = ack.ok() ? stored.status() : ack.status();
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  return absl::UnavailableError(
      absl::StrCat("publish ", msg_id, ": no answer after ",
                   kPublishAttemptsMax, " attempts: ", last.message()));
}

// The envelopes and outcomes of whole commands, owned, as a StoredGroup.
struct Pending {
  uint64_t first_position = 0;
  std::string prev_hash;
  std::vector<std::string> envelopes;
  std::vector<std::string> outcomes;

  StoredGroup View() const {
    StoredGroup group;
    group.first_position = first_position;
    group.prev_hash = prev_hash;
    for (const std::string& e : envelopes) group.envelopes.push_back(e);
    for (const std::string& o : outcomes) group.outcomes.push_back(o);
    return group;
  }
};

}  // namespace

absl::StatusOr<PublishLogStats> PublishLog(const EventLog& log, JetStream* js,
                                           uint32_t partition) {
  ASSIGN_OR_RETURN(const uint64_t last, js->LastSequence(partition));
  if (last != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stream ", StreamName(partition), " is not empty (last sequence ", last,
        "): publish only fills an empty partition stream"));
  }
  PublishLogStats stats;
  Pending pending;
  pending.prev_hash = std::string(format::kHashBytes, '\0');
  uint64_t command_last = 0;  // the current command's last position
  auto flush = [&]() -> absl::Status {
    if (pending.envelopes.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(
        std::vector<std::string> messages,
        SplitGroup(pending.View(), partition, 0, kLogBatchBytesMax));
    uint64_t first = pending.first_position;
    for (const std::string& message : messages) {
      v1::LogBatch batch;
      batch.ParseFromString(message);
      first = batch.first_position();
      RETURN_IF_ERROR(PublishAt(js, partition, message, first, stats.messages));
      ++stats.messages;
    }
    pending.prev_hash =
        std::string(format::HashOfStoredEnvelope(pending.envelopes.back()));
    pending.first_position += pending.envelopes.size();
    pending.envelopes.clear();
    pending.outcomes.clear();
    return absl::OkStatus();
  };
  pending.first_position = 1;
  absl::Status failed;
  RETURN_IF_ERROR(log.Scan(0, [&](const Envelope& envelope,
                                  absl::string_view raw) {
    if (envelope.position() > command_last) {
      // A new command: whole commands only, so the group may end here.
      if (pending.envelopes.size() >= kPublishGroupEventsMax) {
        failed = flush();
        if (!failed.ok()) return false;
      }
      absl::StatusOr<std::optional<StoredOutcome>> outcome =
          log.GetOutcome(envelope.command_id());
      if (!outcome.ok()) {
        failed = outcome.status();
        return false;
      }
      if (!outcome->has_value() ||
          (*outcome)->result().first_position() != envelope.position()) {
        failed = absl::FailedPreconditionError(absl::StrCat(
            "position ", envelope.position(), " (command ",
            envelope.command_id(),
            ") is not the first event of a stored "
            "command outcome: this log cannot be published as whole commands"));
        return false;
      }
      command_last = (*outcome)->result().last_position();
      pending.outcomes.push_back(SerializeDeterministic(**outcome));
    }
    pending.envelopes.emplace_back(raw);
    stats.position = envelope.position();
    stats.hash = envelope.hash();
    return true;
  }));
  RETURN_IF_ERROR(failed);
  RETURN_IF_ERROR(flush());
  return stats;
}

}  // namespace storeledger
