// Folds events into records. Evolve trusts the rules (Decide ran before the
// event was written) and only checks what it must to stay consistent: a
// referenced record that is missing, or a balance that would go negative or
// overflow, is kDataLoss.
#include "core/evolve.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/money.h"
#include "core/policy.h"

namespace storeledger {
namespace {

using v1::Event;

// The records an event changes, to change in place (MutableState,
// copy-on-write): a referenced record that is missing is kDataLoss.
absl::StatusOr<StoreRecord*> LoadStore(MutableState& state,
                                       absl::string_view store_id) {
  ASSIGN_OR_RETURN(StoreRecord * record, state.MutableStore(store_id));
  if (record == nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: store ", store_id, " does not exist"));
  }
  return record;
}

absl::StatusOr<ProductRecord*> LoadProduct(MutableState& state,
                                           absl::string_view store_id,
                                           absl::string_view product_id) {
  ASSIGN_OR_RETURN(ProductRecord * record,
                   state.MutableProduct(store_id, product_id));
  if (record == nullptr) {
    return absl::DataLossError(absl::StrCat(
        "evolve: product ", product_id, " does not exist in store ", store_id));
  }
  return record;
}

// One lookup: an order of another store is kDataLoss all the same (the
// copy-on-write copy MutableOrder may have made goes with the failed fold).
absl::StatusOr<OrderRecord*> LoadOrder(MutableState& state,
                                       absl::string_view store_id,
                                       absl::string_view order_id) {
  ASSIGN_OR_RETURN(OrderRecord * order, state.MutableOrder(order_id));
  if (order == nullptr || order->store_id() != store_id) {
    return absl::DataLossError(absl::StrCat(
        "evolve: order ", order_id, " does not exist in store ", store_id));
  }
  return order;
}

absl::StatusOr<WithdrawalRecord*> LoadWithdrawal(MutableState& state,
                                                 absl::string_view store_id,
                                                 absl::string_view id) {
  ASSIGN_OR_RETURN(WithdrawalRecord * withdrawal, state.MutableWithdrawal(id));
  if (withdrawal == nullptr || withdrawal->store_id() != store_id) {
    return absl::DataLossError(absl::StrCat(
        "evolve: withdrawal ", id, " does not exist in store ", store_id));
  }
  return withdrawal;
}

// *field += delta, refusing overflow and negative results.
absl::Status Adjust(int64_t* field, int64_t delta, absl::string_view what) {
  std::optional<int64_t> sum = CheckedAdd(*field, delta);
  if (!sum || *sum < 0) {
    return absl::DataLossError(absl::StrCat("evolve: ", what, " ", *field,
                                            " + ", delta,
                                            " leaves a negative or overflowing "
                                            "balance"));
  }
  *field = *sum;
  return absl::OkStatus();
}

void InsertSortedUnique(google::protobuf::RepeatedPtrField<std::string>* list,
                        const std::string& value) {
  auto it = std::lower_bound(list->begin(), list->end(), value);
  if (it != list->end() && *it == value) return;
  // RepeatedPtrField has no insert; append and rotate into place.
  const int index = static_cast<int>(it - list->begin());
  list->Add(std::string(value));
  for (int i = list->size() - 1; i > index; --i) list->SwapElements(i, i - 1);
}

absl::Status EvolveStoreOpened(absl::Time occurred_at, const v1::StoreOpened& e,
                               MutableState* state) {
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> existing, state->Store(e.store_id()));
  if (existing != nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: store ", e.store_id(), " opened twice"));
  }
  StoreRecord store;
  store.set_store_id(e.store_id());
  store.set_kind(e.kind());
  store.set_status(v1::OPEN);
  store.set_merchant_id(e.merchant_id());
  store.set_subject(e.subject());
  store.set_upgraded_from(e.upgraded_from());
  store.set_license_number(e.license_number());
  store.mutable_balances();
  *store.mutable_opened_at() = ToProto(occurred_at);
  state->PutStore(std::move(store));
  // A merchant's first store is recorded by MerchantOnboarded (which may
  // come after this event in the same decision); later ones here.
  ASSIGN_OR_RETURN(MerchantRecord * merchant,
                   state->MutableMerchant(e.merchant_id()));
  if (merchant != nullptr) {
    InsertSortedUnique(merchant->mutable_store_ids(), e.store_id());
  }
  return absl::OkStatus();
}

absl::Status EvolveMerchantOnboarded(const v1::MerchantOnboarded& e,
                                     MutableState* state) {
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> existing,
                   state->Merchant(e.merchant_id()));
  if (existing != nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: merchant ", e.merchant_id(), " onboarded twice"));
  }
  MerchantRecord merchant;
  merchant.set_merchant_id(e.merchant_id());
  merchant.set_subject(e.subject());
  if (!e.first_store_id().empty()) {
    merchant.add_store_ids(e.first_store_id());
  }
  state->PutMerchant(std::move(merchant));
  return absl::OkStatus();
}

