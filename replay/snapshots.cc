// Per-store snapshots (replay/snapshots.h).
//
// A snapshot does not match the log when its position does not hold the
// stream version it names. Choosing a snapshot reads only the small
// SnapshotMeta records (snapmeta/), never the snapshots themselves.
//
// When: the append that takes a store's stream across a multiple of K
// (LedgerOptions::snapshot_every_events) writes a snapshot of that store in
// the same WriteBatch, provided the stream has grown by at least
// max(K, R) events since the store's latest snapshot, R being the number of
// records that snapshot holds. The second condition keeps the total size of
// a store's snapshots linear in its history even when the store's state
// grows with it (a shop that keeps every order): snapshots then come every
// ~R events, and a query reads at most one snapshot of R records and folds at
// most ~max(K, R) + K events -- proportional to the answer, not to history.

#include "replay/snapshots.h"

#include <algorithm>
#include <limits>
#include <map>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "core/streams.h"
#include "replay/projection_store.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

constexpr absl::string_view kStoreStreamPrefix = "store-";
// Deletes per WriteBatch when dropping snapshots: bounds the batch's memory.
constexpr uint64_t kDeleteBatchKeysMax = 10'000;

std::string StorePrefix(absl::string_view prefix, absl::string_view store_id) {
  std::string key = absl::StrCat(prefix, store_id);
  key.push_back('\0');
  return key;
}

uint64_t DecodeVersion(absl::string_view bytes) {
  uint64_t value = 0;
  for (char c : bytes) value = (value << 8) | static_cast<unsigned char>(c);
  return value;
}

bool Admits(const v1::SnapshotMeta& meta, std::optional<uint64_t> position_max,
            std::optional<absl::Time> business_time_max) {
  if (position_max.has_value() && meta.position() > *position_max) return false;
  if (business_time_max.has_value() &&
      ToTime(meta.occurred_at()) > *business_time_max) {
    return false;
  }
  return true;
}

// Reads the snapshot metas of one store, newest at or before a version.
// They are read once, through the log (EventLog::ScanProjections: what a
// log writing behind holds in memory included): one per K events of the
// store's stream, so a few thousand at most.
class MetaIndex {
 public:
  MetaIndex(const EventLog& log, absl::string_view store_id)
      : prefix_(StorePrefix(kSnapshotMetaPrefix, store_id)) {
    // As written (kAppended), as the RocksDB iterator read before: the
    // append path must see the snapshots of groups still awaiting a sync.
    loaded_ = log.ScanProjections(
        prefix_,
        [&](absl::string_view key, absl::string_view value) {
          metas_.emplace_back(std::string(key), std::string(value));
          return true;
        },
        EventLog::ReadView::kAppended);
  }

  // The newest meta with version <= `version`, or nullopt.
  absl::StatusOr<std::optional<v1::SnapshotMeta>> AtOrBefore(uint64_t version) {
    RETURN_IF_ERROR(loaded_);
    const std::string key = prefix_ + PositionKey(version);
    // The first meta past `key`, then the one before it.
    auto it = std::upper_bound(
        metas_.begin(), metas_.end(), key,
        [](const std::string& k, const auto& meta) { return k < meta.first; });
    if (it == metas_.begin()) return std::nullopt;
    --it;
    v1::SnapshotMeta meta;
    if (!meta.ParseFromString(it->second) ||
        meta.version() != DecodeVersion(absl::string_view(it->first).substr(
                              prefix_.size()))) {
      return absl::DataLossError(absl::StrCat(
          "snapshot meta ", absl::CEscape(it->first), " is corrupt"));
    }
    return meta;
  }

 private:
  std::string prefix_;
  absl::Status loaded_;
  // (key, value) in key order.
  std::vector<std::pair<std::string, std::string>> metas_;
};

// The last event of each store stream an append extends.
struct StoreStreamEnd {
  uint64_t first_version = 0;  // of this append's events in the stream
  uint64_t last_version = 0;
  uint64_t last_position = 0;
  google::protobuf::Timestamp occurred_at;
};

