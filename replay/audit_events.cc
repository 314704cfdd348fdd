// The audit's pass 1 (replay/audit.h): the events in position order --
// positions, the hash chain, streams, postings -- and the runs of events
// each command made, against the stored outcomes.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/money.h"
#include "core/postings.h"
#include "core/streams.h"
#include "replay/audit_internal.h"
#include "storage/event_log.h"
#include "storage/rocks_util.h"

namespace storeledger::audit_internal {

absl::Status Auditor::EventsPass() {
  std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.events_cf());
  uint64_t expected = 1;
  // Hash of position expected - 1 as stored; unknown after damage or a gap.
  std::optional<std::string> prev_hash = std::string(kHashBytes, '\0');
  uint64_t done = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const absl::string_view key = View(it->key());
    if (key.size() != kPositionBytes) {
      Integrity(kCheckPositions, absl::StatusCode::kDataLoss, 0, "", key,
                absl::StrCat("events key of ", key.size(),
                             " bytes (keys are 8-byte positions), after "
                             "position ",
                             expected - 1));
      continue;
    }
    const uint64_t position = DecodeBigEndian64(key);
    if (position == 0) {
      Integrity(kCheckPositions, absl::StatusCode::kDataLoss, 0, "", key,
                "an event is stored at position 0; positions start at 1");
      continue;
    }
    if (position > head_position_) {
      Integrity(kCheckPositions, absl::StatusCode::kDataLoss, position, "", "",
                absl::StrCat("an event is stored at position ", position,
                             ", beyond the head at ", head_position_));
      continue;
    }
    if (position != expected) {
      Integrity(kCheckPositions, absl::StatusCode::kDataLoss, expected, "", "",
                absl::StrCat("position", expected + 1 == position ? " " : "s ",
                             Range(expected, position - 1),
                             " missing: the log has a gap"));
      prev_hash.reset();
      Taint(position - 1);
    }
    expected = position + 1;
    CheckEnvelope(position, View(it->value()), &prev_hash);
    Progress(diagnosing_ ? "events (second look)" : "events", ++done,
             head_position_);
  }
  RETURN_IF_ERROR(io_error_);
  RETURN_IF_ERROR(IteratorEnd(*it, kCheckPositions, "the events"));
  if (expected <= head_position_ && it->status().ok()) {
    Integrity(kCheckPositions, absl::StatusCode::kDataLoss, expected, "", "",
              absl::StrCat("position", expected == head_position_ ? " " : "s ",
                           Range(expected, head_position_),
                           " missing: the log ends before its head"));
  }
  CloseRun();
  if (!diagnosing_ && prev_hash.has_value() && expected == head_position_ + 1 &&
      head_position_ > 0 && *prev_hash != head_hash_) {
    Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, head_position_, "",
              "",
              absl::StrCat("the stored head hash ", ToHex(head_hash_),
                           " differs from the hash of the last event, ",
                           ToHex(*prev_hash)));
  }
  Progress(diagnosing_ ? "events (second look)" : "events", done,
           head_position_, true);
  return absl::OkStatus();
}

void Auditor::CheckEnvelope(uint64_t position, absl::string_view raw,
                            std::optional<std::string>* prev_hash) {
  if (!diagnosing_) report_.set_events_checked(report_.events_checked() + 1);
  absl::StatusOr<v1::Envelope> parsed = ParseStoredEnvelope(position, raw);
  if (!parsed.ok()) {
    Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, position, "", "",
              std::string(parsed.status().message()));
    prev_hash->reset();
    Taint(position);
    return;
  }
  const v1::Envelope& envelope = *parsed;
  const std::string computed = StoredEnvelopeHash(envelope, raw);
  const bool hash_ok = computed == envelope.hash();
  if (!hash_ok) {
    Integrity(
        kCheckHashChain, absl::StatusCode::kDataLoss, position,
        envelope.stream_id(), "",
        absl::StrCat("event at position ", position, ": hash mismatch: stored ",
                     ToHex(envelope.hash()), ", computed ", ToHex(computed),
                     " (the stored bytes were changed)"));
  }
  if (prev_hash->has_value() && envelope.prev_hash() != **prev_hash) {
    Integrity(
        kCheckHashChain, absl::StatusCode::kDataLoss, position,
        envelope.stream_id(), "",
        absl::StrCat("event at position ", position, ": prev_hash ",
                     ToHex(envelope.prev_hash()), " does not link to the hash ",
                     ToHex(**prev_hash), " of position ", position - 1));
  }
  *prev_hash = envelope.hash();
  if (!hash_ok) {
    // The content cannot be trusted: checking it would only add noise.
    Taint(position);
    return;
  }
  if (!diagnosing_) ++good_envelopes_;
  if (check_index_) CheckIndexed(envelope);
  if (!diagnosing_) {
    CheckStream(envelope);
    CheckPostings(envelope);
  }
  AddToRun(envelope);
}

