#include "ledger/ledger.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/invariants.h"
#include "core/limits.h"
#include "core/streams.h"
#include "ledger/command_shape.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

class WallClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

using ledger_internal::ResultOf;

const Clock& SystemClock() {
  static const WallClock* clock = new WallClock();
  return *clock;
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::Open(const std::string& dir,
                                                     LedgerOptions options) {
  RETURN_IF_ERROR(ValidatePolicy(options.policy));
  if (options.clock == nullptr) options.clock = &SystemClock();
  EventLogOptions log_options;
  log_options.sync = options.sync;
  log_options.read_only = options.read_only;
  log_options.create_if_missing = !options.read_only;
  log_options.env = options.env;
  log_options.write_batch_tap = options.write_batch_tap;
  log_options.memtables_bytes_max = options.memtables_bytes_max;
  log_options.before_write = options.before_write;
  log_options.open_stats = options.open_stats;
  log_options.write_behind = options.write_behind;
  log_options.write_behind_events_max = options.write_behind_events_max;
  log_options.derive_projections = DeriveProjections;
  ASSIGN_OR_RETURN(std::unique_ptr<EventLog> log,
                   EventLog::Open(dir, log_options));
  return std::unique_ptr<Ledger>(
      new Ledger(std::move(log), std::move(options)));
}

Ledger::Ledger(std::unique_ptr<EventLog> log, LedgerOptions options)
    : log_(std::move(log)), options_(std::move(options)) {
  GroupCommitOptions group_options;
  group_options.sync = options_.sync;
  group_options.state_cache_entries = options_.state_cache_entries;
  group_options.observer = options_.observer;
  group_commit_ = std::make_unique<GroupCommit>(
      log_.get(), group_options,
      [this](const v1::Command& command, const std::string& fingerprint,
             StateOverlay& state, uint64_t first_position,
             AppendRequest* request, v1::CommandResult* result,
             bool* rejected) {
        return DecideOne(command, fingerprint, state, first_position, request,
                         result, rejected);
      });
}

Ledger::~Ledger() = default;

absl::StatusOr<v1::CommandResult> Ledger::Execute(const v1::Command& command) {
  return group_commit_->Execute(command);
}

std::vector<absl::StatusOr<v1::CommandResult>> Ledger::ExecuteBatch(
    std::vector<v1::Command> commands) {
  return group_commit_->ExecuteBatch(std::move(commands));
}

GroupCommitStats Ledger::stats() const { return group_commit_->stats(); }

// Decide, with the store directory's answer for a store the command
// creates (ledger/store_directory.h, steps 1-3).
absl::StatusOr<Decision> Ledger::DecidePlaced(const v1::Command& command,
                                              const StateReader& state) {
  StoreDirectory* const directory = options_.directory;
  const std::string* const created = CreatedStoreId(command);
  if (directory == nullptr || created == nullptr || created->empty()) {
    return Decide(command, state, options_.policy);
  }
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> here, state.Store(*created));
  if (here != nullptr) return Decide(command, state, options_.policy);
  ASSIGN_OR_RETURN(const bool elsewhere, directory->PlacedElsewhere(*created));
  if (!elsewhere) {
    ASSIGN_OR_RETURN(Decision decision,
                     Decide(command, state, options_.policy));
    if (!decision.accepted) return decision;
    ASSIGN_OR_RETURN(const bool placed, directory->Place(*created));
    if (placed) return decision;
  }
  const PlacedElsewhereState placed_elsewhere(&state, *created);
  return Decide(command, placed_elsewhere, options_.policy);
}

absl::Status Ledger::DecideOne(const v1::Command& command,
                               const std::string& fingerprint,
                               StateOverlay& state, uint64_t first_position,
                               AppendRequest* request,
                               v1::CommandResult* result, bool* rejected) {
  ASSIGN_OR_RETURN(Decision decision, DecidePlaced(command, state));

  const absl::Time now = options_.clock->RecordedAt(command);
  *result = ResultOf(command);
  auto add_event = [&](const std::string& stream_id, int64_t expected_version,
                       v1::Event event, size_t index) {
    NewEvent& out = request->events.emplace_back();
    out.expected_version = expected_version;
    v1::Envelope& envelope = out.envelope;
    envelope.set_stream_id(stream_id);
    envelope.set_event_id(absl::StrCat(command.command_id(), "#", index));
    envelope.set_command_id(command.command_id());
    envelope.set_event_type(EventTypeName(event));
    *envelope.mutable_occurred_at() = command.occurred_at();
    *envelope.mutable_recorded_at() = ToProto(now);
    envelope.set_policy_version(options_.policy.version());
    *envelope.mutable_payload() = std::move(event);
  };

  if (decision.accepted) {
    if (decision.events.size() > kEventsPerCommandMax) {
      return absl::InternalError(
          absl::StrCat("decide produced ", decision.events.size(),
                       " events, over the limit of ", kEventsPerCommandMax));
    }
    // The command's own changes, over the group's: folded into the group's
    // only when all of them evolved.
    StateOverlay changes(&state);
    const absl::Time occurred_at = ToTime(command.occurred_at());
    for (size_t i = 0; i < decision.events.size(); ++i) {
      DecidedEvent& decided = decision.events[i];
      ASSIGN_OR_RETURN(RecordRef<StreamHead> head,
                       changes.Head(decided.stream_id));
      const uint64_t version = head != nullptr ? head->version() : 0;
      head.reset();  // so that Evolve's new head reuses this one in place
      RETURN_IF_ERROR(Evolve(decided.stream_id, version + 1, occurred_at,
                             decided.event, &changes));
      RETURN_IF_ERROR(CheckEvolvedInvariants(decided.event, changes));
      add_event(decided.stream_id, static_cast<int64_t>(version),
                std::move(decided.event), i);
    }
    // Due store snapshots ride in the same batch (replay/snapshots.h). Only
    // the leader appends, so the events get the positions from
    // first_position on.
    RETURN_IF_ERROR(AddDueSnapshots(
        *log_, changes, request->events, first_position,
        options_.snapshot_every_events, &request->projection_puts));
    state.MergeFrom(std::move(changes));
    result->set_status(v1::ACCEPTED);
    result->set_message(decision.message);
    *result->mutable_synced_product_ids() = {
        decision.synced_product_ids.begin(), decision.synced_product_ids.end()};
    *result->mutable_skipped() = {decision.skipped.begin(),
                                  decision.skipped.end()};
    *rejected = false;
  } else {
    v1::Event event;
    v1::CommandRejected* refused = event.mutable_command_rejected();
    *refused->mutable_command() = command;
    refused->set_rule(decision.rule);
    refused->set_code(decision.code);
    refused->set_message(decision.message);
    *refused->mutable_store_ids() = {decision.store_ids.begin(),
                                     decision.store_ids.end()};
    // Attempts are recorded in arrival order; business time may go backwards
    // in this stream (a refused command is often refused for being late).
    add_event(std::string(kRejectionsStream), kExpectAny, std::move(event), 0);
    result->set_status(v1::REJECTED);
    result->set_rule(decision.rule);
    result->set_code(decision.code);
    result->set_message(decision.message);
    *rejected = true;
  }

  v1::StoredOutcome& outcome = request->outcome.emplace();
  outcome.set_fingerprint(fingerprint);
  *outcome.mutable_result() = *result;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AppendResult>> Ledger::AppendReplicated(
    std::vector<AppendRequest> requests) {
  return group_commit_->AppendReplicated(std::move(requests));
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
