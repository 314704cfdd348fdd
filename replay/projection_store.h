// Projections: the records of core/state.h stored under their own keys in the
// "projections" column family, written in the same WriteBatch as the events
// that change them (so they are never behind or ahead of the log).
//
// Key layout: replay/projection_keys.h.
// Values are deterministic protobuf serializations, so a projection rebuilt
// from the log is byte-identical to the one maintained inline.
#ifndef STORELEDGER_REPLAY_PROJECTION_STORE_H_
#define STORELEDGER_REPLAY_PROJECTION_STORE_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/state.h"
#include "replay/projection_keys.h"
#include "storage/event_log.h"

namespace storeledger {

// Reads current state from the projections of an EventLog; stream heads come
// from the log itself. Not thread-safe beyond what EventLog guarantees.
// Reads the durable state (EventLog::ReadView) unless told otherwise, at one
// point pinned when the reader is made (EventLog::Pin), so that every record
// it reads agrees with every other: make one per question. Only the group
// commit, deciding against its own unsynced groups, reads kAppended (the
// database as written, at each read).
// A reader made with a `key_prefix` reads the records stored under that
// prefix before their keys (the rebuild's shadow space, replay/rebuild.h)
// and has no stream heads: Head() answers nullptr.
class ProjectionReader : public StateReader {
 public:
  explicit ProjectionReader(
      const EventLog* log,
      EventLog::ReadView view = EventLog::ReadView::kDurable,
      std::string key_prefix = "")
      : log_(log), at_(log->Pin(view)), key_prefix_(std::move(key_prefix)) {}

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
  // `key` under key_prefix_.
  std::string Key(std::string key) const;

  const EventLog* log_;
  EventLog::ReadPoint at_;
  const std::string key_prefix_;
};

// The projection writes for every record changed in `overlay` (stream heads
// excluded: the log keeps those). A record's index entry (the "k/", "O/"
// and "W/" keys of replay/projection_keys.h, empty values) never changes
// once written, since records are never deleted: with `existing`, the
// entries of the records it already has are left out.
using ProjectionPutList = std::vector<std::pair<std::string, std::string>>;
ProjectionPutList ProjectionPuts(const StateOverlay& overlay,
                                 const StateReader* existing = nullptr);

// The writes ProjectionPuts makes for one record, stored under its id(s),
// appended to *puts: for a caller that holds its records outside an overlay
// (replay/rebuild.cc), with the same bytes. `with_index`: the record's index
// entry too.
void AppendProjectionPuts(absl::string_view store_id, const StoreRecord& store,
                          ProjectionPutList* puts, bool with_index = true);
void AppendProjectionPuts(absl::string_view store_id,
                          absl::string_view product_id,
                          const ProductRecord& product,
                          ProjectionPutList* puts);
void AppendProjectionPuts(absl::string_view order_id, const OrderRecord& order,
                          ProjectionPutList* puts, bool with_index = true);
void AppendProjectionPuts(absl::string_view withdrawal_id,
                          const WithdrawalRecord& withdrawal,
                          ProjectionPutList* puts, bool with_index = true);
void AppendProjectionPuts(absl::string_view merchant_id,
                          const MerchantRecord& merchant,
                          ProjectionPutList* puts);

// EventLogOptions::derive_projections: the projection writes of the events
// after `after_position`, each folded (EvolveEnvelope) onto the projections
// as `log` holds them at `after_position` -- what an open adds back to the
// write-behind window a crash lost; `each` sees every envelope folded, in
// order. Store snapshots (replay/snapshots.h) are a cache and are not
// redone.
absl::Status DeriveProjections(const EventLog& log, uint64_t after_position,
                               const std::function<void(const Envelope&)>& each,
                               ProjectionPutList* puts);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_PROJECTION_STORE_H_