void Auditor::CheckIndexed(const v1::Envelope& envelope) {
  const uint64_t position = envelope.position();
  const std::string& stream = envelope.stream_id();
  if (stream.empty() ||
      stream.find(kStreamIndexSeparator) != std::string::npos) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position, stream,
              "", "the envelope's stream id is empty or holds a NUL byte");
    return;
  }
  const std::string key = StreamIndexKey(stream, envelope.stream_version());
  absl::StatusOr<std::optional<std::string>> value =
      GetOrReport(log_.streams_cf(), key, kCheckStreamIndex, position);
  if (!value.ok()) {
    io_error_ = value.status();
    return;
  }
  if (!value->has_value()) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position, stream,
              key,
              absl::StrCat("event at position ", position, " (stream ", stream,
                           " version ", envelope.stream_version(),
                           ") is not in the stream index"));
  } else if (**value != PositionKey(position)) {
    Violation(
        kCheckStreamIndex, absl::StatusCode::kDataLoss, position, stream, key,
        absl::StrCat("the index entry of stream ", stream, " version ",
                     envelope.stream_version(), " points at ",
                     (*value)->size() == kPositionBytes
                         ? absl::StrCat("position ", DecodeBigEndian64(**value))
                         : std::string("a malformed position"),
                     ", not at position ", position, ", which holds it"));
  }
}

void Auditor::CheckStream(const v1::Envelope& envelope) {
  const std::string expected = ExpectedStream(envelope.payload());
  if (expected.empty()) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss,
              envelope.position(), envelope.stream_id(), "",
              "the event has no body");
  } else if (expected != envelope.stream_id()) {
    Violation(kCheckStreamIndex, absl::StatusCode::kFailedPrecondition,
              envelope.position(), envelope.stream_id(), "",
              absl::StrCat("a ", envelope.event_type(), " event belongs in ",
                           "stream ", expected, " but was appended to ",
                           envelope.stream_id()));
  }
}

void Auditor::CheckPostings(const v1::Envelope& envelope) {
  const std::vector<Posting> postings = PostingsFor(envelope.payload());
  if (postings.empty()) return;
  const uint64_t position = envelope.position();
  report_.set_postings_checked(report_.postings_checked() + postings.size());
  const std::string& store = postings.front().store_id;
  int64_t sum = 0;
  bool overflow = false;
  for (const Posting& posting : postings) {
    if (posting.store_id != store) {
      Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition, position,
                envelope.stream_id(), "",
                absl::StrCat("the postings of one event name two stores, ",
                             store, " and ", posting.store_id, " (R13)"));
    }
    if (!AccountOfStore(store, posting.account)) {
      Violation(
          kCheckPostings, absl::StatusCode::kFailedPrecondition, position,
          envelope.stream_id(), "",
          absl::StrCat("a posting of store ", store, " touches account ",
                       posting.account, ", which is not that store's (R13)"));
    }
    if (posting.debit_fen < 0 || posting.credit_fen < 0) {
      Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition, position,
                envelope.stream_id(), "",
                absl::StrCat("a posting to ", posting.account,
                             " has a negative amount"));
    }
    std::optional<int64_t> net =
        CheckedSub(posting.debit_fen, posting.credit_fen);
    std::optional<int64_t> next =
        net.has_value() ? CheckedAdd(sum, *net) : std::nullopt;
    if (!next.has_value()) {
      overflow = true;
    } else {
      sum = *next;
    }
  }
  if (overflow) {
    Violation(kCheckPostings, absl::StatusCode::kDataLoss, position,
              envelope.stream_id(), "",
              "the postings' sum overflows int64 fen");
  } else if (sum != 0) {
    Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition, position,
              envelope.stream_id(), "",
              absl::StrCat("the postings do not balance: debits - credits = ",
                           sum, " fen"));
  }
  if (envelope.stream_id() != StoreStream(store)) {
    Violation(
        kCheckPostings, absl::StatusCode::kFailedPrecondition, position,
        envelope.stream_id(), "",
        absl::StrCat("the event moves money of store ", store,
                     " but lives in stream ", envelope.stream_id(), " (R13)"));
  }
}

void Auditor::Taint(uint64_t through) {
  if (run_.active) {
    run_.tainted = true;
    run_.last = std::max(run_.last, through);
  }
  next_run_tainted_ = true;
}

