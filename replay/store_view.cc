#include "replay/store_view.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "core/streams.h"
#include "replay/snapshots.h"

namespace storeledger {

absl::StatusOr<v1::StoreState> BuildStoreState(const StateReader& state,
                                               absl::string_view store_id,
                                               absl::Time effective_at,
                                               const Policy& policy) {
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, state.Store(store_id));
  if (store == nullptr) {
    return absl::NotFoundError(absl::StrCat("store ", store_id, " not found"));
  }
  v1::StoreState out;
  out.set_store_id(store->store_id());
  out.set_kind(store->kind());
  out.set_status(store->status());
  out.set_merchant_id(store->merchant_id());
  out.set_subject(store->subject());
  out.set_upgraded_from(store->upgraded_from());
  out.set_upgraded_to(store->upgraded_to());
  *out.mutable_balances() = store->balances();
  *out.mutable_qualified_categories() = store->qualified_categories();
  *out.mutable_deposit_fen_by_category() = store->deposit_fen_by_category();

  ASSIGN_OR_RETURN(std::vector<ProductRecord> products,
                   state.Products(store_id));
  for (const ProductRecord& product : products) {
    v1::ProductView* view = out.add_products();
    view->set_product_id(product.product_id());
    view->set_kind(product.kind());
    view->set_origin(product.origin());
    view->set_status(product.status());
    view->set_category_id(product.category_id());
    view->set_synced_from(product.synced_from());
    view->set_price_fen(product.price_fen());
    view->set_effective_status(
        EffectiveStatus(product, store->kind(), effective_at, policy));
  }
  ASSIGN_OR_RETURN(std::vector<OrderRecord> orders, state.Orders(store_id));
  for (const OrderRecord& order : orders) {
    v1::OrderView* view = out.add_orders();
    view->set_order_id(order.order_id());
    view->set_status(order.status());
    view->set_total_fen(order.total_fen());
    view->set_paid_fen(order.paid_fen());
    view->set_refunded_fen(order.refunded_fen());
    view->set_channel(order.channel());
  }
  ASSIGN_OR_RETURN(std::vector<WithdrawalRecord> withdrawals,
                   state.Withdrawals(store_id));
  for (const WithdrawalRecord& withdrawal : withdrawals) {
    v1::WithdrawalView* view = out.add_withdrawals();
    view->set_withdrawal_id(withdrawal.withdrawal_id());
    view->set_status(withdrawal.status());
    view->set_amount_fen(withdrawal.amount_fen());
  }
  ASSIGN_OR_RETURN(RecordRef<StreamHead> head,
                   state.Head(StoreStream(store_id)));
  if (head != nullptr) out.set_version(head->version());
  return out;
}

absl::StatusOr<v1::StoreState> FoldStoreState(const EventLog& log,
                                              absl::string_view store_id,
                                              const AsOf& as_of, absl::Time now,
                                              const Policy& policy) {
  StateOverlay state(&EmptyState());
  // Start from the newest snapshot the as-of admits (replay/snapshots.h), so
  // the fold covers about K events rather than the store's whole history.
  uint64_t after_version = 0;
  ASSIGN_OR_RETURN(
      std::optional<v1::StoreSnapshot> snapshot,
      FindSnapshot(log, store_id, as_of.position, as_of.business_time));
  if (snapshot.has_value()) {
    LoadSnapshot(*snapshot, &state);
    after_version = snapshot->meta().version();
  }
  absl::Status evolve_status;
  RETURN_IF_ERROR(log.ScanStream(
      StoreStream(store_id), after_version, [&](const v1::Envelope& envelope) {
        if (as_of.position.has_value() && envelope.position() > *as_of.position)
          return false;
        // R0 keeps a stream's business time monotonic, so the first event
        // past business_time ends the prefix.
        if (as_of.business_time.has_value() &&
            ToTime(envelope.occurred_at()) > *as_of.business_time)
          return false;
        evolve_status = EvolveEnvelope(envelope, &state);
        return evolve_status.ok();
      }));
  RETURN_IF_ERROR(evolve_status);
  absl::StatusOr<v1::StoreState> out = BuildStoreState(
      state, store_id, as_of.business_time.value_or(now), policy);
  if (absl::IsNotFound(out.status()) && !as_of.empty()) {
    return absl::NotFoundError(
        absl::StrCat("store ", store_id, " did not exist at the time asked"));
  }
  return out;
}

}  // namespace storeledger
