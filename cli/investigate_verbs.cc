// The investigation verbs: rebuild [--shadow], explain --command-id, diff.
// (state --as-of/--position, history and tail are in read_verbs.cc.)
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/cli.h"
#include "core/decide.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "google/protobuf/text_format.h"
#include "ledger/json.h"
#include "replay/rebuild.h"
#include "replay/store_view.h"

namespace storeledger {
namespace {

constexpr absl::string_view kStoreStreamPrefix = "store-";

// ------------------------------------------------------------------ explain

// The stores a recorded command touched: the store streams it appended to,
// or, for a refusal, the stores it named. In first-seen order.
std::vector<std::string> TouchedStores(const std::vector<v1::Envelope>& events) {
  std::vector<std::string> ids;
  auto add = [&ids](const std::string& id) {
    if (id.empty()) return;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (const v1::Envelope& envelope : events) {
    if (envelope.payload().has_command_rejected()) {
      for (const std::string& id : envelope.payload().command_rejected().store_ids()) {
        add(id);
      }
    } else if (absl::StartsWith(envelope.stream_id(), kStoreStreamPrefix)) {
      add(envelope.stream_id().substr(kStoreStreamPrefix.size()));
    }
  }
  return ids;
}

absl::StatusOr<v1::Explanation> Explain(const Ledger& ledger,
                                        absl::string_view command_id) {
  const EventLog& log = ledger.log();
  ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> stored,
                   log.GetOutcome(command_id));
  if (!stored.has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "no outcome is recorded for command id ", command_id,
        " (INVALID lines and idempotency conflicts are not recorded)"));
  }
  v1::Explanation out;
  out.set_command_id(std::string(command_id));
  *out.mutable_outcome() = stored->result();
  const uint64_t first = stored->result().first_position();
  const uint64_t last = stored->result().last_position();
  if (first == 0) return out;  // accepted with nothing to append
  std::vector<v1::Envelope> events;
  for (uint64_t position = first; position <= last; ++position) {
    ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(position));
    if (envelope.command_id() != command_id) {
      return absl::DataLossError(absl::StrCat(
          "outcome of ", command_id, " names position ", position,
          ", which holds an event of command ", envelope.command_id()));
    }
    events.push_back(envelope);
    *out.add_events() = std::move(envelope);
  }
  // The state the rules judged: everything known before the command's first
  // position, with R6 cutoffs taken at the command's business time.
  out.set_before_position(first - 1);
  const absl::Time judged_at = ToTime(events.front().occurred_at());
  AsOf as_of;
  as_of.position = first - 1;
  for (const std::string& store_id : TouchedStores(events)) {
    absl::StatusOr<v1::StoreState> state =
        FoldStoreState(log, store_id, as_of, judged_at, ledger.policy());
    if (absl::IsNotFound(state.status())) {
      out.add_stores_not_yet_open(store_id);
      continue;
    }
    RETURN_IF_ERROR(state.status());
    *out.add_stores_before() = *std::move(state);
  }
  return out;
}

// --------------------------------------------------------------------- diff

// Text of one field of a message (repeated fields joined), for comparing
// views field by field without naming every field twice.
std::string FieldText(const google::protobuf::Message& message,
                      const google::protobuf::FieldDescriptor* field) {
  std::string out;
  if (field->is_repeated()) {
    const int size = message.GetReflection()->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      std::string one;
      google::protobuf::TextFormat::PrintFieldValueToString(message, field, i,
                                                            &one);
      absl::StrAppend(&out, one, ";");
    }
    return out;
  }
  google::protobuf::TextFormat::PrintFieldValueToString(message, field, -1, &out);
  return out;
}

// lowerCamel names of the fields whose values differ.
std::vector<std::string> ChangedFields(const google::protobuf::Message& before,
                                       const google::protobuf::Message& after) {
  std::vector<std::string> fields;
  const google::protobuf::Descriptor* descriptor = before.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (FieldText(before, field) != FieldText(after, field)) {
      fields.push_back(field->json_name());
    }
  }
  return fields;
}

// Adds a Change for every id in `before` or `after` that differs. `Change`
// is ProductChange, OrderChange or WithdrawalChange.
template <typename Change, typename View, typename Id, typename Add,
          typename Removed>
