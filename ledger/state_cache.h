// StateCache: the records the append path reads, kept in memory between
// commands so that deciding a command on a recently used store, order or
// product does not go back to RocksDB and re-parse the record.
//
// It caches the point reads of StateReader (Store, Product, Order,
// Withdrawal, Merchant, Head), found and not found alike, in one LRU of at
// most `max_entries` entries; list reads (Products, Orders, Withdrawals,
// StoreIds) are rare on the append path (policy, upgrade, sync, snapshots)
// and go to the committed state every time. A record is typically 100-600
// bytes in memory, so the default of kStateCacheEntriesDefault entries holds
// the cache to a few tens of MB whatever the size of the log.
//
// The cache mirrors the committed state: the ledger's group-commit leader is
// the only writer, and it calls Apply with a group's changes only after the
// group is durable. Nothing else may write projections or stream heads while
// a ledger is open for writing (Clear() after anything that did).
//
// Not thread-safe: only the group-commit leader uses it.
#ifndef STORELEDGER_LEDGER_STATE_CACHE_H_
#define STORELEDGER_LEDGER_STATE_CACHE_H_

#include <cstddef>
#include <list>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "core/state.h"

namespace storeledger {

// About 30 MB of records at the sizes the simulator produces (measured by
// storeledger-bench --memory-events; see /README.md "Performance").
inline constexpr size_t kStateCacheEntriesDefault = 50'000;

class StateCache : public StateReader {
 public:
  // `committed` reads the state as written, synced or not (the group
  // commit's ProjectionReader, EventLog::ReadView::kAppended); not owned.
  StateCache(const StateReader* committed, size_t max_entries);

  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view store_id) const override;
  absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const override;
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override;
  absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view order_id) const override;
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const override;
  absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const override;
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const override;
  absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const override;
  absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const override;
  absl::StatusOr<RecordRef<StreamHead>> Head(
      absl::string_view stream_id) const override;

  // The records and stream heads `changes` holds are now the committed ones.
  void Apply(const StateOverlay& changes);
  // The stream's head changed in a way no overlay recorded (the rejections
  // stream): read it from the committed state next time.
  void ForgetHead(absl::string_view stream_id);
  void Clear();

  size_t size() const { return index_.size(); }
  size_t max_entries() const { return max_entries_; }

 private:
  // std::monostate: known absent. Records are shared with the readers that
  // hold them (so evicting one never pulls it from under a reader).
  using Value = std::variant<std::monostate, RecordRef<StoreRecord>,
                             RecordRef<ProductRecord>, RecordRef<OrderRecord>,
                             RecordRef<WithdrawalRecord>,
                             RecordRef<MerchantRecord>, RecordRef<StreamHead>>;
  using Entry = std::pair<std::string, Value>;

  // The cached value of `key`, moved to the front; nullptr when not cached.
  const Value* Find(const std::string& key) const;
  void Put(std::string key, Value value) const;
  void Erase(const std::string& key);

  // The cached record under `key`, else load() and cache what it returns.
  template <typename Record, typename Load>
  absl::StatusOr<RecordRef<Record>> Read(std::string key,
                                         const Load& load) const;

  const StateReader* committed_;
  size_t max_entries_;
  // Most recently used first. The index's keys view the list's strings.
  mutable std::list<Entry> lru_;
  mutable absl::flat_hash_map<absl::string_view, std::list<Entry>::iterator>
      index_;
};

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_STATE_CACHE_H_
