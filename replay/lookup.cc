#include "replay/lookup.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/policy.h"
#include "core/streams.h"
#include "replay/finance.h"
#include "replay/projection_store.h"

namespace storeledger {

std::string OrderIdOf(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kOrderPlaced:
      return event.order_placed().order_id();
    case v1::Event::kOrderCancelled:
      return event.order_cancelled().order_id();
    case v1::Event::kOrderPaid:
      return event.order_paid().order_id();
    case v1::Event::kOrderShipped:
      return event.order_shipped().order_id();
    case v1::Event::kOrderSettled:
      return event.order_settled().order_id();
    case v1::Event::kOrderRefunded:
      return event.order_refunded().order_id();
    case v1::Event::kCommandRejected: {
      const v1::Command& c = event.command_rejected().command();
      switch (c.body_case()) {
        case v1::Command::kPlaceOrder:
          return c.place_order().order_id();
        case v1::Command::kCancelOrder:
          return c.cancel_order().order_id();
        case v1::Command::kPayOrder:
          return c.pay_order().order_id();
        case v1::Command::kShipOrder:
          return c.ship_order().order_id();
        case v1::Command::kSettleOrder:
          return c.settle_order().order_id();
        case v1::Command::kRefundOrder:
          return c.refund_order().order_id();
        default:
          return "";
      }
    }
    default:
      return "";
  }
}

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
        default:
          return false;
      }
    }
    default:
      return false;
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
        default:
          return "";
      }
    }
    default:
      return "";
  }
}

namespace {

// What an IdMatch is about: every event of its stream (nullptr), or those
// the predicate admits.
using About = std::function<bool(const v1::Event&)>;

// The position of the first envelope of `stream_id` that `about` admits
// (0 for none).
absl::StatusOr<uint64_t> FirstPosition(const EventLog& log,
                                       const std::string& stream_id,
                                       const About& about) {
  uint64_t first = 0;
  RETURN_IF_ERROR(log.ScanStream(stream_id, 0, [&](const v1::Envelope& e) {
    if (about != nullptr && !about(e.payload())) return true;
    first = e.position();
    return false;
  }));
  return first;
}

}  // namespace

absl::StatusOr<v1::FindResult> FindId(const EventLog& log,
                                      const std::string& id) {
  ProjectionReader reader(&log);
  v1::FindResult result;
  result.set_id(id);
  const About everything = nullptr;
  auto add = [&](std::string kind, const std::string& store_id,
                 std::string merchant_id, std::string stream_id,
                 std::string status, const About& about) -> absl::Status {
    v1::IdMatch* match = result.add_matches();
    match->set_kind(std::move(kind));
    match->set_id(id);
    match->set_store_id(store_id);
    match->set_merchant_id(std::move(merchant_id));
    match->set_status(std::move(status));
    ASSIGN_OR_RETURN(uint64_t first, FirstPosition(log, stream_id, about));
    match->set_first_position(first);
    match->set_stream_id(std::move(stream_id));
    return absl::OkStatus();
  };
  auto merchant_of = [&](const std::string& store_id) -> std::string {
    absl::StatusOr<RecordRef<StoreRecord>> store = reader.Store(store_id);
    return store.ok() && *store != nullptr ? (*store)->merchant_id() : "";
  };

  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, reader.Store(id));
  if (store != nullptr) {
    RETURN_IF_ERROR(add("store", id, store->merchant_id(), StoreStream(id),
                        v1::StoreStatus_Name(store->status()), everything));
  }
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant, reader.Merchant(id));
  if (merchant != nullptr) {
    RETURN_IF_ERROR(add("merchant", "", id, MerchantStream(id),
                        v1::Subject_Name(merchant->subject()), everything));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> product_stores,
                   StoresWithProduct(reader, id));
  for (const std::string& store_id : product_stores) {
    ASSIGN_OR_RETURN(RecordRef<ProductRecord> product,
                     reader.Product(store_id, id));
    const About about = [&](const v1::Event& e) { return NamesProduct(e, id); };
    RETURN_IF_ERROR(add("product", store_id, merchant_of(store_id),
                        StoreStream(store_id),
                        v1::ProductStatus_Name(product->status()), about));
  }
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> order, reader.Order(id));
  if (order != nullptr) {
    const About about = [&](const v1::Event& e) { return OrderIdOf(e) == id; };
    RETURN_IF_ERROR(add("order", order->store_id(),
                        merchant_of(order->store_id()),
                        StoreStream(order->store_id()),
                        v1::OrderStatus_Name(order->status()), about));
  }
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal,
                   reader.Withdrawal(id));
  if (withdrawal != nullptr) {
    const About about = [&](const v1::Event& e) {
      return WithdrawalIdOf(e) == id;
    };
    RETURN_IF_ERROR(add("withdrawal", withdrawal->store_id(),
                        merchant_of(withdrawal->store_id()),
                        StoreStream(withdrawal->store_id()),
                        v1::WithdrawalStatus_Name(withdrawal->status()),
                        about));
  }
  ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> outcome,
                   log.GetOutcome(id));
  if (outcome.has_value()) {
    v1::IdMatch* match = result.add_matches();
    match->set_kind("command");
    match->set_id(id);
    const v1::CommandResult& r = outcome->result();
    match->set_status(
        r.rule().empty()
            ? v1::OutcomeStatus_Name(r.status())
            : absl::StrCat(v1::OutcomeStatus_Name(r.status()), " ", r.rule()));
    match->set_first_position(r.first_position());
    if (r.first_position() != 0) {
      ASSIGN_OR_RETURN(v1::Envelope first, log.Read(r.first_position()));
      match->set_stream_id(first.stream_id());
    }
  }
  return result;
}

