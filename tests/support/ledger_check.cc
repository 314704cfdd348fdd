#include "tests/support/ledger_check.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "core/streams.h"
#include "google/protobuf/util/message_differencer.h"
#include "json/json.h"
#include "replay/audit.h"
#include "replay/projection_store.h"
#include "replay/store_view.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"

namespace storeledger::testing {
namespace {

constexpr size_t kShownBytesMax = 2000;

std::string Shown(const google::protobuf::Message& message) {
  std::string json = ToJson(message);
  if (json.size() > kShownBytesMax) {
    json.resize(kShownBytesMax);
    json += "...";
  }
  return json;
}

// One command's events as the scan found them.
struct Run {
  uint64_t first = 0;
  uint64_t last = 0;
  std::set<std::string> streams;
  bool rejected_record = false;  // holds a CommandRejected
  std::vector<std::pair<std::string, std::string>> upgrades;  // source, target
  std::set<std::string> opened_upgraded;  // targets opened by an upgrade
};

absl::Status CheckRun(const EventLog& log, const std::string& command_id,
                      const Run& run) {
  ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> outcome,
                   log.GetOutcome(command_id));
  if (!outcome.has_value()) {
    return absl::DataLossError(absl::StrCat(
        "command ", command_id, " has events at positions ", run.first, "..",
        run.last, " but no stored outcome: it is half there"));
  }
  const v1::CommandResult& result = outcome->result();
  if (result.first_position() != run.first ||
      result.last_position() != run.last) {
    return absl::DataLossError(
        absl::StrCat("command ", command_id, " has events at positions ",
                     run.first, "..", run.last, " but its outcome names ",
                     result.first_position(), "..", result.last_position()));
  }
  if (result.status() == v1::REJECTED) {
    if (run.first != run.last || !run.rejected_record ||
        run.streams != std::set<std::string>{std::string(kRejectionsStream)}) {
      return absl::DataLossError(absl::StrCat(
          "rejected command ", command_id,
          " is not exactly one CommandRejected in stream rejections"));
    }
  } else if (result.status() == v1::ACCEPTED) {
    if (run.rejected_record) {
      return absl::DataLossError(absl::StrCat("accepted command ", command_id,
                                              " has a CommandRejected event"));
    }
  } else {
    return absl::DataLossError(
        absl::StrCat("command ", command_id, " has events but its outcome is ",
                     v1::OutcomeStatus_Name(result.status())));
  }
  for (const auto& [source, target] : run.upgrades) {
    if (run.streams.count(StoreStream(source)) == 0 ||
        run.streams.count(StoreStream(target)) == 0 ||
        run.opened_upgraded.count(target) == 0) {
      return absl::DataLossError(
          absl::StrCat("upgrade ", command_id, " of ", source, " into ", target,
                       " is not in both streams (streams: ",
                       absl::StrJoin(run.streams, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AllStoreIds(const EventLog& log) {
  ProjectionReader reader(&log);
  std::vector<std::string> ids;
  for (v1::StoreKind kind :
       {v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE}) {
    ASSIGN_OR_RETURN(std::vector<std::string> some, reader.StoreIds(kind));
    ids.insert(ids.end(), some.begin(), some.end());
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

// The store folded from the first event of its stream, without snapshots.
absl::StatusOr<v1::StoreState> FoldFromScratch(const EventLog& log,
                                               const std::string& store_id,
                                               const RecoveryCheckOptions& o) {
  StateOverlay state(&EmptyState());
  absl::Status evolved;
  RETURN_IF_ERROR(log.ScanStream(StoreStream(store_id), 0,
                                 [&](const v1::Envelope& envelope) {
                                   evolved = EvolveEnvelope(envelope, &state);
                                   return evolved.ok();
                                 }));
  RETURN_IF_ERROR(evolved);
  return BuildStoreState(state, store_id, o.now, o.policy);
}

}  // namespace

absl::Status Acknowledge(const v1::CommandResult& result,
                         AcknowledgedResults* acknowledged) {
  if (result.status() != v1::ACCEPTED && result.status() != v1::REJECTED) {
    return absl::OkStatus();
  }
  v1::CommandResult kept = result;
  kept.clear_line();
  kept.clear_replayed();
  auto [it, inserted] = acknowledged->emplace(result.command_id(), kept);
  if (inserted) return absl::OkStatus();
  const v1::CommandResult& first = it->second;
  if (first.status() != kept.status() ||
      first.first_position() != kept.first_position() ||
      first.last_position() != kept.last_position()) {
    return absl::FailedPreconditionError(
        absl::StrCat("command ", result.command_id(), " was acknowledged as ",
                     Shown(first), " and later as ", Shown(kept)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RecoveryCheckStats> CheckRecoveredLog(
    const EventLog& log, const AcknowledgedResults& acknowledged,
    const RecoveryCheckOptions& options) {
  RecoveryCheckStats stats;
  const Head head = log.head();

  // 1. The chain, and each command's run of events.
  std::map<std::string, std::pair<uint64_t, uint64_t>> runs;
  std::string current;
  Run run;
  absl::Status run_status;
  auto finish = [&]() -> absl::Status {
    if (current.empty()) return absl::OkStatus();
    if (!runs.emplace(current, std::make_pair(run.first, run.last)).second) {
      return absl::DataLossError(absl::StrCat(
          "command ", current, " has events in two separate runs (",
          runs[current].first, "..", runs[current].second, " and ", run.first,
          "..", run.last, ")"));
    }
    ++stats.commands;
    stats.upgrades += run.upgrades.size();
    return CheckRun(log, current, run);
  };
  uint64_t last_position = 0;
  RETURN_IF_ERROR(
      log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
        last_position = envelope.position();
        if (envelope.command_id() != current) {
          run_status = finish();
          if (!run_status.ok()) return false;
          current = envelope.command_id();
          run = Run{envelope.position(), envelope.position()};
        }
        run.last = envelope.position();
        run.streams.insert(envelope.stream_id());
        const v1::Event& event = envelope.payload();
        if (event.has_command_rejected()) run.rejected_record = true;
        if (event.has_store_upgraded()) {
          run.upgrades.emplace_back(event.store_upgraded().store_id(),
                                    event.store_upgraded().target_store_id());
        }
        if (event.has_store_opened() &&
            !event.store_opened().upgraded_from().empty()) {
          run.opened_upgraded.insert(event.store_opened().store_id());
        }
        return true;
      }));
  RETURN_IF_ERROR(run_status);
  RETURN_IF_ERROR(finish());
  if (last_position != head.position) {
    return absl::DataLossError(absl::StrCat("the scan ended at position ",
                                            last_position, ", the head is ",
                                            head.position));
  }
  stats.events = head.position;

  // 2. Every stored outcome with positions has exactly its run.
  {
    std::unique_ptr<rocksdb::Iterator> it(
        log.db()->NewIterator(rocksdb::ReadOptions(), log.commands_cf()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const std::string id = it->key().ToString();
      v1::StoredOutcome outcome;
      if (!outcome.ParseFromArray(it->value().data(),
                                  static_cast<int>(it->value().size()))) {
        return absl::DataLossError(
            absl::StrCat("outcome of ", absl::CEscape(id), " does not parse"));
      }
      const v1::CommandResult& result = outcome.result();
      if (result.last_position() == 0) continue;  // an outcome-only append
      auto found = runs.find(id);
      if (found == runs.end() ||
          found->second !=
              std::make_pair(result.first_position(), result.last_position())) {
        return absl::DataLossError(absl::StrCat(
            "command ", absl::CEscape(id), " has an outcome naming positions ",
            result.first_position(), "..", result.last_position(),
            " but not those events: it is half there"));
      }
    }
    if (!it->status().ok()) {
      return absl::DataLossError(
          absl::StrCat("scan outcomes: ", it->status().ToString()));
    }
  }

  // 3. Every promise kept.
  for (const auto& [id, promised] : acknowledged) {
    ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> outcome,
                     log.GetOutcome(id));
    if (!outcome.has_value()) {
      return absl::DataLossError(
          absl::StrCat("acknowledged command ", id, " (", Shown(promised),
                       ") has no stored outcome: it was lost"));
    }
    const v1::CommandResult& stored = outcome->result();
    if (stored.status() != promised.status() ||
        stored.first_position() != promised.first_position() ||
        stored.last_position() != promised.last_position()) {
      return absl::DataLossError(
          absl::StrCat("acknowledged command ", id, " was ", Shown(promised),
                       ", the ledger now says ", Shown(stored)));
    }
    ++stats.acknowledged;
  }

  // 4. The independent audit.
  if (options.audit) {
    ASSIGN_OR_RETURN(v1::AuditReport report, Audit(log));
    if (!report.ok()) {
      return absl::DataLossError(absl::StrCat("audit failed: ", Shown(report)));
    }
  }

  // 5. Projections equal folds.
  if (options.fold_stores_max > 0) {
    ASSIGN_OR_RETURN(std::vector<std::string> store_ids, AllStoreIds(log));
    std::mt19937_64 rng(options.seed);
    std::shuffle(store_ids.begin(), store_ids.end(), rng);
    if (store_ids.size() > options.fold_stores_max) {
      store_ids.resize(options.fold_stores_max);
    }
    ProjectionReader reader(&log);
    for (const std::string& id : store_ids) {
      ASSIGN_OR_RETURN(
          v1::StoreState live,
          BuildStoreState(reader, id, options.now, options.policy));
      ASSIGN_OR_RETURN(v1::StoreState scratch,
                       FoldFromScratch(log, id, options));
      ASSIGN_OR_RETURN(
          v1::StoreState folded,
          FoldStoreState(log, id, AsOf{}, options.now, options.policy));
      if (!google::protobuf::util::MessageDifferencer::Equals(live, scratch) ||
          !google::protobuf::util::MessageDifferencer::Equals(live, folded)) {
        return absl::DataLossError(absl::StrCat(
            "store ", id, ": the projection ", Shown(live),
            " differs from the fold ", Shown(scratch), " / ", Shown(folded)));
      }
      ++stats.stores_folded;
    }
  }
  return stats;
}

}  // namespace storeledger::testing
