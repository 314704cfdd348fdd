#include "ledger/ledger.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/limits.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

class WallClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

// The command id is the idempotency key, so a command whose id is not a valid
// id (R0: 1..kIdBytesMax bytes of printable ASCII, no spaces) cannot be
// recorded under it: it is INVALID, like a missing id.
std::optional<std::string> CommandIdProblem(absl::string_view id) {
  if (id.empty()) return "commandId is missing";
  if (id.size() > kIdBytesMax) {
    return absl::StrCat("commandId is ", id.size(), " bytes; the limit is ",
                        kIdBytesMax);
  }
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return "commandId must be printable ASCII without spaces";
    }
  }
  return std::nullopt;
}

v1::CommandResult ResultOf(const v1::Command& command) {
  v1::CommandResult result;
  result.set_command_id(command.command_id());
  return result;
}

}  // namespace

const Clock& SystemClock() {
  static const WallClock* clock = new WallClock();
  return *clock;
}

std::string CommandFingerprint(const v1::Command& command) {
  return Sha256(SerializeDeterministic(command));
}

v1::CommandResult InvalidResult(absl::string_view command_id,
                                absl::string_view message) {
  v1::CommandResult result;
  result.set_command_id(std::string(command_id));
  result.set_status(v1::INVALID);
  result.set_message(std::string(message));
  return result;
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(const std::string& dir,
                                                     LedgerOptions options) {
  RETURN_IF_ERROR(ValidatePolicy(options.policy));
  if (options.clock == nullptr) options.clock = &SystemClock();
  EventLogOptions log_options;
  log_options.sync = options.sync;
  log_options.read_only = options.read_only;
  log_options.create_if_missing = !options.read_only;
  ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log,
                   EventLog::Open(dir, log_options));
  return std::unique_ptr<Ledger>(new Ledger(std::move(log), std::move(options)));
}

Ledger::Ledger(std::unique_ptr<EventLog> log, LedgerOptions options)
    : log_(std::move(log)), options_(std::move(options)) {}

absl::StatusOr<v1::CommandResult> Ledger::Execute(const v1::Command& command) {
  if (std::optional<std::string> problem =
          CommandIdProblem(command.command_id())) {
    return InvalidResult(command.command_id(), *problem);
  }
  if (!command.has_occurred_at()) {
    return InvalidResult(command.command_id(), "occurredAt is missing");
  }
  if (command.body_case() == v1::Command::BODY_NOT_SET) {
    return InvalidResult(command.command_id(), "command body is missing");
  }
  const std::string fingerprint = CommandFingerprint(command);

  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> previous,
                   log_->GetOutcome(command.command_id()));
  if (previous.has_value()) {
    if (previous->fingerprint() == fingerprint) {
      v1::CommandResult result = previous->result();
      result.set_replayed(true);
      return result;
    }
    // The id already has an outcome; recording this attempt under it would
    // replace that outcome, so nothing is written.
    v1::CommandResult result = ResultOf(command);
    result.set_status(v1::REJECTED);
    result.set_rule("R0");
    result.set_code(v1::IDEMPOTENCY_CONFLICT);
    result.set_message(absl::StrCat(
        "commandId ", command.command_id(),
        " was already used for a different command (first outcome: ",
        v1::OutcomeStatus_Name(previous->result().status()),
        "); a retry must resend the identical command"));
    return result;
  }

  ProjectionReader reader(log_.get());
  ASSIGN_OR_RETURN(Decision decision,
                   Decide(command, reader, options_.policy));

  const absl::Time now = options_.clock->Now();
  AppendRequest request;
  v1::CommandResult result = ResultOf(command);
  auto add_event = [&](const std::string& stream_id, int64_t expected_version,
                       const v1::Event& event, size_t index) {
    NewEvent& out = request.events.emplace_back();
    out.expected_version = expected_version;
    v1::Envelope& envelope = out.envelope;
    envelope.set_stream_id(stream_id);
    envelope.set_event_id(absl::StrCat(command.command_id(), "#", index));
    envelope.set_command_id(command.command_id());
    envelope.set_event_type(EventTypeName(event));
    *envelope.mutable_occurred_at() = command.occurred_at();
    *envelope.mutable_recorded_at() = ToProto(now);
    envelope.set_policy_version(options_.policy.version());
    *envelope.mutable_payload() = event;
  };

  if (decision.accepted) {
    if (decision.events.size() > kEventsPerCommandMax) {
      return absl::InternalError(absl::StrCat(
          "decide produced ", decision.events.size(),
          " events, over the limit of ", kEventsPerCommandMax));
    }
    StateOverlay overlay(&reader);
    const absl::Time occurred_at = ToTime(command.occurred_at());
    for (size_t i = 0; i < decision.events.size(); ++i) {
      const DecidedEvent& decided = decision.events[i];
      ASSIGN_OR_RETURN(std::optional<StreamHead> head,
                       overlay.Head(decided.stream_id));
      const uint64_t version = head.has_value() ? head->version() : 0;
      add_event(decided.stream_id, static_cast<int64_t>(version), decided.event,
                i);
      RETURN_IF_ERROR(Evolve(decided.stream_id, version + 1, occurred_at,
                             decided.event, &overlay));
    }
    request.projection_puts = ProjectionPuts(overlay);
    // Due store snapshots ride in the same batch (replay/snapshots.h). mu_
    // serialises appends, so the events will get the positions after head.
    RETURN_IF_ERROR(AddDueSnapshots(*log_, overlay, request.events,
                                    log_->head().position + 1,
                                    options_.snapshot_every_events,
                                    &request.projection_puts));
    result.set_status(v1::ACCEPTED);
    result.set_message(decision.message);
    *result.mutable_synced_product_ids() = {decision.synced_product_ids.begin(),
                                            decision.synced_product_ids.end()};
    *result.mutable_skipped() = {decision.skipped.begin(),
                                 decision.skipped.end()};
  } else {
    v1::Event event;
    v1::CommandRejected* rejected = event.mutable_command_rejected();
    *rejected->mutable_command() = command;
    rejected->set_rule(decision.rule);
    rejected->set_code(decision.code);
    rejected->set_message(decision.message);
    *rejected->mutable_store_ids() = {decision.store_ids.begin(),
                                      decision.store_ids.end()};
    // Attempts are recorded in arrival order; business time may go backwards
    // in this stream (a refused command is often refused for being late).
    add_event(std::string(kRejectionsStream), kExpectAny, event, 0);
    result.set_status(v1::REJECTED);
    result.set_rule(decision.rule);
    result.set_code(decision.code);
    result.set_message(decision.message);
  }

  v1::StoredOutcome& outcome = request.outcome.emplace();
  outcome.set_fingerprint(fingerprint);
  *outcome.mutable_result() = result;
  ASSIGN_OR_RETURN(AppendResult appended, log_->Append(std::move(request)));
  result.set_first_position(appended.first_position);
  result.set_last_position(appended.last_position);
  return result;
}

absl::StatusOr<v1::StoreState> Ledger::State(absl::string_view store_id,
                                             const AsOf& as_of) const {
  if (as_of.empty()) {
    ProjectionReader reader(log_.get());
    return BuildStoreState(reader, store_id, options_.clock->Now(),
                           options_.policy);
  }
  return FoldStoreState(*log_, store_id, as_of, options_.clock->Now(),
                        options_.policy);
}

}  // namespace storeledger
