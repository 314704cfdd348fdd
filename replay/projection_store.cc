#include "replay/projection_store.h"

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace storeledger {
namespace {

// Reads and parses one record; a value that does not parse is kDataLoss.
template <typename Record>
absl::StatusOr<RecordRef<Record>> ReadRecord(const EventLog* log,
                                             const EventLog::ReadPoint& at,
                                             const std::string& key) {
  ASSIGN_OR_RETURN(std::optional<std::string> bytes,
                   log->GetProjection(key, at));
  if (!bytes.has_value()) return nullptr;
  auto record = std::make_shared<Record>();
  if (!record->ParseFromString(*bytes)) {
    return absl::DataLossError(
        absl::StrCat("projection record ", absl::CEscape(key), " is corrupt"));
  }
  return RecordRef<Record>(std::move(record));
}

// All records under `prefix` (a scan, in key order).
template <typename Record>
absl::StatusOr<std::vector<Record>> ScanRecords(const EventLog* log,
                                                const EventLog::ReadPoint& at,
                                                const std::string& prefix) {
  std::vector<Record> out;
  absl::Status parse_status;
  RETURN_IF_ERROR(log->ScanProjections(
      prefix,
      [&](absl::string_view key, absl::string_view value) {
        Record record;
        if (!record.ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
          parse_status = absl::DataLossError(absl::StrCat(
              "projection record ", absl::CEscape(key), " is corrupt"));
          return false;
        }
        out.push_back(std::move(record));
        return true;
      },
      at));
  RETURN_IF_ERROR(parse_status);
  return out;
}

// The ids that follow `prefix` in index keys, in key order.
absl::StatusOr<std::vector<std::string>> ScanIds(const EventLog* log,
                                                 const EventLog::ReadPoint& at,
                                                 const std::string& prefix) {
  std::vector<std::string> ids;
  RETURN_IF_ERROR(log->ScanProjections(
      prefix,
      [&](absl::string_view key, absl::string_view) {
        ids.emplace_back(key.substr(prefix.size()));
        return true;
      },
      at));
  return ids;
}

}  // namespace

std::string ProjectionReader::Key(std::string key) const {
  if (key_prefix_.empty()) return key;
  return absl::StrCat(key_prefix_, key);
}

absl::StatusOr<RecordRef<StoreRecord>> ProjectionReader::Store(
    absl::string_view store_id) const {
  return ReadRecord<StoreRecord>(log_, at_, Key(StoreKey(store_id)));
}

absl::StatusOr<RecordRef<ProductRecord>> ProjectionReader::Product(
    absl::string_view store_id, absl::string_view product_id) const {
  return ReadRecord<ProductRecord>(log_, at_,
                                   Key(ProductKey(store_id, product_id)));
}

absl::StatusOr<std::vector<ProductRecord>> ProjectionReader::Products(
    absl::string_view store_id) const {
  return ScanRecords<ProductRecord>(log_, at_, Key(ProductsPrefix(store_id)));
}

absl::StatusOr<RecordRef<OrderRecord>> ProjectionReader::Order(
    absl::string_view order_id) const {
  return ReadRecord<OrderRecord>(log_, at_, Key(OrderKey(order_id)));
}

absl::StatusOr<std::vector<OrderRecord>> ProjectionReader::Orders(
    absl::string_view store_id) const {
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   ScanIds(log_, at_, Key(StoreOrdersPrefix(store_id))));
  std::vector<OrderRecord> out;
  out.reserve(ids.size());
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(RecordRef<OrderRecord> order, Order(id));
    if (order == nullptr) {
      return absl::DataLossError(
          absl::StrCat("order index names ", id, " in store ", store_id,
                       " but the order record is missing"));
    }
    out.push_back(*std::move(order));
  }
  return out;
}

absl::StatusOr<RecordRef<WithdrawalRecord>> ProjectionReader::Withdrawal(
    absl::string_view withdrawal_id) const {
  return ReadRecord<WithdrawalRecord>(log_, at_,
                                      Key(WithdrawalKey(withdrawal_id)));
}

absl::StatusOr<std::vector<WithdrawalRecord>> ProjectionReader::Withdrawals(
    absl::string_view store_id) const {
  ASSIGN_OR_RETURN(std::vector<std::string> ids,
                   ScanIds(log_, at_, Key(StoreWithdrawalsPrefix(store_id))));
  std::vector<WithdrawalRecord> out;
  out.reserve(ids.size());
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal, Withdrawal(id));
    if (withdrawal == nullptr) {
      return absl::DataLossError(
          absl::StrCat("withdrawal index names ", id, " in store ", store_id,
                       " but the withdrawal record is missing"));
    }
    out.push_back(*std::move(withdrawal));
  }
  return out;
}