absl::Status EvolveIndividualBusinessRegistered(
    const v1::IndividualBusinessRegistered& e, MutableState* state) {
  ASSIGN_OR_RETURN(MerchantRecord * merchant,
                   state->MutableMerchant(e.merchant_id()));
  if (merchant == nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: merchant ", e.merchant_id(), " does not exist"));
  }
  // Store records keep the subject they were opened under; the merchant
  // record is what later rules (R1, R8) read.
  merchant->set_subject(v1::INDIVIDUAL_BUSINESS);
  merchant->set_license_number(e.license_number());
  return absl::OkStatus();
}

absl::Status EvolveProductAdded(const v1::ProductAdded& e,
                                MutableState* state) {
  ASSIGN_OR_RETURN(RecordRef<ProductRecord> existing,
                   state->Product(e.store_id(), e.product_id()));
  if (existing != nullptr) {
    return absl::DataLossError(absl::StrCat("evolve: product ", e.product_id(),
                                            " added twice to store ",
                                            e.store_id()));
  }
  ProductRecord product;
  product.set_store_id(e.store_id());
  product.set_product_id(e.product_id());
  product.set_kind(e.kind());
  product.set_origin(e.origin());
  product.set_status(v1::DRAFT);  // R9: copies are never listed either.
  product.set_category_id(e.category_id());
  product.set_price_fen(e.price_fen());
  product.set_synced_from(e.synced_from());
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  store->set_product_count(store->product_count() + 1);
  state->PutProduct(std::move(product));
  return absl::OkStatus();
}

absl::Status EvolveProductListed(const v1::ProductListed& e,
                                 MutableState* state) {
  ASSIGN_OR_RETURN(ProductRecord * product,
                   LoadProduct(*state, e.store_id(), e.product_id()));
  product->set_status(v1::LISTED);
  product->set_live_room(e.live_room());
  product->set_delist_reason(v1::DELIST_REASON_UNSPECIFIED);
  return absl::OkStatus();
}

absl::Status EvolveProductDelisted(const v1::ProductDelisted& e,
                                   MutableState* state) {
  ASSIGN_OR_RETURN(ProductRecord * product,
                   LoadProduct(*state, e.store_id(), e.product_id()));
  product->set_status(v1::DELISTED);
  product->set_live_room(false);
  product->set_delist_reason(e.reason());
  return absl::OkStatus();
}

absl::Status EvolveProductDeleted(const v1::ProductDeleted& e,
                                  MutableState* state) {
  ASSIGN_OR_RETURN(ProductRecord * product,
                   LoadProduct(*state, e.store_id(), e.product_id()));
  product->set_status(v1::DELETED);
  product->set_live_room(false);
  return absl::OkStatus();
}

absl::Status EvolveStoreUpgraded(const v1::StoreUpgraded& e,
                                 MutableState* state) {
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  store->set_status(v1::UPGRADED);
  store->set_upgraded_to(e.target_store_id());
  return absl::OkStatus();
}

absl::Status EvolveCategoryQualificationGranted(
    const v1::CategoryQualificationGranted& e, MutableState* state) {
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  InsertSortedUnique(store->mutable_qualified_categories(), e.category_id());
  return absl::OkStatus();
}

