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
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

using v1::MerchantRecord;
using v1::OrderRecord;
using v1::ProductRecord;
using v1::StoreKind;
using v1::StoreRecord;
using v1::StreamHead;
using v1::WithdrawalRecord;

// Read access to the current state. Absent records are std::nullopt; a
// non-ok status is an I/O or corruption error from the implementation.
// Lists are sorted by id. Implementations need not be thread-safe.
class StateReader {
 public:
  virtual ~StateReader() = default;
  virtual absl::StatusOr<std::optional<StoreRecord>> Store(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<std::optional<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const = 0;
  virtual absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<std::optional<OrderRecord>> Order(
      absl::string_view order_id) const = 0;
  virtual absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<std::optional<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const = 0;
  virtual absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const = 0;
  virtual absl::StatusOr<std::optional<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const = 0;
  // Ids of every store of `kind` (ApplyPolicy walks the mini stores).
  virtual absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const = 0;
  virtual absl::StatusOr<std::optional<StreamHead>> Head(
      absl::string_view stream_id) const = 0;
};

// A StateReader that never has anything: the base for folding from nothing.
const StateReader& EmptyState();

// The changed records of a StateOverlay, taken out of it.
struct StateChanges {
  std::map<std::string, StoreRecord> stores;
  std::map<std::pair<std::string, std::string>, ProductRecord> products;
  std::map<std::string, OrderRecord> orders;
  std::map<std::string, WithdrawalRecord> withdrawals;
  std::map<std::string, MerchantRecord> merchants;
  std::map<std::string, StreamHead> heads;
};

// Changes layered over a base reader. Reads see the changes first. The set of
// changed records is what gets written back (replay/ turns it into projection
// puts in the same WriteBatch as the events). Not thread-safe.
class StateOverlay : public StateReader {
 public:
  explicit StateOverlay(const StateReader* base) : base_(base) {}

  absl::StatusOr<std::optional<StoreRecord>> Store(
      absl::string_view store_id) const override;
  absl::StatusOr<std::optional<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const override;
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override;
  absl::StatusOr<std::optional<OrderRecord>> Order(
      absl::string_view order_id) const override;
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const override;
  absl::StatusOr<std::optional<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const override;
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const override;
  absl::StatusOr<std::optional<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const override;
  absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const override;
  absl::StatusOr<std::optional<StreamHead>> Head(
      absl::string_view stream_id) const override;

  void PutStore(StoreRecord record);
  void PutProduct(ProductRecord record);
  void PutOrder(OrderRecord record);
  void PutWithdrawal(WithdrawalRecord record);
  void PutMerchant(MerchantRecord record);
  void PutHead(std::string stream_id, StreamHead head);

  // The changed records, keyed by id (products by (store, product)).
  const std::map<std::string, StoreRecord>& stores() const { return stores_; }
  const std::map<std::pair<std::string, std::string>, ProductRecord>&
  products() const {
    return products_;
  }
  const std::map<std::string, OrderRecord>& orders() const { return orders_; }
  const std::map<std::string, WithdrawalRecord>& withdrawals() const {
    return withdrawals_;
  }
  const std::map<std::string, MerchantRecord>& merchants() const {
    return merchants_;
  }
  const std::map<std::string, StreamHead>& heads() const { return heads_; }

  // Folds the changes into this overlay's own maps only (used to chain
  // overlays in one batch): after MergeFrom(o), this reads as o did.
  void MergeFrom(const StateOverlay& other);
  void Clear();
  // Moves the changes out (no copy of a record) and leaves this overlay
  // empty, as Clear does: for a caller that keeps the records elsewhere
  // (replay/rebuild.cc).
  StateChanges TakeChanges();

 private:
  const StateReader* base_;
  std::map<std::string, StoreRecord> stores_;
  std::map<std::pair<std::string, std::string>, ProductRecord> products_;
  std::map<std::string, OrderRecord> orders_;
  std::map<std::string, WithdrawalRecord> withdrawals_;
  std::map<std::string, MerchantRecord> merchants_;
  std::map<std::string, StreamHead> heads_;
};

}  // namespace storeledger

#endif  // STORELEDGER_CORE_STATE_H_