absl::StatusOr<RecordRef<MerchantRecord>> ProjectionReader::Merchant(
    absl::string_view merchant_id) const {
  return ReadRecord<MerchantRecord>(log_, at_, Key(MerchantKey(merchant_id)));
}

absl::StatusOr<std::vector<std::string>> ProjectionReader::StoreIds(
    StoreKind kind) const {
  return ScanIds(log_, at_, Key(StoreKindPrefix(kind)));
}

absl::StatusOr<RecordRef<StreamHead>> ProjectionReader::Head(
    absl::string_view stream_id) const {
  if (!key_prefix_.empty()) return nullptr;  // heads are the log's
  ASSIGN_OR_RETURN(std::optional<StreamHead> head,
                   log_->GetStreamHead(stream_id, at_));
  if (!head.has_value()) return nullptr;
  return RecordRef<StreamHead>(std::make_shared<StreamHead>(*std::move(head)));
}

void AppendProjectionPuts(absl::string_view store_id, const StoreRecord& store,
                          ProjectionPutList* puts, bool with_index) {
  puts->emplace_back(StoreKey(store_id), SerializeDeterministic(store));
  // Idempotent index write: a store's kind never changes.
  if (with_index) puts->emplace_back(StoreKindKey(store.kind(), store_id), "");
}

void AppendProjectionPuts(absl::string_view store_id,
                          absl::string_view product_id,
                          const ProductRecord& product,
                          ProjectionPutList* puts) {
  puts->emplace_back(ProductKey(store_id, product_id),
                     SerializeDeterministic(product));
}

void AppendProjectionPuts(absl::string_view order_id, const OrderRecord& order,
                          ProjectionPutList* puts, bool with_index) {
  puts->emplace_back(OrderKey(order_id), SerializeDeterministic(order));
  if (with_index) {
    puts->emplace_back(StoreOrderKey(order.store_id(), order_id), "");
  }
}

void AppendProjectionPuts(absl::string_view withdrawal_id,
                          const WithdrawalRecord& withdrawal,
                          ProjectionPutList* puts, bool with_index) {
  puts->emplace_back(WithdrawalKey(withdrawal_id),
                     SerializeDeterministic(withdrawal));
  if (with_index) {
    puts->emplace_back(StoreWithdrawalKey(withdrawal.store_id(), withdrawal_id),
                       "");
  }
}

void AppendProjectionPuts(absl::string_view merchant_id,
                          const MerchantRecord& merchant,
                          ProjectionPutList* puts) {
  puts->emplace_back(MerchantKey(merchant_id),
                     SerializeDeterministic(merchant));
}

ProjectionPutList ProjectionPuts(const StateOverlay& overlay,
                                 const StateReader* existing) {
  // Whether a record's index entry is to be written: not when `existing`
  // has the record (after a failed lookup it is written again, which
  // changes nothing).
  auto with_index = [existing](const auto& lookup) {
    if (existing == nullptr) return true;
    const auto found = lookup(*existing);
    return !found.ok() || *found == nullptr;
  };
  ProjectionPutList puts;
  for (const auto& [id, store] : overlay.stores()) {
    AppendProjectionPuts(id, *store, &puts, with_index([&](const auto& r) {
                           return r.Store(id);
                         }));
  }
  for (const auto& [key, product] : overlay.products()) {
    AppendProjectionPuts(key.first, key.second, *product, &puts);
  }
  for (const auto& [id, order] : overlay.orders()) {
    AppendProjectionPuts(id, *order, &puts, with_index([&](const auto& r) {
                           return r.Order(id);
                         }));
  }
  for (const auto& [id, withdrawal] : overlay.withdrawals()) {
    AppendProjectionPuts(id, *withdrawal, &puts, with_index([&](const auto& r) {
                           return r.Withdrawal(id);
                         }));
  }
  for (const auto& [id, merchant] : overlay.merchants()) {
    AppendProjectionPuts(id, *merchant, &puts);
  }
  return puts;
}

absl::Status DeriveProjections(const EventLog& log, uint64_t after_position,
                               const std::function<void(const Envelope&)>& each,
                               ProjectionPutList* puts) {
  ProjectionReader base(&log, EventLog::ReadView::kAppended);
  StateOverlay folded(&base);
  absl::Status evolved;
  RETURN_IF_ERROR(log.Scan(after_position, [&](const Envelope& envelope,
                                               absl::string_view) {
    each(envelope);
    evolved = EvolveEnvelope(envelope, &folded);
    if (!evolved.ok()) {
      evolved = absl::Status(
          evolved.code(), absl::StrCat("fold of position ", envelope.position(),
                                       ": ", evolved.message()));
    }
    return evolved.ok();
  }));
  RETURN_IF_ERROR(evolved);
  *puts = ProjectionPuts(folded);
  return absl::OkStatus();
}

}  // namespace storeledger