absl::Status EvolveDepositPaid(const v1::DepositPaid& e, MutableState* state) {
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  const auto& deposits = store->deposit_fen_by_category();
  const auto found = deposits.find(e.category_id());
  int64_t by_category = found == deposits.end() ? 0 : found->second;
  RETURN_IF_ERROR(
      Adjust(&by_category, e.amount_fen(), "deposit_fen_by_category"));
  int64_t total = store->balances().deposit_fen();
  RETURN_IF_ERROR(Adjust(&total, e.amount_fen(), "deposit_fen"));
  (*store->mutable_deposit_fen_by_category())[e.category_id()] = by_category;
  store->mutable_balances()->set_deposit_fen(total);
  return absl::OkStatus();
}

absl::Status EvolveOrderPlaced(const v1::OrderPlaced& e, MutableState* state) {
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, state->Store(e.store_id()));
  if (store == nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: store ", e.store_id(), " does not exist"));
  }
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> existing, state->Order(e.order_id()));
  if (existing != nullptr) {
    return absl::DataLossError(
        absl::StrCat("evolve: order ", e.order_id(), " placed twice"));
  }
  OrderRecord order;
  order.set_store_id(e.store_id());
  order.set_order_id(e.order_id());
  order.set_status(v1::PLACED);
  order.set_channel(e.channel());
  order.set_total_fen(e.total_fen());
  *order.mutable_lines() = e.lines();
  state->PutOrder(std::move(order));
  return absl::OkStatus();
}

absl::Status EvolveOrderCancelled(const v1::OrderCancelled& e,
                                  MutableState* state) {
  ASSIGN_OR_RETURN(OrderRecord * order,
                   LoadOrder(*state, e.store_id(), e.order_id()));
  order->set_status(v1::CANCELLED);
  return absl::OkStatus();
}

absl::Status EvolveOrderPaid(const v1::OrderPaid& e, MutableState* state) {
  ASSIGN_OR_RETURN(OrderRecord * order,
                   LoadOrder(*state, e.store_id(), e.order_id()));
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  int64_t paid = order->paid_fen();
  RETURN_IF_ERROR(Adjust(&paid, e.amount_fen(), "order paid_fen"));
  int64_t pending = store->balances().pending_fen();
  RETURN_IF_ERROR(Adjust(&pending, e.amount_fen(), "pending_fen"));
  order->set_paid_fen(paid);
  order->set_status(v1::PAID);
  store->mutable_balances()->set_pending_fen(pending);
  return absl::OkStatus();
}

absl::Status EvolveOrderShipped(const v1::OrderShipped& e,
                                MutableState* state) {
  ASSIGN_OR_RETURN(OrderRecord * order,
                   LoadOrder(*state, e.store_id(), e.order_id()));
  order->set_status(v1::SHIPPED);
  return absl::OkStatus();
}

absl::Status EvolveOrderSettled(const v1::OrderSettled& e,
                                MutableState* state) {
  ASSIGN_OR_RETURN(OrderRecord * order,
                   LoadOrder(*state, e.store_id(), e.order_id()));
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  if (e.gross_fen() < 0 || e.commission_fen() < 0 || e.net_fen() < 0 ||
      CheckedAdd(e.commission_fen(), e.net_fen()) != e.gross_fen()) {
    return absl::DataLossError(absl::StrCat(
        "evolve: order ", e.order_id(), " settled with gross ", e.gross_fen(),
        " != commission ", e.commission_fen(), " + net ", e.net_fen()));
  }
  int64_t pending = store->balances().pending_fen();
  RETURN_IF_ERROR(Adjust(&pending, -e.gross_fen(), "pending_fen"));
  int64_t available = store->balances().available_fen();
  RETURN_IF_ERROR(Adjust(&available, e.net_fen(), "available_fen"));
  store->mutable_balances()->set_pending_fen(pending);
  store->mutable_balances()->set_available_fen(available);
  order->set_status(v1::SETTLED);
  order->set_commission_fen(e.commission_fen());
  return absl::OkStatus();
}

