// The state rules are decided against: records of stores, products, orders,
// withdrawals and merchants, plus stream heads. core/ reads it through
// StateReader (implemented over RocksDB by replay/, over memory by
// StateOverlay) and changes it only through StateOverlay, so it stays pure.
//
// Order and withdrawal ids are unique across the whole ledger (so a command
// naming an order under the wrong store is an R13 rejection, not a miss);
// product ids are unique per store (R9 copies keep their id).
#ifndef STORELEDGER_CORE_STATE_H_
#define STORELEDGER_CORE_STATE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

using v1::MerchantRecord;
using v1::OrderRecord;
using v1::ProductRecord;
using v1::StoreKind;
using v1::StoreRecord;
using v1::StreamHead;
using v1::WithdrawalRecord;

// A record as the state holds it: immutable and shared by every reader that
// holds it, so reading one costs a reference count, not a copy of the
// message. nullptr: the record does not exist.
template <typename Record>
using RecordRef = std::shared_ptr<const Record>;

// Read access to the current state. Absent records are nullptr; a non-ok
// status is an I/O or corruption error from the implementation. A returned
// record never changes (a change makes a new one), so it may be kept.
// Lists are sorted by id. Implementations need not be thread-safe.
class StateReader {
 public:
  virtual ~StateReader() = default;
  virtual absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const = 0;
  virtual absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view order_id) const = 0;
  virtual absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const = 0;
  virtual absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const = 0;
  // Ids of every store of `kind` (ApplyPolicy walks the mini stores).
  virtual absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const = 0;
  virtual absl::StatusOr<RecordRef<StreamHead>> Head(
      absl::string_view stream_id) const = 0;
};

// A StateReader that never has anything: the base for folding from nothing.
const StateReader& EmptyState();

// Orders (store id, product id) keys, and looks them up by string views
// without building strings.
struct ProductKeyLess {
  using is_transparent = void;
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    const int first = absl::string_view(a.first).compare(b.first);
    if (first != 0) return first < 0;
    return absl::string_view(a.second) < absl::string_view(b.second);
  }
};

// The changed records of an overlay, keyed by id (products by (store,
// product)). A record held here is this overlay's; it may also be shared
// with readers and other overlays (then a change copies it first).
template <typename Record>
using RecordMap = std::map<std::string, std::shared_ptr<Record>, std::less<>>;
using ProductMap = std::map<std::pair<std::string, std::string>,
                            std::shared_ptr<ProductRecord>, ProductKeyLess>;

// The changed records of a StateOverlay, taken out of it.
struct StateChanges {
  RecordMap<StoreRecord> stores;
  ProductMap products;
  RecordMap<OrderRecord> orders;
  RecordMap<WithdrawalRecord> withdrawals;
  RecordMap<MerchantRecord> merchants;
  RecordMap<StreamHead> heads;
};

// State that events can be folded into (Evolve's target): reads, plus
// records to change in place and new records to put. Implemented by
// StateOverlay (changes over a base reader) and by the rebuild's record
// cache (replay/rebuild.cc).
class MutableState : public StateReader {
 public:
  // The record to change in place, or nullptr when it does not exist. The
  // pointer is valid until the same record is next made mutable or put, or
  // the state is cleared; a reader's RecordRef of it taken in between keeps
  // the version it read (the next Mutable call then copies).
  virtual absl::StatusOr<StoreRecord*> MutableStore(
      absl::string_view store_id) = 0;
  virtual absl::StatusOr<ProductRecord*> MutableProduct(
      absl::string_view store_id, absl::string_view product_id) = 0;
  virtual absl::StatusOr<OrderRecord*> MutableOrder(
      absl::string_view order_id) = 0;
  virtual absl::StatusOr<WithdrawalRecord*> MutableWithdrawal(
      absl::string_view withdrawal_id) = 0;
  virtual absl::StatusOr<MerchantRecord*> MutableMerchant(
      absl::string_view merchant_id) = 0;

  // Records a record as it now is (a new one, or a replacement).
  virtual void PutStore(StoreRecord record) = 0;
  virtual void PutProduct(ProductRecord record) = 0;
  virtual void PutOrder(OrderRecord record) = 0;
  virtual void PutWithdrawal(WithdrawalRecord record) = 0;
  virtual void PutMerchant(MerchantRecord record) = 0;
  virtual void PutHead(absl::string_view stream_id, StreamHead head) = 0;
  // Whether Evolve records each stream's new head (PutHead). A state that
  // keeps no heads (the rebuild's: they live in the log) says false and is
  // spared building one per event. Default: true.
  virtual bool TracksHeads() const { return true; }
};

// Changes layered over a base reader. Reads see the changes first. The set of
// changed records is what gets written back (replay/ turns it into projection
// puts in the same WriteBatch as the events). Not thread-safe; a const
// overlay may be read from several threads.
//
// Records are copy-on-write: Mutable*() hands out this overlay's own copy of
// a record to change in place, copying it (once) from the base, or from a
// version a reader or another overlay still holds; a record no one else
// holds is changed where it is. So folding N events into one record costs
// at most one copy per overlay, not one per event.
class StateOverlay : public MutableState {
 public:
  explicit StateOverlay(const StateReader* base) : base_(base) {}

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

  absl::StatusOr<StoreRecord*> MutableStore(
      absl::string_view store_id) override;
  absl::StatusOr<ProductRecord*> MutableProduct(
      absl::string_view store_id, absl::string_view product_id) override;
  absl::StatusOr<OrderRecord*> MutableOrder(
      absl::string_view order_id) override;
  absl::StatusOr<WithdrawalRecord*> MutableWithdrawal(
      absl::string_view withdrawal_id) override;
  absl::StatusOr<MerchantRecord*> MutableMerchant(
      absl::string_view merchant_id) override;

  void PutStore(StoreRecord record) override;
  void PutProduct(ProductRecord record) override;
  void PutOrder(OrderRecord record) override;
  void PutWithdrawal(WithdrawalRecord record) override;
  void PutMerchant(MerchantRecord record) override;
  void PutHead(absl::string_view stream_id, StreamHead head) override;

  // The changed records, keyed by id (products by (store, product)). The
  // records are not to be changed through these.
  const RecordMap<StoreRecord>& stores() const { return stores_; }
  const ProductMap& products() const { return products_; }
  const RecordMap<OrderRecord>& orders() const { return orders_; }
  const RecordMap<WithdrawalRecord>& withdrawals() const {
    return withdrawals_;
  }
  const RecordMap<MerchantRecord>& merchants() const { return merchants_; }
  const RecordMap<StreamHead>& heads() const { return heads_; }

  // Folds the changes into this overlay's own maps only (used to chain
  // overlays in one batch): after MergeFrom(o), this reads as o did. The
  // records are shared, not copied; the rvalue form moves them.
  void MergeFrom(const StateOverlay& other);
  void MergeFrom(StateOverlay&& other);
  void Clear();
  // Moves the changes out (no copy of a record) and leaves this overlay
  // empty, as Clear does: for a caller that keeps the records elsewhere
  // (replay/rebuild.cc).
  StateChanges TakeChanges();

 private:
  const StateReader* base_;
  RecordMap<StoreRecord> stores_;
  ProductMap products_;
  RecordMap<OrderRecord> orders_;
  RecordMap<WithdrawalRecord> withdrawals_;
  RecordMap<MerchantRecord> merchants_;
  RecordMap<StreamHead> heads_;
};

}  // namespace storeledger

#endif  // STORELEDGER_CORE_STATE_H_
