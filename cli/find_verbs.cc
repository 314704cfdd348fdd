// Lookups in the user's terms: `find ID` says what an id names
// and where it lives; `position-at T` turns a time into the position the
// ledger had reached by then.
#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "cli/history_filter.h"
#include "base/status_macros.h"
#include "base/time.h"
#include "core/streams.h"
#include "json/json.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

// The position of the first envelope of `stream_id` that `filter` selects
// (0 for none).
absl::StatusOr<uint64_t> FirstPosition(const EventLog& log,
                                       const std::string& stream_id,
                                       const HistoryFilter& filter) {
  uint64_t first = 0;
  RETURN_IF_ERROR(log.ScanStream(stream_id, 0, [&](const v1::Envelope& e) {
    if (!filter.Selects(e)) return true;
    first = e.position();
    return false;
  }));
  return first;
}

absl::StatusOr<v1::FindResult> Find(const Ledger& ledger,
                                    const std::string& id) {
  const EventLog& log = ledger.log();
  ProjectionReader reader(&log);
  v1::FindResult result;
  result.set_id(id);
  const HistoryFilter everything{};
  auto add = [&](std::string kind, const std::string& store_id,
                 std::string merchant_id, std::string stream_id,
                 std::string status, const HistoryFilter& about)
      -> absl::Status {
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
    HistoryFilter about;
    about.product_id = id;
    RETURN_IF_ERROR(add("product", store_id, merchant_of(store_id),
                        StoreStream(store_id),
                        v1::ProductStatus_Name(product->status()), about));
  }
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> order, reader.Order(id));
  if (order != nullptr) {
    HistoryFilter about;
    about.order_id = id;
    RETURN_IF_ERROR(add("order", order->store_id(),
                        merchant_of(order->store_id()),
                        StoreStream(order->store_id()),
                        v1::OrderStatus_Name(order->status()), about));
  }
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal,
                   reader.Withdrawal(id));
  if (withdrawal != nullptr) {
    HistoryFilter about;
    about.withdrawal_id = id;
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
    match->set_status(r.rule().empty()
                          ? v1::OutcomeStatus_Name(r.status())
                          : absl::StrCat(v1::OutcomeStatus_Name(r.status()),
                                         " ", r.rule()));
    match->set_first_position(r.first_position());
    if (r.first_position() != 0) {
      ASSIGN_OR_RETURN(v1::Envelope first, log.Read(r.first_position()));
      match->set_stream_id(first.stream_id());
    }
  }
  return result;
}

}  // namespace

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

int FindVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 2 || args[1].empty()) {
    return ctx.Fail(absl::InvalidArgumentError("usage: storeledger find ID"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::FindResult> found = Find(**ledger, args[1]);
  if (!found.ok()) return ctx.Fail(found.status());
  if (found->matches().empty()) {
    return ctx.Fail(absl::NotFoundError(absl::StrCat(
        "no store, merchant, product, order, withdrawal or command has id ",
        args[1])));
  }
  *ctx.out << ToJson(*found) << "\n";
  return kExitOk;
}

int PositionAtVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 2) {
    return ctx.Fail(
        absl::InvalidArgumentError("usage: storeledger position-at T"));
  }
  absl::StatusOr<absl::Time> at =
      ParseTimeInput("T", args[1], ctx.zone.zone);
  if (!at.ok()) return ctx.Fail(at.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  absl::StatusOr<uint64_t> position = PositionRecordedBy(log, *at);
  if (!position.ok()) return ctx.Fail(position.status());
  v1::PositionAt answer;
  answer.set_written(args[1]);
  *answer.mutable_at() = ToProto(*at);
  answer.set_position(*position);
  if (*position != 0) {
    absl::StatusOr<v1::Envelope> envelope = log.Read(*position);
    if (!envelope.ok()) return ctx.Fail(envelope.status());
    *answer.mutable_recorded_at() = envelope->recorded_at();
  } else {
    ctx.SayNothingMatched("nothing was recorded at or before that time");
  }
  *ctx.out << ToJson(answer) << "\n";
  return kExitOk;
}

}  // namespace storeledger