absl::Status EvolveOrderRefunded(const v1::OrderRefunded& e,
                                 MutableState* state) {
  ASSIGN_OR_RETURN(OrderRecord * order,
                   LoadOrder(*state, e.store_id(), e.order_id()));
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  int64_t refunded = order->refunded_fen();
  RETURN_IF_ERROR(Adjust(&refunded, e.amount_fen(), "order refunded_fen"));
  if (refunded > order->paid_fen()) {
    return absl::DataLossError(absl::StrCat("evolve: order ", e.order_id(),
                                            " refunded ", refunded, " of paid ",
                                            order->paid_fen()));
  }
  const bool from_available = e.source() == v1::FROM_AVAILABLE;
  int64_t balance = from_available ? store->balances().available_fen()
                                   : store->balances().pending_fen();
  RETURN_IF_ERROR(Adjust(&balance, -e.amount_fen(),
                         from_available ? "available_fen" : "pending_fen"));
  v1::Balances* balances = store->mutable_balances();
  if (from_available) {
    balances->set_available_fen(balance);
  } else {
    balances->set_pending_fen(balance);
  }
  order->set_refunded_fen(refunded);
  if (e.fully_refunded()) order->set_status(v1::REFUNDED);
  return absl::OkStatus();
}

absl::Status EvolveWithdrawalRequested(const v1::WithdrawalRequested& e,
                                       MutableState* state) {
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> existing,
                   state->Withdrawal(e.withdrawal_id()));
  if (existing != nullptr) {
    return absl::DataLossError(absl::StrCat(
        "evolve: withdrawal ", e.withdrawal_id(), " requested twice"));
  }
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, e.store_id()));
  int64_t available = store->balances().available_fen();
  RETURN_IF_ERROR(Adjust(&available, -e.amount_fen(), "available_fen"));
  int64_t withdrawing = store->balances().withdrawing_fen();
  RETURN_IF_ERROR(Adjust(&withdrawing, e.amount_fen(), "withdrawing_fen"));
  v1::Balances* balances = store->mutable_balances();
  balances->set_available_fen(available);
  balances->set_withdrawing_fen(withdrawing);
  WithdrawalRecord withdrawal;
  withdrawal.set_store_id(e.store_id());
  withdrawal.set_withdrawal_id(e.withdrawal_id());
  withdrawal.set_status(v1::WITHDRAWING);
  withdrawal.set_amount_fen(e.amount_fen());
  state->PutWithdrawal(std::move(withdrawal));
  return absl::OkStatus();
}

// Completed: from withdrawing to paid out; failed: back to available.
absl::Status EvolveWithdrawalClosed(bool completed, const std::string& store_id,
                                    const std::string& withdrawal_id,
                                    int64_t amount_fen, MutableState* state) {
  ASSIGN_OR_RETURN(WithdrawalRecord * withdrawal,
                   LoadWithdrawal(*state, store_id, withdrawal_id));
  ASSIGN_OR_RETURN(StoreRecord * store, LoadStore(*state, store_id));
  int64_t withdrawing = store->balances().withdrawing_fen();
  RETURN_IF_ERROR(Adjust(&withdrawing, -amount_fen, "withdrawing_fen"));
  int64_t destination = completed ? store->balances().paid_out_fen()
                                  : store->balances().available_fen();
  RETURN_IF_ERROR(Adjust(&destination, amount_fen,
                         completed ? "paid_out_fen" : "available_fen"));
  v1::Balances* balances = store->mutable_balances();
  balances->set_withdrawing_fen(withdrawing);
  if (completed) {
    balances->set_paid_out_fen(destination);
    withdrawal->set_status(v1::PAID_OUT);
  } else {
    balances->set_available_fen(destination);
    withdrawal->set_status(v1::WITHDRAWAL_FAILED);
  }
  return absl::OkStatus();
}

absl::Status EvolveWithdrawalCompleted(const v1::WithdrawalCompleted& e,
                                       MutableState* state) {
  return EvolveWithdrawalClosed(/*completed=*/true, e.store_id(),
                                e.withdrawal_id(), e.amount_fen(), state);
}

absl::Status EvolveWithdrawalFailed(const v1::WithdrawalFailed& e,
                                    MutableState* state) {
  return EvolveWithdrawalClosed(/*completed=*/false, e.store_id(),
                                e.withdrawal_id(), e.amount_fen(), state);
}

absl::Status EvolveProductsSynced(const v1::ProductsSynced& e,
                                  MutableState* state) {
  // R9's outcome: the copies are the ProductAdded events before it.
  return LoadStore(*state, e.store_id()).status();
}