absl::StatusOr<std::optional<v1::StoreSnapshot>> ReadSnapshot(
    const EventLog& log, absl::string_view store_id, uint64_t version) {
  ASSIGN_OR_RETURN(std::optional<std::string> bytes,
                   log.GetProjection(SnapshotKey(store_id, version)));
  if (!bytes.has_value()) return std::nullopt;
  v1::StoreSnapshot snapshot;
  if (!snapshot.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat("snapshot of store ", store_id,
                                            " at version ", version,
                                            " does not parse"));
  }
  return snapshot;
}

// Does the log hold, at meta.position, version meta.version of the store's
// stream? (A snapshot is only as good as the event it claims to end at.)
absl::StatusOr<bool> MatchesLog(const EventLog& log, absl::string_view store_id,
                                const v1::SnapshotMeta& meta) {
  if (meta.position() == 0 || meta.position() > log.head().position) {
    return false;
  }
  ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(meta.position()));
  return envelope.stream_id() == StoreStream(store_id) &&
         envelope.stream_version() == meta.version() &&
         envelope.occurred_at().SerializeAsString() ==
             meta.occurred_at().SerializeAsString();
}

}  // namespace

std::string SnapshotKey(absl::string_view store_id, uint64_t version) {
  return StorePrefix(kSnapshotPrefix, store_id) + PositionKey(version);
}

std::string SnapshotMetaKey(absl::string_view store_id, uint64_t version) {
  return StorePrefix(kSnapshotMetaPrefix, store_id) + PositionKey(version);
}

absl::StatusOr<v1::StoreSnapshot> MakeSnapshot(const StateReader& state,
                                               absl::string_view store_id,
                                               v1::SnapshotMeta meta) {
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, state.Store(store_id));
  if (store == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("snapshot: store ", store_id, " not found"));
  }
  ASSIGN_OR_RETURN(std::vector<ProductRecord> products,
                   state.Products(store_id));
  ASSIGN_OR_RETURN(std::vector<OrderRecord> orders, state.Orders(store_id));
  ASSIGN_OR_RETURN(std::vector<WithdrawalRecord> withdrawals,
                   state.Withdrawals(store_id));
  v1::StoreSnapshot snapshot;
  meta.set_record_count(products.size() + orders.size() + withdrawals.size());
  *snapshot.mutable_meta() = std::move(meta);
  *snapshot.mutable_store() = *store;
  for (ProductRecord& product : products) {
    *snapshot.add_products() = std::move(product);
  }
  for (OrderRecord& order : orders) *snapshot.add_orders() = std::move(order);
  for (WithdrawalRecord& withdrawal : withdrawals) {
    *snapshot.add_withdrawals() = std::move(withdrawal);
  }
  return snapshot;
}

std::vector<std::pair<std::string, std::string>> SnapshotPuts(
    const v1::StoreSnapshot& snapshot) {
  const std::string& store_id = snapshot.store().store_id();
  const uint64_t version = snapshot.meta().version();
  return {
      {SnapshotKey(store_id, version), SerializeDeterministic(snapshot)},
      {SnapshotMetaKey(store_id, version),
       SerializeDeterministic(snapshot.meta())},
  };
}

void LoadSnapshot(const v1::StoreSnapshot& snapshot, StateOverlay* state) {
  state->PutStore(snapshot.store());
  for (const ProductRecord& product : snapshot.products()) {
    state->PutProduct(product);
  }
  for (const OrderRecord& order : snapshot.orders()) state->PutOrder(order);
  for (const WithdrawalRecord& withdrawal : snapshot.withdrawals()) {
    state->PutWithdrawal(withdrawal);
  }
  StreamHead head;
  head.set_version(snapshot.meta().version());
  *head.mutable_last_occurred_at() = snapshot.meta().occurred_at();
  state->PutHead(StoreStream(snapshot.store().store_id()), std::move(head));
}

