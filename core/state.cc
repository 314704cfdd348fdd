// StateOverlay: changes over a base StateReader, and the empty base.
#include "core/state.h"

#include <algorithm>
#include <set>

namespace storeledger {
namespace {

class EmptyStateReader : public StateReader {
 public:
  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view) const override {
    return nullptr;
  }
  absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view, absl::string_view) const override {
    return nullptr;
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view) const override {
    return std::vector<ProductRecord>();
  }
  absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view) const override {
    return nullptr;
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view) const override {
    return std::vector<OrderRecord>();
  }
  absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view) const override {
    return nullptr;
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view) const override {
    return std::vector<WithdrawalRecord>();
  }
  absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view) const override {
    return nullptr;
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(StoreKind) const override {
    return std::vector<std::string>();
  }
  absl::StatusOr<RecordRef<StreamHead>> Head(absl::string_view) const override {
    return nullptr;
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

// The overlay's record under `key`, else the base's (read by `load`).
template <typename Map, typename Key, typename Load>
auto Find(const Map& map, const Key& key, const Load& load)
    -> decltype(load()) {
  using Record = typename Map::mapped_type::element_type;
  auto it = map.find(key);
  if (it != map.end()) return RecordRef<Record>(it->second);
  return load();
}

// Copy-on-write (state.h): the overlay's own record under `key`, copied from
// the base's (read by `load`) or from a version someone else still holds.
template <typename Map, typename Key, typename Load, typename MakeKey>
auto Mutable(Map& map, const Key& key, const Load& load,
             const MakeKey& make_key)
    -> absl::StatusOr<typename Map::mapped_type::element_type*> {
  using Record = typename Map::mapped_type::element_type;
  auto it = map.find(key);
  if (it != map.end()) {
    if (it->second.use_count() != 1) {
      it->second = std::make_shared<Record>(*it->second);
    }
    return it->second.get();
  }
  absl::StatusOr<RecordRef<Record>> base = load();
  if (!base.ok()) return base.status();
  if (*base == nullptr) return nullptr;
  auto inserted = map.emplace(make_key(), std::make_shared<Record>(**base));
  return inserted.first->second.get();
}

template <typename Map>
void ShareInto(Map& into, const Map& from) {
  for (const auto& [key, record] : from) into.insert_or_assign(key, record);
}

template <typename Map>
void MoveInto(Map& into, Map& from) {
  if (into.empty()) {
    into.swap(from);
    return;
  }
  for (auto& [key, record] : from) {
    into.insert_or_assign(key, std::move(record));
  }
  from.clear();
}

}  // namespace

const StateReader& EmptyState() {
  static const EmptyStateReader* const empty = new EmptyStateReader();
  return *empty;
}

absl::StatusOr<RecordRef<StoreRecord>> StateOverlay::Store(
    absl::string_view store_id) const {
  return Find(stores_, store_id, [&] { return base_->Store(store_id); });
}

absl::StatusOr<RecordRef<ProductRecord>> StateOverlay::Product(
    absl::string_view store_id, absl::string_view product_id) const {
  return Find(products_, std::make_pair(store_id, product_id),
              [&] { return base_->Product(store_id, product_id); });
}

absl::StatusOr<std::vector<ProductRecord>> StateOverlay::Products(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<ProductRecord>> base = base_->Products(store_id);
  if (!base.ok()) return base.status();
  std::vector<const ProductRecord*> changed;
  for (auto it =
           products_.lower_bound(std::make_pair(store_id, absl::string_view()));
       it != products_.end() && it->first.first == store_id; ++it) {
    changed.push_back(it->second.get());
  }
  return MergeSorted(*std::move(base), changed,
                     [](const ProductRecord& r) { return r.product_id(); });
}

absl::StatusOr<RecordRef<OrderRecord>> StateOverlay::Order(
    absl::string_view order_id) const {
  return Find(orders_, order_id, [&] { return base_->Order(order_id); });
}

absl::StatusOr<std::vector<OrderRecord>> StateOverlay::Orders(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<OrderRecord>> base = base_->Orders(store_id);
  if (!base.ok()) return base.status();
  // An order never changes store, so filtering the changes by store is exact.
  std::vector<const OrderRecord*> changed;
  for (const auto& [id, record] : orders_) {
    if (record->store_id() == store_id) changed.push_back(record.get());
  }
  return MergeSorted(*std::move(base), changed,
                     [](const OrderRecord& r) { return r.order_id(); });
}

absl::StatusOr<RecordRef<WithdrawalRecord>> StateOverlay::Withdrawal(
    absl::string_view withdrawal_id) const {
  return Find(withdrawals_, withdrawal_id,
              [&] { return base_->Withdrawal(withdrawal_id); });
}

absl::StatusOr<std::vector<WithdrawalRecord>> StateOverlay::Withdrawals(
    absl::string_view store_id) const {
  absl::StatusOr<std::vector<WithdrawalRecord>> base =
      base_->Withdrawals(store_id);
  if (!base.ok()) return base.status();
  std::vector<const WithdrawalRecord*> changed;
  for (const auto& [id, record] : withdrawals_) {
    if (record->store_id() == store_id) changed.push_back(record.get());
  }
  return MergeSorted(*std::move(base), changed, [](const WithdrawalRecord& r) {
    return r.withdrawal_id();
  });
}

absl::StatusOr<RecordRef<MerchantRecord>> StateOverlay::Merchant(
    absl::string_view merchant_id) const {
  return Find(merchants_, merchant_id,
              [&] { return base_->Merchant(merchant_id); });
}

absl::StatusOr<std::vector<std::string>> StateOverlay::StoreIds(
    StoreKind kind) const {
  absl::StatusOr<std::vector<std::string>> base = base_->StoreIds(kind);
  if (!base.ok()) return base.status();
  // A store never changes kind, so the overlay only adds ids.
  std::set<std::string> ids(base->begin(), base->end());
  for (const auto& [id, record] : stores_) {
    if (record->kind() == kind) ids.insert(id);
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

absl::StatusOr<RecordRef<StreamHead>> StateOverlay::Head(
    absl::string_view stream_id) const {
  return Find(heads_, stream_id, [&] { return base_->Head(stream_id); });
}

absl::StatusOr<StoreRecord*> StateOverlay::MutableStore(
    absl::string_view store_id) {
  return Mutable(
      stores_, store_id, [&] { return base_->Store(store_id); },
      [&] { return std::string(store_id); });
}

absl::StatusOr<ProductRecord*> StateOverlay::MutableProduct(
    absl::string_view store_id, absl::string_view product_id) {
  return Mutable(
      products_, std::make_pair(store_id, product_id),
      [&] { return base_->Product(store_id, product_id); },
      [&] {
        return std::make_pair(std::string(store_id), std::string(product_id));
      });
}

absl::StatusOr<OrderRecord*> StateOverlay::MutableOrder(
    absl::string_view order_id) {
  return Mutable(
      orders_, order_id, [&] { return base_->Order(order_id); },
      [&] { return std::string(order_id); });
}

absl::StatusOr<WithdrawalRecord*> StateOverlay::MutableWithdrawal(
    absl::string_view withdrawal_id) {
  return Mutable(
      withdrawals_, withdrawal_id,
      [&] { return base_->Withdrawal(withdrawal_id); },
      [&] { return std::string(withdrawal_id); });
}

absl::StatusOr<MerchantRecord*> StateOverlay::MutableMerchant(
    absl::string_view merchant_id) {
  return Mutable(
      merchants_, merchant_id, [&] { return base_->Merchant(merchant_id); },
      [&] { return std::string(merchant_id); });
}

void StateOverlay::PutStore(StoreRecord record) {
  std::string id = record.store_id();
  stores_.insert_or_assign(std::move(id),
                           std::make_shared<StoreRecord>(std::move(record)));
}

void StateOverlay::PutProduct(ProductRecord record) {
  std::pair<std::string, std::string> key(record.store_id(),
                                          record.product_id());
  products_.insert_or_assign(
      std::move(key), std::make_shared<ProductRecord>(std::move(record)));
}

void StateOverlay::PutOrder(OrderRecord record) {
  std::string id = record.order_id();
  orders_.insert_or_assign(std::move(id),
                           std::make_shared<OrderRecord>(std::move(record)));
}

void StateOverlay::PutWithdrawal(WithdrawalRecord record) {
  std::string id = record.withdrawal_id();
  withdrawals_.insert_or_assign(
      std::move(id), std::make_shared<WithdrawalRecord>(std::move(record)));
}

void StateOverlay::PutMerchant(MerchantRecord record) {
  std::string id = record.merchant_id();
  merchants_.insert_or_assign(
      std::move(id), std::make_shared<MerchantRecord>(std::move(record)));
}

void StateOverlay::PutHead(absl::string_view stream_id, StreamHead head) {
  auto it = heads_.find(stream_id);
  if (it == heads_.end()) {
    heads_.emplace(std::string(stream_id),
                   std::make_shared<StreamHead>(std::move(head)));
  } else if (it->second.use_count() == 1) {
    *it->second = std::move(head);  // no one else holds it: reuse it
  } else {
    it->second = std::make_shared<StreamHead>(std::move(head));
  }
}

void StateOverlay::MergeFrom(const StateOverlay& other) {
  ShareInto(stores_, other.stores_);
  ShareInto(products_, other.products_);
  ShareInto(orders_, other.orders_);
  ShareInto(withdrawals_, other.withdrawals_);
  ShareInto(merchants_, other.merchants_);
  ShareInto(heads_, other.heads_);
}

void StateOverlay::MergeFrom(StateOverlay&& other) {
  MoveInto(stores_, other.stores_);
  MoveInto(products_, other.products_);
  MoveInto(orders_, other.orders_);
  MoveInto(withdrawals_, other.withdrawals_);
  MoveInto(merchants_, other.merchants_);
  MoveInto(heads_, other.heads_);
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
  StateChanges changes{std::move(stores_),    std::move(products_),
                       std::move(orders_),    std::move(withdrawals_),
                       std::move(merchants_), std::move(heads_)};
  Clear();  // a moved-from map is valid but unspecified: make it empty
  return changes;
}

}  // namespace storeledger
