#include "ledger/state_cache.h"

#include "absl/strings/str_cat.h"

namespace storeledger {
namespace {

// Cache keys: a one-letter kind, then the id(s). A NUL separates store and
// product ids (ids are printable ASCII, R0).
std::string StoreCacheKey(absl::string_view id) {
  return absl::StrCat("s", id);
}
std::string ProductCacheKey(absl::string_view store,
                            absl::string_view product) {
  std::string key = absl::StrCat("p", store);
  key.push_back('\0');
  key.append(product.data(), product.size());
  return key;
}
std::string OrderCacheKey(absl::string_view id) {
  return absl::StrCat("o", id);
}
std::string WithdrawalCacheKey(absl::string_view id) {
  return absl::StrCat("w", id);
}
std::string MerchantCacheKey(absl::string_view id) {
  return absl::StrCat("m", id);
}
std::string HeadCacheKey(absl::string_view id) { return absl::StrCat("h", id); }

}  // namespace

StateCache::StateCache(const StateReader* committed, size_t max_entries)
    : committed_(committed), max_entries_(max_entries) {}

const StateCache::Value* StateCache::Find(const std::string& key) const {
  auto it = index_.find(absl::string_view(key));
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->second;
}

void StateCache::Put(std::string key, Value value) const {
  if (max_entries_ == 0) return;
  auto it = index_.find(absl::string_view(key));
  if (it != index_.end()) {
    it->second->second = std::move(value);
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  lru_.emplace_front(std::move(key), std::move(value));
  index_.emplace(absl::string_view(lru_.front().first), lru_.begin());
  while (index_.size() > max_entries_) {
    index_.erase(absl::string_view(lru_.back().first));
    lru_.pop_back();
  }
}

void StateCache::Erase(const std::string& key) {
  auto it = index_.find(absl::string_view(key));
  if (it == index_.end()) return;
  std::list<Entry>::iterator entry = it->second;
  index_.erase(it);
  lru_.erase(entry);
}

template <typename Record, typename Load>
absl::StatusOr<RecordRef<Record>> StateCache::Read(std::string key,
                                                   const Load& load) const {
  if (const Value* cached = Find(key)) {
    if (const auto* record = std::get_if<RecordRef<Record>>(cached)) {
      return *record;
    }
    return nullptr;
  }
  absl::StatusOr<RecordRef<Record>> loaded = load();
  if (!loaded.ok()) return loaded.status();
  if (*loaded != nullptr) {
    Put(std::move(key), Value(*loaded));
  } else {
    Put(std::move(key), Value());
  }
  return loaded;
}

absl::StatusOr<RecordRef<StoreRecord>> StateCache::Store(
    absl::string_view store_id) const {
  return Read<StoreRecord>(StoreCacheKey(store_id),
                           [&] { return committed_->Store(store_id); });
}

absl::StatusOr<RecordRef<ProductRecord>> StateCache::Product(
    absl::string_view store_id, absl::string_view product_id) const {
  return Read<ProductRecord>(ProductCacheKey(store_id, product_id), [&] {
    return committed_->Product(store_id, product_id);
  });
}

absl::StatusOr<std::vector<ProductRecord>> StateCache::Products(
    absl::string_view store_id) const {
  return committed_->Products(store_id);
}

absl::StatusOr<RecordRef<OrderRecord>> StateCache::Order(
    absl::string_view order_id) const {
  return Read<OrderRecord>(OrderCacheKey(order_id),
                           [&] { return committed_->Order(order_id); });
}

absl::StatusOr<std::vector<OrderRecord>> StateCache::Orders(
    absl::string_view store_id) const {
  return committed_->Orders(store_id);
}

absl::StatusOr<RecordRef<WithdrawalRecord>> StateCache::Withdrawal(
    absl::string_view withdrawal_id) const {
  return Read<WithdrawalRecord>(WithdrawalCacheKey(withdrawal_id), [&] {
    return committed_->Withdrawal(withdrawal_id);
  });
}

absl::StatusOr<std::vector<WithdrawalRecord>> StateCache::Withdrawals(
    absl::string_view store_id) const {
  return committed_->Withdrawals(store_id);
}

absl::StatusOr<RecordRef<MerchantRecord>> StateCache::Merchant(
    absl::string_view merchant_id) const {
  return Read<MerchantRecord>(MerchantCacheKey(merchant_id), [&] {
    return committed_->Merchant(merchant_id);
  });
}

absl::StatusOr<std::vector<std::string>> StateCache::StoreIds(
    StoreKind kind) const {
  return committed_->StoreIds(kind);
}

absl::StatusOr<RecordRef<StreamHead>> StateCache::Head(
    absl::string_view stream_id) const {
  return Read<StreamHead>(HeadCacheKey(stream_id),
                          [&] { return committed_->Head(stream_id); });
}

void StateCache::Apply(const StateOverlay& changes) {
  // The records are shared, not copied: the overlay's are final.
  for (const auto& [id, record] : changes.stores()) {
    Put(StoreCacheKey(id), Value(RecordRef<StoreRecord>(record)));
  }
  for (const auto& [key, record] : changes.products()) {
    Put(ProductCacheKey(key.first, key.second),
        Value(RecordRef<ProductRecord>(record)));
  }
  for (const auto& [id, record] : changes.orders()) {
    Put(OrderCacheKey(id), Value(RecordRef<OrderRecord>(record)));
  }
  for (const auto& [id, record] : changes.withdrawals()) {
    Put(WithdrawalCacheKey(id), Value(RecordRef<WithdrawalRecord>(record)));
  }
  for (const auto& [id, record] : changes.merchants()) {
    Put(MerchantCacheKey(id), Value(RecordRef<MerchantRecord>(record)));
  }
  for (const auto& [id, head] : changes.heads()) {
    Put(HeadCacheKey(id), Value(RecordRef<StreamHead>(head)));
  }
}

void StateCache::ForgetHead(absl::string_view stream_id) {
  Erase(HeadCacheKey(stream_id));
}

void StateCache::Clear() {
  index_.clear();
  lru_.clear();
}

}  // namespace storeledger