absl::Status AddDueSnapshots(
    const EventLog& log, const StateReader& state_after,
    const std::vector<NewEvent>& events, uint64_t first_position,
    uint64_t every_events,
    std::vector<std::pair<std::string, std::string>>* puts) {
  if (every_events == 0) return absl::OkStatus();
  std::map<std::string, StoreStreamEnd> ends;
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::Envelope& envelope = events[i].envelope;
    if (!absl::StartsWith(envelope.stream_id(), kStoreStreamPrefix)) continue;
    if (events[i].expected_version < 0) {
      return absl::InternalError(
          absl::StrCat("snapshots: event for ", envelope.stream_id(),
                       " has no exact expected version"));
    }
    const uint64_t version =
        static_cast<uint64_t>(events[i].expected_version) + 1;
    auto [it, inserted] = ends.try_emplace(
        envelope.stream_id().substr(kStoreStreamPrefix.size()));
    if (inserted) it->second.first_version = version;
    it->second.last_version = version;
    it->second.last_position = first_position + i;
    it->second.occurred_at = envelope.occurred_at();
  }
  for (const auto& [store_id, end] : ends) {
    // Crossing a multiple of K is the cheap test done on every append; only
    // then is the latest snapshot looked up.
    if (end.last_version / every_events ==
        (end.first_version - 1) / every_events) {
      continue;
    }
    MetaIndex index(log, store_id);
    ASSIGN_OR_RETURN(std::optional<v1::SnapshotMeta> latest,
                     index.AtOrBefore(std::numeric_limits<uint64_t>::max()));
    if (latest.has_value()) {
      const uint64_t due_after =
          std::max<uint64_t>(every_events, latest->record_count());
      if (end.last_version < latest->version() + due_after) continue;
    }
    v1::SnapshotMeta meta;
    meta.set_version(end.last_version);
    meta.set_position(end.last_position);
    *meta.mutable_occurred_at() = end.occurred_at;
    ASSIGN_OR_RETURN(v1::StoreSnapshot snapshot,
                     MakeSnapshot(state_after, store_id, std::move(meta)));
    for (auto& put : SnapshotPuts(snapshot)) puts->push_back(std::move(put));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<v1::StoreSnapshot>> FindSnapshot(
    const EventLog& log, absl::string_view store_id,
    std::optional<uint64_t> position_max,
    std::optional<absl::Time> business_time_max) {
  MetaIndex index(log, store_id);
  // Admission is monotone in the version (positions grow with it, and R0
  // keeps a stream's business time from going backwards), so the newest
  // admitted snapshot is found by binary search over versions: O(log n)
  // seeks whatever the store's history.
  ASSIGN_OR_RETURN(std::optional<v1::SnapshotMeta> newest,
                   index.AtOrBefore(std::numeric_limits<uint64_t>::max()));
  if (!newest.has_value()) return std::nullopt;
  std::optional<v1::SnapshotMeta> best;
  uint64_t lo = 1;
  uint64_t hi = newest->version();
  while (lo <= hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    ASSIGN_OR_RETURN(std::optional<v1::SnapshotMeta> meta,
                     index.AtOrBefore(mid));
    if (!meta.has_value() || meta->version() < lo) {
      lo = mid + 1;  // no snapshot in [lo, mid]
    } else if (Admits(*meta, position_max, business_time_max)) {
      best = std::move(meta);
      lo = mid + 1;
    } else {
      if (meta->version() == 0) break;
      hi = meta->version() - 1;
    }
  }
  if (!best.has_value()) return std::nullopt;
  ASSIGN_OR_RETURN(std::optional<v1::StoreSnapshot> snapshot,
                   ReadSnapshot(log, store_id, best->version()));
  // A cache entry that is missing, torn or not about this log is passed
  // over: the caller folds from the start and gets the same answer.
  // VerifySnapshotSample is where such entries are reported.
  if (!snapshot.has_value() ||
      SerializeDeterministic(snapshot->meta()) !=
          SerializeDeterministic(*best) ||
      snapshot->store().store_id() != store_id) {
    return std::nullopt;
  }
  ASSIGN_OR_RETURN(bool matches, MatchesLog(log, store_id, *best));
  if (!matches) return std::nullopt;
  return snapshot;
}

absl::StatusOr<uint64_t> DeleteAllSnapshots(EventLog* log) {
  // Deleted in RocksDB itself: nothing of them may wait in memory.
  RETURN_IF_ERROR(log->WriteBehindNow());
  uint64_t deleted = 0;
  for (absl::string_view prefix : {kSnapshotPrefix, kSnapshotMetaPrefix}) {
    std::vector<std::string> keys;
    RETURN_IF_ERROR(log->ScanProjections(
        prefix, [&](absl::string_view key, absl::string_view) {
          keys.emplace_back(key);
          return true;
        }));
    for (size_t i = 0; i < keys.size(); i += kDeleteBatchKeysMax) {
      rocksdb::WriteBatch batch;
      for (size_t j = i; j < std::min(keys.size(), i + kDeleteBatchKeysMax);
           ++j) {
        RETURN_IF_ERROR(FromRocks(batch.Delete(log->projections_cf(), keys[j]),
                                  "delete snapshots"));
      }
      RETURN_IF_ERROR(
          FromRocks(log->db()->Write(rocksdb::WriteOptions(), &batch),
                    "delete snapshots"));
    }
    deleted += keys.size();
  }
  return deleted;
}

absl::Status VerifySnapshotSample(const EventLog& log, const Policy& /*policy*/,
                                  int sample) {
  if (sample <= 0) return absl::OkStatus();
  // (store, version) of every snapshot, from the small meta keys.
  std::vector<std::pair<std::string, uint64_t>> all;
  absl::Status key_status;
  RETURN_IF_ERROR(log.ScanProjections(
      kSnapshotMetaPrefix, [&](absl::string_view key, absl::string_view) {
        const absl::string_view rest = key.substr(kSnapshotMetaPrefix.size());
        // <store>\0<8 version bytes>; the version bytes may hold NULs too.
        constexpr size_t kVersionBytes = 8;
        const size_t nul = rest.size() - kVersionBytes - 1;
        if (rest.size() < kVersionBytes + 2 || rest[nul] != '\0') {
          key_status = absl::DataLossError(absl::StrCat(
              "snapshot meta key ", absl::CEscape(key), " is malformed"));
          return false;
        }
        all.emplace_back(std::string(rest.substr(0, nul)),
                         DecodeVersion(rest.substr(nul + 1)));
        return true;
      }));
  RETURN_IF_ERROR(key_status);
  if (all.empty()) return absl::OkStatus();
  const size_t count = std::min(all.size(), static_cast<size_t>(sample));
  for (size_t i = 0; i < count; ++i) {
    // Evenly spread, first and last included.
    const size_t index =
        count == 1 ? all.size() - 1 : i * (all.size() - 1) / (count - 1);
    const auto& [store_id, version] = all[index];
    auto mismatch = [&](absl::string_view what) {
      return absl::DataLossError(absl::StrCat(
          "snapshot of store ", store_id, " at version ", version, ": ", what));
    };
    ASSIGN_OR_RETURN(std::optional<std::string> meta_bytes,
                     log.GetProjection(SnapshotMetaKey(store_id, version)));
    v1::SnapshotMeta meta;
    if (!meta_bytes.has_value() || !meta.ParseFromString(*meta_bytes)) {
      return mismatch("its meta record does not parse");
    }
    ASSIGN_OR_RETURN(std::optional<v1::StoreSnapshot> snapshot,
                     ReadSnapshot(log, store_id, version));
    if (!snapshot.has_value())
      return mismatch("the snapshot record is missing");
    if (SerializeDeterministic(snapshot->meta()) != *meta_bytes) {
      return mismatch("the snapshot and its meta record disagree");
    }
    ASSIGN_OR_RETURN(bool matches, MatchesLog(log, store_id, meta));
    if (!matches) {
      return mismatch(absl::StrCat("position ", meta.position(),
                                   " does not hold this stream version"));
    }
    StateOverlay folded(&EmptyState());
    absl::Status evolve_status;
    RETURN_IF_ERROR(log.ScanStream(
        StoreStream(store_id), 0, [&](const v1::Envelope& envelope) {
          if (envelope.stream_version() > version) return false;
          evolve_status = EvolveEnvelope(envelope, &folded);
          return evolve_status.ok();
        }));
    RETURN_IF_ERROR(evolve_status);
    v1::SnapshotMeta expected_meta = meta;
    expected_meta.clear_record_count();
    ASSIGN_OR_RETURN(v1::StoreSnapshot expected,
                     MakeSnapshot(folded, store_id, std::move(expected_meta)));
    if (SerializeDeterministic(expected) != SerializeDeterministic(*snapshot)) {
      return mismatch(
          "its records differ from a fold of the stream from its first event");
    }
  }
  return absl::OkStatus();
}

}  // namespace storeledger
