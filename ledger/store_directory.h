// The store directory of a partitioned cluster (DESIGN.md §7,
// docs/cluster.md "Partitions"): which partition each store id was placed
// in, so that store ids are unique in the whole cluster. The ledger of a
// partition's leader asks it while it decides a command that creates a
// store (openStore's store, an upgrade's target); cluster/ implements it on
// a JetStream KV bucket.
//
// Deciding with a directory (Ledger, LedgerOptions::directory):
//   1. the id is a store of this ledger: decided as without a directory;
//   2. placed in another partition: decided as if a store of that id
//      existed here, so R1 / R8 refuse it with ALREADY_EXISTS in exactly
//      the words and order they use for a local store;
//   3. otherwise decided; accepted, the id is placed here (a create that
//      fails if the key exists) before the command's events are appended;
//      lost to another partition in a race, decided again as in 2.
// Every decision asks (a retried command that was never stored too); a
// command whose outcome is stored is answered from it and asks nothing. A
// directory that cannot answer fails the command with its status (nothing
// written). An entry whose command was then not stored (a crash, a refused
// publish) stays: it points to a partition that has no such store.
#ifndef STORELEDGER_LEDGER_STORE_DIRECTORY_H_
#define STORELEDGER_LEDGER_STORE_DIRECTORY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/state.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

class StoreDirectory {
 public:
  virtual ~StoreDirectory() = default;
  // True when `store_id` is placed in a partition other than this one.
  virtual absl::StatusOr<bool> PlacedElsewhere(absl::string_view store_id) = 0;
  // Places `store_id` in this partition unless it is placed already: true
  // when it is (now or before) placed here, false when elsewhere.
  virtual absl::StatusOr<bool> Place(absl::string_view store_id) = 0;
};

// The store id `command` creates (openStore's, an upgrade's target);
// nullptr for every other command.
const std::string* CreatedStoreId(const v1::Command& command);

// `base`, plus a store `store_id` (a record holding only its id) that
// exists elsewhere: what R1 and R8 are decided against for an id the
// directory placed in another partition.
class PlacedElsewhereState : public StateReader {
 public:
  PlacedElsewhereState(const StateReader* base, absl::string_view store_id);

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

 private:
  const StateReader* const base_;
  RecordRef<StoreRecord> elsewhere_;
};

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_STORE_DIRECTORY_H_
