#include "ledger/store_directory.h"

#include <memory>

namespace storeledger {

const std::string* CreatedStoreId(const v1::Command& command) {
  switch (command.body_case()) {
    case v1::Command::kOpenStore:
      return &command.open_store().store_id();
    case v1::Command::kUpgradeStore:
      return &command.upgrade_store().target_store_id();
    default:
      return nullptr;
  }
}

PlacedElsewhereState::PlacedElsewhereState(const StateReader* base,
                                           absl::string_view store_id)
    : base_(base) {
  auto record = std::make_shared<StoreRecord>();
  record->set_store_id(std::string(store_id));
  elsewhere_ = std::move(record);
}

absl::StatusOr<RecordRef<StoreRecord>> PlacedElsewhereState::Store(
    absl::string_view store_id) const {
  if (store_id == elsewhere_->store_id()) return elsewhere_;
  return base_->Store(store_id);
}
absl::StatusOr<RecordRef<ProductRecord>> PlacedElsewhereState::Product(
    absl::string_view store_id, absl::string_view product_id) const {
  return base_->Product(store_id, product_id);
}
absl::StatusOr<std::vector<ProductRecord>> PlacedElsewhereState::Products(
    absl::string_view store_id) const {
  return base_->Products(store_id);
}
absl::StatusOr<RecordRef<OrderRecord>> PlacedElsewhereState::Order(
    absl::string_view order_id) const {
  return base_->Order(order_id);
}
absl::StatusOr<std::vector<OrderRecord>> PlacedElsewhereState::Orders(
    absl::string_view store_id) const {
  return base_->Orders(store_id);
}
absl::StatusOr<RecordRef<WithdrawalRecord>> PlacedElsewhereState::Withdrawal(
    absl::string_view withdrawal_id) const {
  return base_->Withdrawal(withdrawal_id);
}
absl::StatusOr<std::vector<WithdrawalRecord>> PlacedElsewhereState::Withdrawals(
    absl::string_view store_id) const {
  return base_->Withdrawals(store_id);
}
absl::StatusOr<RecordRef<MerchantRecord>> PlacedElsewhereState::Merchant(
    absl::string_view merchant_id) const {
  return base_->Merchant(merchant_id);
}
absl::StatusOr<std::vector<std::string>> PlacedElsewhereState::StoreIds(
    StoreKind kind) const {
  return base_->StoreIds(kind);
}
absl::StatusOr<RecordRef<StreamHead>> PlacedElsewhereState::Head(
    absl::string_view stream_id) const {
  return base_->Head(stream_id);
}

}  // namespace storeledger
