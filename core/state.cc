// StateOverlay: changes over a base StateReader, and the empty base.
#include "core/state.h"

#include <algorithm>
#include <set>

namespace storeledger {
namespace {

class EmptyStateReader : public StateReader {
 public:
  absl::StatusOr<std::optional<StoreRecord>> Store(
      absl::string_view) const override {
    return std::nullopt;
  }
  absl::StatusOr<std::optional<ProductRecord>> Product(
      absl::string_view, absl::string_view) const override {
    return std::nullopt;
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view) const override {
    return std::vector<ProductRecord>();
  }
  absl::StatusOr<std::optional<OrderRecord>> Order(
      absl::string_view) const override {
    return std::nullopt;
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view) const override {
    return std::vector<OrderRecord>();
  }
  absl::StatusOr<std::optional<WithdrawalRecord>> Withdrawal(
      absl::string_view) const override {
    return std::nullopt;
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view) const override {
    return std::vector<WithdrawalRecord>();
  }
  absl::StatusOr<std::optional<MerchantRecord>> Merchant(
      absl::string_view) const override {
    return std::nullopt;
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(StoreKind) const override {
    return std::vector<std::string>();
  }
  absl::StatusOr<std::optional<StreamHead>> Head(
      absl::string_view) const override {
    return std::nullopt;
  }
};

// Merges a per-store list from the base with the overlay's records of that
// store (the overlay wins), sorted by `key`.
template <typename Record, typename Key>
std::vector<Record> MergeSorted(std::vector<Record> base,
                                const std::vector<const Record*>& changed,
                                Key key) {
  std::map<std::string, Record> merged;
  for (Record& record : base) {
    std::string id = key(record);
    merged.insert_or_assign(std::move(id), std::move(record));
  }
  for (const Record* record : changed)
    merged.insert_or_assign(key(*record), *record);
  std::vector<Record> out;
  out.reserve(merged.size());
  for (auto& [id, record] : merged) out.push_back(std::move(record));
  return out;
}

}  // namespace

const StateReader& EmptyState() {
  static const EmptyStateReader* const empty = new EmptyStateReader();
  return *empty;
}

absl::StatusOr<std::optional<StoreRecord>> StateOverlay::Store(
    absl::string_view store_id) const {
  auto it = stores_.find(std::string(store_id));
  if (it != stores_.end()) return it->second;
  return base_->Store(store_id);
}

absl::StatusOr<std::optional<ProductRecord>> StateOverlay::Product(
    absl::string_view store_id, absl::string_view product_id) const {
  auto it = products_.find({std::string(store_id), std::string(product_id)});
  if (it != products_.end()) return it->second;
  return base_->Product(store_id, product_id);
}

absl::StatusOr<std::vector<ProductRecord>> StateOverlay::Products(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<ProductRecord>> base = base_->Products(store_id);
  if (!base.ok()) return base.status();
  std::vector<const ProductRecord*> changed;
  for (auto it = products_.lower_bound({std::string(store_id), std::string()});
       it != products_.end() && it->first.first == store_id; ++it) {
    changed.push_back(&it->second);
  }
  return MergeSorted(*std::move(base), changed,
                     [](const ProductRecord& r) { return r.product_id(); });
}

absl::StatusOr<std::optional<OrderRecord>> StateOverlay::Order(
    absl::string_view order_id) const {
  auto it = orders_.find(std::string(order_id));
  if (it != orders_.end()) return it->second;
  return base_->Order(order_id);
}

absl::StatusOr<std::vector<OrderRecord>> StateOverlay::Orders(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<OrderRecord>> base = base_->Orders(store_id);
  if (!base.ok()) return base.status();
  // An order never changes store, so filtering the changes by store is exact.
  std::vector<const OrderRecord*> changed;
  for (const auto& [id, record] : orders_) {
    if (record.store_id() == store_id) changed.push_back(&record);
  }
  return MergeSorted(*std::move(base), changed,
                     [](const OrderRecord& r) { return r.order_id(); });
}

absl::StatusOr<std::optional<WithdrawalRecord>> StateOverlay::Withdrawal(
    absl::string_view withdrawal_id) const {
  auto it = withdrawals_.find(std::string(withdrawal_id));
  if (it != withdrawals_.end()) return it->second;
  return base_->Withdrawal(withdrawal_id);
}

absl::StatusOr<std::vector<WithdrawalRecord>> StateOverlay::Withdrawals(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<WithdrawalRecord>> base =
      base_->Withdrawals(store_id);
  if (!base.ok()) return base.status();
  std::vector<const WithdrawalRecord*> changed;
  for (const auto& [id, record] : withdrawals_) {
    if (record.store_id() == store_id) changed.push_back(&record);
  }
  return MergeSorted(*std::move(base), changed, [](const WithdrawalRecord& r) {
    return r.withdrawal_id();
  });
}

absl::StatusOr<std::optional<MerchantRecord>> StateOverlay::Merchant(
    absl::string_view merchant_id) const {
  auto it = merchants_.find(std::string(merchant_id));
  if (it != merchants_.end()) return it->second;
  return base_->Merchant(merchant_id);
}

absl::StatusOr<std::vector<std::string>> StateOverlay::StoreIds(
    StoreKind kind) const {
  absl::StatusOr<std::vector<std::string>> base = base_->StoreIds(kind);
  if (!base.ok()) return base.status();
  // A store never changes kind, so the overlay only adds ids.
  std::set<std::string> ids(base->begin(), base->end());
  for (const auto& [id, record] : stores_) {
    if (record.kind() == kind) ids.insert(id);
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

absl::StatusOr<std::optional<StreamHead>> StateOverlay::Head(
    absl::string_view stream_id) const {
  auto it = heads_.find(std::string(stream_id));
  if (it != heads_.end()) return it->second;
  return base_->Head(stream_id);
}

void StateOverlay::PutStore(StoreRecord record) {
  std::string id = record.store_id();
  stores_.insert_or_assign(std::move(id), std::move(record));
}

void StateOverlay::PutProduct(ProductRecord record) {
  std::pair<std::string, std::string> key(record.store_id(),
                                          record.product_id());
  products_.insert_or_assign(std::move(key), std::move(record));
}

void StateOverlay::PutOrder(OrderRecord record) {
  std::string id = record.order_id();
  orders_.insert_or_assign(std::move(id), std::move(record));
}

void StateOverlay::PutWithdrawal(WithdrawalRecord record) {
  std::string id = record.withdrawal_id();
  withdrawals_.insert_or_assign(std::move(id), std::move(record));
}

void StateOverlay::PutMerchant(MerchantRecord record) {
  std::string id = record.merchant_id();
  merchants_.insert_or_assign(std::move(id), std::move(record));
}

void StateOverlay::PutHead(std::string stream_id, StreamHead head) {
  heads_.insert_or_assign(std::move(stream_id), std::move(head));
}

void StateOverlay::MergeFrom(const StateOverlay& other) {
  for (const auto& [k, v] : other.stores_) stores_.insert_or_assign(k, v);
  for (const auto& [k, v] : other.products_) products_.insert_or_assign(k, v);
  for (const auto& [k, v] : other.orders_) orders_.insert_or_assign(k, v);
  for (const auto& [k, v] : other.withdrawals_) {
    withdrawals_.insert_or_assign(k, v);
  }
  for (const auto& [k, v] : other.merchants_) merchants_.insert_or_assign(k, v);
  for (const auto& [k, v] : other.heads_) heads_.insert_or_assign(k, v);
}

void StateOverlay::Clear() {
  stores_.clear();
  products_.clear();
  orders_.clear();
  withdrawals_.clear();
  merchants_.clear();
  heads_.clear();
}

StateChanges StateOverlay::TakeChanges() {
  StateChanges changes{std::move(stores_),      std::move(products_),
                       std::move(orders_),      std::move(withdrawals_),
                       std::move(merchants_),   std::move(heads_)};
  Clear();  // a moved-from map is valid but unspecified: make it empty
  return changes;
}

}  // namespace storeledger