// Folds one event's body: only dispatches, one EvolveX per event.
absl::Status EvolveBody(absl::Time occurred_at, const Event& event,
                        MutableState* state) {
  switch (event.body_case()) {
    case Event::kStoreOpened:
      return EvolveStoreOpened(occurred_at, event.store_opened(), state);
    case Event::kMerchantOnboarded:
      return EvolveMerchantOnboarded(event.merchant_onboarded(), state);
    case Event::kIndividualBusinessRegistered:
      return EvolveIndividualBusinessRegistered(
          event.individual_business_registered(), state);
    case Event::kProductAdded:
      return EvolveProductAdded(event.product_added(), state);
    case Event::kProductListed:
      return EvolveProductListed(event.product_listed(), state);
    case Event::kProductDelisted:
      return EvolveProductDelisted(event.product_delisted(), state);
    case Event::kProductDeleted:
      return EvolveProductDeleted(event.product_deleted(), state);
    case Event::kStoreUpgraded:
      return EvolveStoreUpgraded(event.store_upgraded(), state);
    case Event::kCategoryQualificationGranted:
      return EvolveCategoryQualificationGranted(
          event.category_qualification_granted(), state);
    case Event::kDepositPaid:
      return EvolveDepositPaid(event.deposit_paid(), state);
    case Event::kOrderPlaced:
      return EvolveOrderPlaced(event.order_placed(), state);
    case Event::kOrderCancelled:
      return EvolveOrderCancelled(event.order_cancelled(), state);
    case Event::kOrderPaid:
      return EvolveOrderPaid(event.order_paid(), state);
    case Event::kOrderShipped:
      return EvolveOrderShipped(event.order_shipped(), state);
    case Event::kOrderSettled:
      return EvolveOrderSettled(event.order_settled(), state);
    case Event::kOrderRefunded:
      return EvolveOrderRefunded(event.order_refunded(), state);
    case Event::kWithdrawalRequested:
      return EvolveWithdrawalRequested(event.withdrawal_requested(), state);
    case Event::kWithdrawalCompleted:
      return EvolveWithdrawalCompleted(event.withdrawal_completed(), state);
    case Event::kWithdrawalFailed:
      return EvolveWithdrawalFailed(event.withdrawal_failed(), state);
    case Event::kProductsSynced:
      return EvolveProductsSynced(event.products_synced(), state);
    case Event::kCommandRejected:
      return absl::OkStatus();  // a fact about the log, not about a store
    case Event::BODY_NOT_SET:
      return absl::DataLossError("evolve: event has no body");
  }
  return absl::DataLossError(
      absl::StrCat("evolve: unknown event body ", event.body_case()));
}

}  // namespace

absl::Status Evolve(absl::string_view stream_id, uint64_t stream_version,
                    absl::Time occurred_at, const v1::Event& event,
                    MutableState* state) {
  RETURN_IF_ERROR(EvolveBody(occurred_at, event, state));
  if (!state->TracksHeads()) return absl::OkStatus();
  StreamHead head;
  head.set_version(stream_version);
  *head.mutable_last_occurred_at() = ToProto(occurred_at);
  state->PutHead(stream_id, std::move(head));
  return absl::OkStatus();
}

absl::Status EvolveEnvelope(const v1::Envelope& envelope, MutableState* state) {
  return Evolve(envelope.stream_id(), envelope.stream_version(),
                ToTime(envelope.occurred_at()), envelope.payload(), state);
}

v1::ProductStatus EffectiveStatus(const v1::ProductRecord& product,
                                  v1::StoreKind store_kind, absl::Time at,
                                  const v1::Policy& policy) {
  const v1::ProductStatus stored = product.status();
  if (store_kind != v1::MINI_STORE) return stored;
  if (stored != v1::DRAFT && stored != v1::LISTED) return stored;
  // R6: the cutoffs hold whether or not ApplyPolicy has written them yet. A
  // DRAFT product is past the cutoff too: it can never be listed again.
  if (product.kind() == v1::E_VOUCHER &&
      at >= ToTime(policy.mini_evoucher_cutoff())) {
    return v1::DELISTED;
  }
  if (at >= ToTime(policy.mini_physical_cutoff())) return v1::DELISTED;
  return stored;
}

}  // namespace storeledger