absl::StatusOr<std::vector<std::string>> StoresWithProduct(
    const StateReader& reader, absl::string_view product_id) {
  std::vector<std::string> stores;
  for (v1::StoreKind kind :
       {v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE}) {
    ASSIGN_OR_RETURN(std::vector<std::string> ids, reader.StoreIds(kind));
    for (const std::string& store_id : ids) {
      ASSIGN_OR_RETURN(RecordRef<ProductRecord> product,
                       reader.Product(store_id, product_id));
      if (product != nullptr) stores.push_back(store_id);
    }
  }
  std::sort(stores.begin(), stores.end());
  return stores;
}

absl::StatusOr<uint64_t> PositionRecordedBy(const EventLog& log, absl::Time t) {
  // Invariant: positions <= low are recorded by t; positions > high are not.
  uint64_t low = 0, high = log.head().position;
  while (low < high) {
    const uint64_t middle = low + (high - low + 1) / 2;
    ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(middle));
    if (ToTime(envelope.recorded_at()) <= t) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return low;
}

absl::StatusOr<v1::PositionAt> ResolvePosition(const EventLog& log,
                                               std::optional<absl::Time> at,
                                               std::optional<uint64_t> position,
                                               absl::string_view written) {
  v1::PositionAt answer;
  answer.set_written(std::string(written));
  uint64_t resolved = log.head().position;
  if (at.has_value()) {
    *answer.mutable_at() = ToProto(*at);
    ASSIGN_OR_RETURN(resolved, PositionRecordedBy(log, *at));
  } else if (position.has_value()) {
    resolved = std::min(*position, resolved);
  }
  answer.set_position(resolved);
  if (resolved != 0) {
    ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(resolved));
    *answer.mutable_recorded_at() = envelope.recorded_at();
  }
  return answer;
}

absl::StatusOr<std::vector<v1::Statement>> StatementsOf(
    const EventLog& log, const std::string& store_id, bool pair,
    absl::Time from, absl::Time to) {
  std::vector<std::string> ids = {store_id};
  if (pair) {
    ProjectionReader reader(&log);
    ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, reader.Store(store_id));
    if (store == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("store ", store_id, " not found"));
    }
    if (!store->upgraded_to().empty()) {
      ids.push_back(store->upgraded_to());
    } else if (!store->upgraded_from().empty()) {
      ids.insert(ids.begin(), store->upgraded_from());
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "--pair: store ", store_id,
          " neither upgraded into a WeChat Store nor was upgraded from one"));
    }
  }
  std::vector<v1::Statement> statements;
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(v1::Statement statement,
                     BuildStatement(log, id, from, to));
    statements.push_back(std::move(statement));
  }
  return statements;
}

}  // namespace storeledger