void DiffById(const google::protobuf::RepeatedPtrField<View>& before,
              const google::protobuf::RepeatedPtrField<View>& after, Id id,
              Add add, Removed removed) {
  std::map<std::string, const View*> old_by_id;
  for (const View& view : before) old_by_id[id(view)] = &view;
  for (const View& view : after) {
    auto it = old_by_id.find(id(view));
    Change change;
    if (it == old_by_id.end()) {
      change.set_change(v1::ADDED);
    } else {
      std::vector<std::string> fields = ChangedFields(*it->second, view);
      if (fields.empty()) continue;
      change.set_change(removed(*it->second, view) ? v1::REMOVED : v1::CHANGED);
      *change.mutable_fields() = {fields.begin(), fields.end()};
      *change.mutable_before() = *it->second;
    }
    *change.mutable_after() = view;
    add(id(view), std::move(change));
  }
}

v1::Balances Delta(const v1::Balances& before, const v1::Balances& after) {
  v1::Balances delta;
  delta.set_pending_fen(after.pending_fen() - before.pending_fen());
  delta.set_available_fen(after.available_fen() - before.available_fen());
  delta.set_withdrawing_fen(after.withdrawing_fen() - before.withdrawing_fen());
  delta.set_paid_out_fen(after.paid_out_fen() - before.paid_out_fen());
  delta.set_deposit_fen(after.deposit_fen() - before.deposit_fen());
  return delta;
}

v1::StoreDiff Diff(const std::optional<v1::StoreState>& before_state,
                   const v1::StoreState& after) {
  const v1::StoreState before = before_state.value_or(v1::StoreState());
  v1::StoreDiff diff;
  diff.set_store_id(after.store_id());
  diff.set_from_version(before.version());
  diff.set_to_version(after.version());
  diff.set_store_existed_before(before_state.has_value());
  diff.set_status_before(before.status());
  diff.set_status_after(after.status());
  // Store-level fields: everything but the lists diffed below.
  v1::StoreState before_top = before, after_top = after;
  for (v1::StoreState* top : {&before_top, &after_top}) {
    top->clear_products();
    top->clear_orders();
    top->clear_withdrawals();
    top->clear_balances();
    top->clear_version();
    // Map order is not defined in reflection; compare maps as sorted maps.
    top->clear_deposit_fen_by_category();
  }
  std::vector<std::string> fields = ChangedFields(before_top, after_top);
  const std::map<std::string, int64_t> deposits_before(
      before.deposit_fen_by_category().begin(),
      before.deposit_fen_by_category().end());
  const std::map<std::string, int64_t> deposits_after(
      after.deposit_fen_by_category().begin(),
      after.deposit_fen_by_category().end());
  if (deposits_before != deposits_after) {
    fields.push_back("depositFenByCategory");
  }
  *diff.mutable_store_fields() = {fields.begin(), fields.end()};

  DiffById<v1::ProductChange>(
      before.products(), after.products(),
      [](const v1::ProductView& v) { return v.product_id(); },
      [&](const std::string& id, v1::ProductChange change) {
        change.set_product_id(id);
        *diff.add_products() = std::move(change);
      },
      [](const v1::ProductView& old_view, const v1::ProductView& new_view) {
        return new_view.status() == v1::DELETED &&
               old_view.status() != v1::DELETED;
      });
  DiffById<v1::OrderChange>(
      before.orders(), after.orders(),
      [](const v1::OrderView& v) { return v.order_id(); },
      [&](const std::string& id, v1::OrderChange change) {
        change.set_order_id(id);
        *diff.add_orders() = std::move(change);
      },
      [](const v1::OrderView&, const v1::OrderView&) { return false; });
  DiffById<v1::WithdrawalChange>(
      before.withdrawals(), after.withdrawals(),
      [](const v1::WithdrawalView& v) { return v.withdrawal_id(); },
      [&](const std::string& id, v1::WithdrawalChange change) {
        change.set_withdrawal_id(id);
        *diff.add_withdrawals() = std::move(change);
      },
      [](const v1::WithdrawalView&, const v1::WithdrawalView&) {
        return false;
      });
  v1::BalancesChange* balances = diff.mutable_balances();
  *balances->mutable_before() = before.balances();
  *balances->mutable_after() = after.balances();
  *balances->mutable_delta() = Delta(before.balances(), after.balances());
  return diff;
}

}  // namespace

int RebuildVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<std::optional<uint64_t>> flush_every =
      ctx.flags.GetUint("flush-every");
  if (!flush_every.ok()) return ctx.Fail(flush_every.status());
  if (flush_every->has_value() && **flush_every == 0) {
    return ctx.Fail(absl::InvalidArgumentError("--flush-every must be >= 1"));
  }
  // Rebuild writes (the shadow space, and the repairs): it takes the
  // database's lock, so no writer runs beside it.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(false);
  if (!ledger.ok()) return ctx.Fail(ledger.status());

  RebuildOptions options;
  options.shadow_only = ctx.flags.Has("shadow");
  options.flush_every_events = flush_every->value_or(kRebuildFlushEventsDefault);
  const bool progress = !ctx.flags.Has("no-progress") &&
                        ctx.err == &std::cerr && isatty(STDERR_FILENO);
  if (progress) {
    options.progress = [&ctx](uint64_t done, uint64_t total) {
      *ctx.err << absl::StrFormat("\rrebuild: %d/%d events (%.0f%%)", done,
                                  total,
                                  total == 0 ? 100.0 : 100.0 * done / total)
               << std::flush;
    };
  }
  options.on_difference = [&ctx](const v1::ProjectionDifference& difference) {
    *ctx.out << ToJson(difference) << "\n";
  };
  absl::StatusOr<v1::RebuildSummary> summary =
      Rebuild((*ledger)->mutable_log(), options);
  if (progress) *ctx.err << "\r\033[K" << std::flush;
  if (!summary.ok()) return ctx.Fail(summary.status());
  *ctx.out << ToJson(*summary) << "\n";
  if (options.shadow_only && summary->differences() > 0) {
    *ctx.err << "storeledger rebuild: " << summary->differences()
             << " projection keys differ from a rebuild from the log; run "
                "`storeledger rebuild` to repair them\n";
    return kExitCheckFailed;
  }
  return kExitOk;
}

int ExplainVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> command_id = ctx.flags.Get("command-id");
  if (!command_id || command_id->empty()) {
    return ctx.Fail(absl::InvalidArgumentError("--command-id is required"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::Explanation> explanation = Explain(**ledger, *command_id);
  if (!explanation.ok()) return ctx.Fail(explanation.status());
  *ctx.out << ToJson(*explanation) << "\n";
  return kExitOk;
}

int DiffVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  absl::StatusOr<std::optional<absl::Time>> at = ctx.flags.GetTime("at");
  if (!at.ok()) return ctx.Fail(at.status());
  absl::StatusOr<std::optional<uint64_t>> from_position =
      ctx.flags.GetUint("from-position");
  if (!from_position.ok()) return ctx.Fail(from_position.status());
  absl::StatusOr<std::optional<uint64_t>> to_position =
      ctx.flags.GetUint("to-position");
  if (!to_position.ok()) return ctx.Fail(to_position.status());
  // Two business times at one knowledge position, or two knowledge
  // positions at one business time.
  const bool by_position = at->has_value();
  if (by_position) {
    if (from->has_value() || to->has_value() || ctx.flags.Has("position") ||
        ctx.flags.Has("known-at") || !from_position->has_value() ||
        !to_position->has_value()) {
      return ctx.Fail(absl::InvalidArgumentError(
          "--at T takes --from-position N1 --to-position N2 (and no --from, "
          "--to, --position or --known-at)"));
    }
    if (**to_position < **from_position) {
      return ctx.Fail(
          absl::InvalidArgumentError("--to-position is before --from-position"));
    }
  } else {
    if (!from->has_value() || !to->has_value() ||
        from_position->has_value() || to_position->has_value()) {
      return ctx.Fail(absl::InvalidArgumentError(
          "give --from T1 --to T2 (business times), or --at T with "
          "--from-position N1 --to-position N2"));
    }
    if (**to < **from) {
      return ctx.Fail(absl::InvalidArgumentError("--to is before --from"));
    }
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const Ledger& l = **ledger;
  absl::StatusOr<std::optional<uint64_t>> position = ctx.KnowledgePosition(l);
  if (!position.ok()) return ctx.Fail(position.status());

  AsOf before_as_of{by_position ? *at : *from,
                    by_position ? *from_position : *position};
  AsOf after_as_of{by_position ? *at : *to,
                   by_position ? *to_position : *position};
  absl::StatusOr<v1::StoreState> before = l.State(*store, before_as_of);
  std::optional<v1::StoreState> before_state;
  if (before.ok()) {
    before_state = *std::move(before);
  } else if (!absl::IsNotFound(before.status())) {
    return ctx.Fail(before.status());
  }
  absl::StatusOr<v1::StoreState> after = l.State(*store, after_as_of);
  if (!after.ok()) return ctx.Fail(after.status());
  v1::StoreDiff diff = Diff(before_state, *after);
  *diff.mutable_from() = ToProto(*before_as_of.business_time);
  *diff.mutable_to() = ToProto(*after_as_of.business_time);
  diff.set_from_position(before_as_of.position.value_or(0));
  diff.set_to_position(after_as_of.position.value_or(0));
  *ctx.out << ToJson(diff) << "\n";
  return kExitOk;
}

}  // namespace storeledger
