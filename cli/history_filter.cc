#include "cli/history_filter.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/policy.h"

namespace storeledger {

std::string OrderIdOf(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kOrderPlaced: return event.order_placed().order_id();
    case v1::Event::kOrderCancelled: return event.order_cancelled().order_id();
    case v1::Event::kOrderPaid: return event.order_paid().order_id();
    case v1::Event::kOrderShipped: return event.order_shipped().order_id();
    case v1::Event::kOrderSettled: return event.order_settled().order_id();
    case v1::Event::kOrderRefunded: return event.order_refunded().order_id();
    case v1::Event::kCommandRejected: {
      const v1::Command& c = event.command_rejected().command();
      switch (c.body_case()) {
        case v1::Command::kPlaceOrder: return c.place_order().order_id();
        case v1::Command::kCancelOrder: return c.cancel_order().order_id();
        case v1::Command::kPayOrder: return c.pay_order().order_id();
        case v1::Command::kShipOrder: return c.ship_order().order_id();
        case v1::Command::kSettleOrder: return c.settle_order().order_id();
        case v1::Command::kRefundOrder: return c.refund_order().order_id();
        default: return "";
      }
    }
    default: return "";
  }
}

namespace {

// --product: does the event (or the refused command) name the product? An
// order names the products of its lines.
bool NamesProduct(const v1::Event& event, absl::string_view product_id) {
  auto in_lines = [&](const auto& lines) {
    for (const v1::OrderLine& line : lines) {
      if (line.product_id() == product_id) return true;
    }
    return false;
  };
  switch (event.body_case()) {
    case v1::Event::kProductAdded:
      return event.product_added().product_id() == product_id;
    case v1::Event::kProductListed:
      return event.product_listed().product_id() == product_id;
    case v1::Event::kProductDelisted:
      return event.product_delisted().product_id() == product_id;
    case v1::Event::kProductDeleted:
      return event.product_deleted().product_id() == product_id;
    case v1::Event::kOrderPlaced:
      return in_lines(event.order_placed().lines());
    case v1::Event::kProductsSynced: {
      const v1::ProductsSynced& e = event.products_synced();
      for (const std::string& id : e.copied_product_ids()) {
        if (id == product_id) return true;
      }
      for (const v1::SyncSkip& skip : e.skipped()) {
        if (skip.product_id() == product_id) return true;
      }
      return false;
    }
    case v1::Event::kCommandRejected: {
      const v1::Command& c = event.command_rejected().command();
      switch (c.body_case()) {
        case v1::Command::kAddProduct:
          return c.add_product().product_id() == product_id;
        case v1::Command::kListProduct:
          return c.list_product().product_id() == product_id;
        case v1::Command::kDelistProduct:
          return c.delist_product().product_id() == product_id;
        case v1::Command::kDeleteProduct:
          return c.delete_product().product_id() == product_id;
        case v1::Command::kPlaceOrder:
          return in_lines(c.place_order().lines());
        default: return false;
      }
    }
    default: return false;
  }
}

// --withdrawal: the withdrawal an event (or refused command) is about.
std::string WithdrawalIdOf(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kWithdrawalRequested:
      return event.withdrawal_requested().withdrawal_id();
    case v1::Event::kWithdrawalCompleted:
      return event.withdrawal_completed().withdrawal_id();
    case v1::Event::kWithdrawalFailed:
      return event.withdrawal_failed().withdrawal_id();
    case v1::Event::kCommandRejected: {
      const v1::Command& c = event.command_rejected().command();
      switch (c.body_case()) {
        case v1::Command::kRequestWithdrawal:
          return c.request_withdrawal().withdrawal_id();
        case v1::Command::kCompleteWithdrawal:
          return c.complete_withdrawal().withdrawal_id();
        case v1::Command::kFailWithdrawal:
          return c.fail_withdrawal().withdrawal_id();
        default: return "";
      }
    }
    default: return "";
  }
}

// --type: comma-separated event type names ("OrderPaid,OrderRefunded"),
// checked against the Event oneof so that a typo is an error, not silence.
absl::StatusOr<std::set<std::string>> ParseEventTypes(absl::string_view list) {
  std::set<std::string> known;
  const google::protobuf::Descriptor* event = v1::Event::descriptor();
  for (int i = 0; i < event->field_count(); ++i) {
    known.insert(event->field(i)->message_type()->name());
  }
  std::set<std::string> types;
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (known.count(std::string(name)) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--type: unknown event type '", name, "'; one of: ",
          absl::StrJoin(known, ", ")));
    }
    types.insert(std::string(name));
  }
  if (types.empty()) {
    return absl::InvalidArgumentError("--type needs at least one event type");
  }
  return types;
}

}  // namespace

absl::StatusOr<HistoryFilter> HistoryFilter::FromFlags(const Flags& flags) {
  HistoryFilter filter;
  filter.order_id = flags.Get("order");
  filter.product_id = flags.Get("product");
  filter.withdrawal_id = flags.Get("withdrawal");
  if (std::optional<std::string> type_list = flags.Get("type")) {
    absl::StatusOr<std::set<std::string>> types = ParseEventTypes(*type_list);
    if (!types.ok()) return types.status();
    filter.event_types = *std::move(types);
  }
  absl::StatusOr<std::optional<absl::Time>> from_time = flags.GetTime("from");
  if (!from_time.ok()) return from_time.status();
  filter.from_time = *from_time;
  absl::StatusOr<std::optional<absl::Time>> to_time = flags.GetTime("to");
  if (!to_time.ok()) return to_time.status();
  filter.to_time = *to_time;
  if (filter.from_time.has_value() && filter.to_time.has_value() &&
      *filter.to_time < *filter.from_time) {
    return absl::InvalidArgumentError("--to is before --from");
  }
  absl::StatusOr<std::optional<uint64_t>> after =
      flags.GetUint("from-position");
  if (!after.ok()) return after.status();
  filter.after_position = *after;
  return filter;
}

bool HistoryFilter::Selects(const v1::Envelope& envelope) const {
  if (envelope.position() <= after_position.value_or(0)) return false;
  const absl::Time at = ToTime(envelope.occurred_at());
  if (from_time.has_value() && at < *from_time) return false;
  if (to_time.has_value() && at > *to_time) return false;
  const v1::Event& event = envelope.payload();
  if (order_id && OrderIdOf(event) != *order_id) return false;
  if (product_id && !NamesProduct(event, *product_id)) return false;
  if (withdrawal_id && WithdrawalIdOf(event) != *withdrawal_id) return false;
  if (event.has_command_rejected()) return true;  // --type: facts only
  return !event_types.has_value() ||
         event_types->count(envelope.event_type()) > 0;
}

void SayHistoryFilteredOut(const CliContext& ctx, absl::string_view stores) {
  ctx.SayNothingMatched(absl::StrCat(
      "store ", stores, " has a history, but the filters select none of it"));
}

absl::Status HistoryNotFound(absl::string_view store_id,
                             bool include_rejections) {
  return absl::NotFoundError(absl::StrCat(
      "store ", store_id, " has no events",
      include_rejections ? " and no refused commands" : "", " in this ledger"));
}

}  // namespace storeledger