void Auditor::AddToRun(const v1::Envelope& envelope) {
  const uint64_t position = envelope.position();
  if (run_.active && run_.command_id == envelope.command_id() &&
      run_.last + 1 == position) {
    run_.last = position;
    run_.last_good = position;
  } else {
    CloseRun();
    run_ = CommandRun();
    run_.active = true;
    run_.command_id = envelope.command_id();
    run_.first = run_.last = run_.first_good = run_.last_good = position;
    run_.tainted = next_run_tainted_;
    if (envelope.command_id().empty()) {
      Integrity(kCheckOutcomes, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), "", "the envelope carries no command id");
      run_.outcome_unreadable = true;
      tainted_any_ = true;
    } else if (lookup_outcomes_) {
      absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
          ReadOutcome(envelope.command_id());
      if (absl::IsDataLoss(outcome.status())) {
        run_.outcome_unreadable = true;  // pass 3 names it
      } else if (!outcome.ok()) {
        io_error_ = outcome.status();
        run_.outcome_unreadable = true;
      } else {
        run_.outcome = *std::move(outcome);
      }
    }
  }
  next_run_tainted_ = false;
  if (envelope.payload().has_command_rejected()) {
    if (run_.rejections++ == 0) {
      const v1::CommandRejected& rejected =
          envelope.payload().command_rejected();
      run_.fingerprint = Sha256(SerializeDeterministic(rejected.command()));
      run_.rule = rejected.rule();
      run_.code = rejected.code();
      if (rejected.command().command_id() != envelope.command_id()) {
        run_.fingerprint.clear();  // cannot match the outcome
      }
    }
  } else {
    ++run_.facts;
  }
  if (lookup_outcomes_) CheckAgainstOutcome(envelope);
}

void Auditor::CheckAgainstOutcome(const v1::Envelope& envelope) {
  if (!run_.outcome.has_value()) return;
  const v1::StoredOutcome& outcome = *run_.outcome;
  const v1::CommandResult& result = outcome.result();
  const uint64_t position = envelope.position();
  const bool is_rejection = envelope.payload().has_command_rejected();
  if (result.status() != (is_rejection ? v1::REJECTED : v1::ACCEPTED)) {
    Violation(
        kCheckOutcomes, absl::StatusCode::kDataLoss, position,
        envelope.stream_id(), envelope.command_id(),
        absl::StrCat("command ", envelope.command_id(), " has stored outcome ",
                     v1::OutcomeStatus_Name(result.status()),
                     " but its event at position ", position, " is a ",
                     envelope.event_type()));
    return;
  }
  if (!is_rejection) return;
  const v1::CommandRejected& rejected = envelope.payload().command_rejected();
  if (rejected.command().command_id() != envelope.command_id() ||
      Sha256(SerializeDeterministic(rejected.command())) !=
          outcome.fingerprint() ||
      rejected.rule() != result.rule() || rejected.code() != result.code()) {
    Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, position,
              envelope.stream_id(), envelope.command_id(),
              absl::StrCat("the rejection recorded at position ", position,
                           " does not match the stored outcome of command ",
                           envelope.command_id(),
                           " (command, fingerprint, rule or code differ)"));
  }
}

void Auditor::CloseRun() {
  if (!run_.active) return;
  run_.active = false;
  if (!lookup_outcomes_) {
    // First look: no lookups, only the run's fingerprint in the multiset
    // that pass 3 compares with the stored outcomes'.
    if (run_.tainted || run_.outcome_unreadable) {
      tainted_any_ = true;
      return;
    }
    const bool rejected = run_.facts == 0;
    const v1::OutcomeStatus status =
        run_.rejections == 0 ? v1::ACCEPTED
        : rejected           ? v1::REJECTED
                             : v1::OUTCOME_STATUS_UNSPECIFIED;  // mixed
    runs_.Add(OutcomeFingerprint(
        run_.command_id, run_.first, run_.last, status,
        rejected ? run_.fingerprint : "", rejected ? run_.rule : "",
        rejected ? run_.code : v1::REJECTION_CODE_UNSPECIFIED));
    return;
  }
  if (run_.outcome_unreadable) return;
  const std::string& id = run_.command_id;
  if (!run_.outcome.has_value()) {
    Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, run_.first_good, "",
              id,
              absl::StrCat("the events of command ", id, " at position",
                           run_.first_good == run_.last_good ? " " : "s ",
                           Range(run_.first_good, run_.last_good),
                           " have no stored outcome"));
    return;
  }
  const v1::CommandResult& result = run_.outcome->result();
  const bool matches = run_.tainted
                           ? result.first_position() <= run_.first_good &&
                                 run_.last_good <= result.last_position()
                           : result.first_position() == run_.first &&
                                 result.last_position() == run_.last;
  if (!matches) {
    Violation(
        kCheckOutcomes, absl::StatusCode::kDataLoss, run_.first_good, "", id,
        absl::StrCat("the stored outcome of command ", id, " names positions ",
                     Range(result.first_position(), result.last_position()),
                     " but its events are at positions ",
                     Range(run_.first_good, run_.last_good)));
  }
}

}  // namespace storeledger::audit_internal
