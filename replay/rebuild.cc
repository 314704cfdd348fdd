// Rebuild (replay/rebuild.h).
//
// The log is streamed once, in position order. A reader thread iterates
// the events column family and checks every envelope (EventLog::ScanBatches:
// parse, chain, contiguity -- the checks of EventLog::Scan but the
// SHA-256, which the calling thread checks a batch at a time before it
// folds it); the calling thread folds the verified envelopes through
// EvolveEnvelope (the inline path's fold) into an in-memory cache of the
// records being rebuilt. A record not touched for a whole flush interval
// (`flush_every_events` events) is written to the *shadow* key space
// ("shadow/" + live key, in the projections column family; ProjectionPuts,
// so the bytes are the ones the inline path writes), key-sorted, as one
// ingested SST file per eviction (or WriteBatches for a small one), and
// dropped from memory; the rest are written at the end.
// Memory is bounded by the records touched in the last two flush intervals
// (plus a Bloom filter of ~1.2 bytes per record written), never by the
// length of the log.

#include "replay/rebuild.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "core/state.h"
#include "google/protobuf/util/message_differencer.h"
#include "replay/projection_keys.h"
#include "replay/projection_store.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/write_batch.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

static_assert(std::is_sorted(kProjectionRecordPrefixes.begin(),
                             kProjectionRecordPrefixes.end()),
              "CheckShadowGaps seeks the gaps between them in this order");
static_assert(std::all_of(kProjectionRecordPrefixes.begin(),
                          kProjectionRecordPrefixes.end(),
                          [](absl::string_view prefix) {
                            return prefix.size() == 2 && prefix[1] == '/';
                          }),
              "IsLiveProjectionKey looks at the first byte and a '/'");
// Events between two progress callbacks.
constexpr uint64_t kProgressEveryEvents = 1 << 16;
// The shadow SST file, in the database's directory, between its writing and
// its ingestion (a name RocksDB's own files never have).
constexpr char kShadowSstFile[] = "rebuild-shadow.sst";
// The successor of every key starting with `prefix` (prefix is never empty
// nor all 0xff here).
std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

// CPU seconds of the whole process so far (every thread).
double ProcessCpuSeconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + now.tv_nsec / 1e9;
}

std::string Shadow(absl::string_view key) {
  return absl::StrCat(kShadowPrefix, key);
}

// A Bloom filter over the records the rebuild has written to the shadow
// space (each once). The shadow space starts empty (DeleteShadow), so a record
// the filter has never seen is absent and needs no RocksDB read: every new
// order, withdrawal, product or store is such a miss (Evolve checks that it
// does not exist yet). ~1.2 bytes per record written (10 bits, 7 probes:
// ~1% false positives, which cost one read each), in filters of
// kFilterRecords records added one after another as records are written --
// memory follows the number of records, not of events.
class WrittenFilter {
 public:
  void Add(uint64_t hash) {
    if (filters_.empty() || filters_.back().records >= kFilterRecords) {
      filters_.emplace_back();
      filters_.back().bits.assign(kFilterBits / 64, 0);
    }
    Filter& filter = filters_.back();
    ForEachBit(hash, [&](uint64_t bit) {
      filter.bits[bit / 64] |= uint64_t{1} << (bit % 64);
      return true;
    });
    ++filter.records;
  }
  bool MayContain(uint64_t hash) const {
    for (const Filter& filter : filters_) {
      const bool all_set = ForEachBit(hash, [&](uint64_t bit) {
        return (filter.bits[bit / 64] >> (bit % 64) & 1) != 0;
      });
      if (all_set) return true;
    }
    return false;
  }
  size_t bytes() const { return filters_.size() * kFilterBits / 8; }

 private:
  static constexpr uint64_t kFilterRecords = 1 << 20;
  static constexpr uint64_t kFilterBits = kFilterRecords * 10;
  static constexpr int kProbes = 7;
  struct Filter {
    std::vector<uint64_t> bits;
    uint64_t records = 0;
  };
  // Double hashing: probe i is h1 + i * h2.
  template <typename Fn>
  static bool ForEachBit(uint64_t hash, Fn fn) {
    const uint64_t h2 = (hash >> 32 | hash << 32) | 1;
    for (int i = 0; i < kProbes; ++i) {
      if (!fn((hash + static_cast<uint64_t>(i) * h2) % kFilterBits)) {
        return false;
      }
    }
    return true;
  }
  std::vector<Filter> filters_;
};

enum RecordType : int {
  kStoreType,
  kProductType,
  kOrderType,
  kWithdrawalType,
  kMerchantType
};

uint64_t RecordHash(RecordType type, absl::string_view id,
                    absl::string_view second = absl::string_view()) {
  return absl::Hash<std::tuple<int, absl::string_view, absl::string_view>>()(
      std::make_tuple(static_cast<int>(type), id, second));
}

// The records the rebuild is folding, in memory, over the shadow space:
// the MutableState Evolve folds the log into, changing each record in place.
//
// A record stays here as long as the fold touches it; one that was not
// touched for a whole flush interval (flush_every_events) is written to the
// shadow space and dropped (Evict), and is read back from there (rarely) if
// a later event touches it again. So every record is serialized and written
// about once -- when it goes cold, or at the end -- instead of once per
// flush interval it is touched in; and memory holds only the records
// touched in the last two intervals: bounded by the flush interval, not by
// the log.
class RecordCache : public MutableState {
 public:
  RecordCache(EventLog* log, uint64_t sst_keys_min)
      : log_(log),
        shadow_(log, EventLog::ReadView::kAppended, std::string(kShadowPrefix)),
        sst_keys_min_(sst_keys_min) {}

  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view store_id) const override {
    return Lookup(
        stores_, store_id, [&] { return RecordHash(kStoreType, store_id); },
        [&] { return shadow_.Store(store_id); });
  }
  absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const override {
    return Lookup(
        products_, ProductCacheKey(store_id, product_id),
        [&] { return RecordHash(kProductType, store_id, product_id); },
        [&] { return shadow_.Product(store_id, product_id); });
  }
  absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view order_id) const override {
    return Lookup(
        orders_, order_id, [&] { return RecordHash(kOrderType, order_id); },
        [&] { return shadow_.Order(order_id); });
  }
  absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const override {
    return Lookup(
        withdrawals_, withdrawal_id,
        [&] { return RecordHash(kWithdrawalType, withdrawal_id); },
        [&] { return shadow_.Withdrawal(withdrawal_id); });
  }
  absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const override {
    return Lookup(
        merchants_, merchant_id,
        [&] { return RecordHash(kMerchantType, merchant_id); },
        [&] { return shadow_.Merchant(merchant_id); });
  }
  // The list reads (Evolve makes none) merge the cached records over what
  // the shadow space holds.
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override {
    ASSIGN_OR_RETURN(std::vector<ProductRecord> base,
                     shadow_.Products(store_id));
    return MergeList(std::move(base), products_, store_id,
                     [](const ProductRecord& r) { return r.product_id(); });
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const override {
    ASSIGN_OR_RETURN(std::vector<OrderRecord> base, shadow_.Orders(store_id));
    return MergeList(std::move(base), orders_, store_id,
                     [](const OrderRecord& r) { return r.order_id(); });
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const override {
    ASSIGN_OR_RETURN(std::vector<WithdrawalRecord> base,
                     shadow_.Withdrawals(store_id));
    return MergeList(
        std::move(base), withdrawals_, store_id,
        [](const WithdrawalRecord& r) { return r.withdrawal_id(); });
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const override {
    ASSIGN_OR_RETURN(std::vector<std::string> base, shadow_.StoreIds(kind));
    std::set<std::string> ids(base.begin(), base.end());
    for (const auto& [id, cached] : stores_) {
      if (cached.record->kind() == kind) ids.insert(id);
    }
    return std::vector<std::string>(ids.begin(), ids.end());
  }
  absl::StatusOr<RecordRef<StreamHead>> Head(absl::string_view) const override {
    return nullptr;  // stream heads live in the log
  }

  absl::StatusOr<StoreRecord*> MutableStore(
      absl::string_view store_id) override {
    return Change(
        stores_, store_id, [&] { return RecordHash(kStoreType, store_id); },
        [&] { return shadow_.Store(store_id); });
  }
  absl::StatusOr<ProductRecord*> MutableProduct(
      absl::string_view store_id, absl::string_view product_id) override {
    return Change(
        products_, ProductCacheKey(store_id, product_id),
        [&] { return RecordHash(kProductType, store_id, product_id); },
        [&] { return shadow_.Product(store_id, product_id); });
  }
  absl::StatusOr<OrderRecord*> MutableOrder(
      absl::string_view order_id) override {
    return Change(
        orders_, order_id, [&] { return RecordHash(kOrderType, order_id); },
        [&] { return shadow_.Order(order_id); });
  }
  absl::StatusOr<WithdrawalRecord*> MutableWithdrawal(
      absl::string_view withdrawal_id) override {
    return Change(
        withdrawals_, withdrawal_id,
        [&] { return RecordHash(kWithdrawalType, withdrawal_id); },
        [&] { return shadow_.Withdrawal(withdrawal_id); });
  }
  absl::StatusOr<MerchantRecord*> MutableMerchant(
      absl::string_view merchant_id) override {
    return Change(
        merchants_, merchant_id,
        [&] { return RecordHash(kMerchantType, merchant_id); },
        [&] { return shadow_.Merchant(merchant_id); });
  }

  void PutStore(StoreRecord record) override {
    Put(stores_, std::move(record),
        [](const StoreRecord& r) -> absl::string_view { return r.store_id(); });
  }
  void PutProduct(ProductRecord record) override {
    Put(products_, std::move(record), [&](const ProductRecord& r) {
      return ProductCacheKey(r.store_id(), r.product_id());
    });
  }
  void PutOrder(OrderRecord record) override {
    Put(orders_, std::move(record),
        [](const OrderRecord& r) -> absl::string_view { return r.order_id(); });
  }
  void PutWithdrawal(WithdrawalRecord record) override {
    Put(withdrawals_, std::move(record),
        [](const WithdrawalRecord& r) -> absl::string_view {
          return r.withdrawal_id();
        });
  }
  void PutMerchant(MerchantRecord record) override {
    Put(merchants_, std::move(record),
        [](const MerchantRecord& r) -> absl::string_view {
          return r.merchant_id();
        });
  }
  // Stream heads live in the log: none is kept, nor built (TracksHeads).
  void PutHead(absl::string_view, StreamHead) override {}
  bool TracksHeads() const override { return false; }

  // Writes the records not touched since the last Evict (all of them when
  // `all`) to the shadow space, in key order, and drops them. Adds the
  // number of projection keys written to *keys.
  absl::Status Evict(bool all, uint64_t* keys) {
    // The projection writes of each record, as ProjectionPuts makes them
    // (AppendProjectionPuts: the same bytes), under the record's own ids.
    puts_.clear();
    Take(stores_, all, [&](const StoreRecord& r) {
      AppendProjectionPuts(r.store_id(), r, &puts_);
      return RecordHash(kStoreType, r.store_id());
    });
    Take(products_, all, [&](const ProductRecord& r) {
      AppendProjectionPuts(r.store_id(), r.product_id(), r, &puts_);
      return RecordHash(kProductType, r.store_id(), r.product_id());
    });
    Take(orders_, all, [&](const OrderRecord& r) {
      AppendProjectionPuts(r.order_id(), r, &puts_);
      return RecordHash(kOrderType, r.order_id());
    });
    Take(withdrawals_, all, [&](const WithdrawalRecord& r) {
      AppendProjectionPuts(r.withdrawal_id(), r, &puts_);
      return RecordHash(kWithdrawalType, r.withdrawal_id());
    });
    Take(merchants_, all, [&](const MerchantRecord& r) {
      AppendProjectionPuts(r.merchant_id(), r, &puts_);
      return RecordHash(kMerchantType, r.merchant_id());
    });
    ++generation_;
    return WriteShadow(keys);
  }

  uint64_t reads_back() const { return reads_back_; }
  size_t cached() const {
    return stores_.size() + products_.size() + orders_.size() +
           withdrawals_.size() + merchants_.size();
  }
  size_t filter_bytes() const { return written_.bytes(); }

 private:
  // The products_ key of (store_id, product_id), built in a buffer reused
  // from one lookup to the next (valid until the next call).
  absl::string_view ProductCacheKey(absl::string_view store_id,
                                    absl::string_view product_id) const {
    product_key_.assign(store_id.data(), store_id.size());
    product_key_.push_back('\0');
    product_key_.append(product_id.data(), product_id.size());
    return product_key_;
  }

  template <typename Record>
  struct Cached {
    std::shared_ptr<Record> record;
    uint64_t generation = 0;  // the last interval that touched it
    bool dirty = false;       // changed since written to the shadow space
    bool in_shadow = false;   // written there before (so in the filter)
  };
  template <typename Record>
  using Map = absl::flat_hash_map<std::string, Cached<Record>>;

  // The cached entry under `key`, read back from the shadow space if it was
  // written there; nullptr when the record does not exist. hash() (the
  // record's RecordHash, for the filter) is computed on a miss only.
  template <typename Record, typename Hash, typename Load>
  absl::StatusOr<Cached<Record>*> Find(Map<Record>& map, absl::string_view key,
                                       const Hash& hash,
                                       const Load& load) const {
    auto it = map.find(key);
    if (it != map.end()) {
      it->second.generation = generation_;
      return &it->second;
    }
    if (!written_.MayContain(hash())) return nullptr;
    ASSIGN_OR_RETURN(RecordRef<Record> stored, load());
    ++reads_back_;
    if (stored == nullptr) return nullptr;
    Cached<Record>& cached = map[key];
    cached.record = std::make_shared<Record>(*stored);
    cached.generation = generation_;
    cached.in_shadow = true;
    return &cached;
  }

  template <typename Record, typename Hash, typename Load>
  absl::StatusOr<RecordRef<Record>> Lookup(Map<Record>& map,
                                           absl::string_view key,
                                           const Hash& hash,
                                           const Load& load) const {
    ASSIGN_OR_RETURN(Cached<Record> * cached, Find(map, key, hash, load));
    if (cached == nullptr) return nullptr;
    return RecordRef<Record>(cached->record);
  }

  // The record changed in place (copied first if a reader still holds it).
  template <typename Record, typename Hash, typename Load>
  absl::StatusOr<Record*> Change(Map<Record>& map, absl::string_view key,
                                 const Hash& hash, const Load& load) {
    ASSIGN_OR_RETURN(Cached<Record> * cached, Find(map, key, hash, load));
    if (cached == nullptr) return nullptr;
    if (cached->record.use_count() != 1) {
      cached->record = std::make_shared<Record>(*cached->record);
    }
    cached->dirty = true;
    return cached->record.get();
  }

  // The record moved into place first, so that its key is read from where
  // it now lives: the map copies the id once, no temporary copy before.
  template <typename Record, typename Key>
  void Put(Map<Record>& map, Record&& record, const Key& key) {
    std::shared_ptr<Record> placed =
        std::make_shared<Record>(std::move(record));
    Cached<Record>& cached = map[key(*placed)];
    cached.record = std::move(placed);
    cached.generation = generation_;
    cached.dirty = true;
  }

  // Drops the records of `map` not touched in this interval (all of them
  // when `all`), after write(record) -- which appends its projection writes
  // and returns its RecordHash -- for each that changed since it was last
  // written.
  template <typename Record, typename Write>
  void Take(Map<Record>& map, bool all, const Write& write) {
    for (auto it = map.begin(); it != map.end();) {
      if (!all && it->second.generation >= generation_) {
        ++it;
        continue;
      }
      if (it->second.dirty) {
        const uint64_t hash = write(*it->second.record);
        // Each record enters the filter once, however often it is written:
        // the filter grows with the records, not with the events.
        if (!it->second.in_shadow) written_.Add(hash);
      }
      map.erase(it++);
    }
  }

  template <typename Record, typename Id>
  static std::vector<Record> MergeList(std::vector<Record> base,
                                       const Map<Record>& cached,
                                       absl::string_view store_id, Id id) {
    std::map<std::string, Record> merged;
    for (Record& record : base) {
      std::string key = id(record);
      merged.insert_or_assign(std::move(key), std::move(record));
    }
    for (const auto& [key, entry] : cached) {
      if (entry.record->store_id() == store_id) {
        merged.insert_or_assign(id(*entry.record), *entry.record);
      }
    }
    std::vector<Record> out;
    out.reserve(merged.size());
    for (auto& [key, record] : merged) out.push_back(std::move(record));
    return out;
  }

  // A shadow key (in shadow_keys_) and its value (in puts_). `head` holds
  // the key's first 16 bytes after the shadow prefix, big-endian, zero
  // padded: comparing two of them orders most pairs of keys without
  // reading the keys (the sort of an eviction makes ~15 comparisons per
  // key); equal heads fall back to comparing the keys.
  struct ShadowPut {
    std::array<uint64_t, 2> head;
    absl::string_view key;
    const std::string* value;
    bool operator<(const ShadowPut& other) const {
      if (head != other.head) return head < other.head;
      return key < other.key;
    }
  };
  static std::array<uint64_t, 2> KeyHead(absl::string_view live_key) {
    std::array<uint64_t, 2> head = {0, 0};
    const size_t size = std::min<size_t>(live_key.size(), 16);
    for (size_t i = 0; i < size; ++i) {
      head[i / 8] |= uint64_t{static_cast<unsigned char>(live_key[i])}
                     << (56 - 8 * (i % 8));
    }
    return head;
  }

  // The projection writes in puts_, sorted, to the shadow space: as one
  // SST file ingested into the projections column family when there are at
  // least sst_keys_min of them, otherwise in WriteBatches of at most
  // kRebuildSwapBatchKeysMax keys (RocksDB inserts keys that follow each
  // other into its memtable cheaply).
  absl::Status WriteShadow(uint64_t* keys) {
    // Every shadow key ("shadow/" + live key) laid end to end in one
    // buffer, sorted as views into it: the comparisons read memory that
    // lies together, and the writers take the keys as they are.
    shadow_keys_.clear();
    for (const auto& [live_key, value] : puts_) {
      if (!IsLiveProjectionKey(live_key)) {
        return absl::InternalError(absl::StrCat(
            "rebuild: ProjectionPuts wrote key ", absl::CEscape(live_key),
            " outside the record prefixes of replay/projection_keys.h; add "
            "it to kProjectionRecordPrefixes"));
      }
      shadow_keys_.append(kShadowPrefix.data(), kShadowPrefix.size());
      shadow_keys_.append(live_key);
    }
    std::vector<ShadowPut> sorted;
    sorted.reserve(puts_.size());
    size_t offset = 0;
    for (const auto& [live_key, value] : puts_) {
      const size_t size = kShadowPrefix.size() + live_key.size();
      sorted.push_back({KeyHead(live_key),
                        absl::string_view(shadow_keys_).substr(offset, size),
                        &value});
      offset += size;
    }
    std::sort(sorted.begin(), sorted.end());
    *keys += sorted.size();
    if (!sorted.empty() && sorted.size() >= sst_keys_min_) {
      return IngestShadow(sorted);
    }
    // The shadow space is scratch, cleared at the start of every run: after
    // a crash it may be lost or left behind, never trusted. So no WAL for it
    // -- which also spares the next open replaying it.
    rocksdb::WriteOptions options;
    options.disableWAL = true;
    rocksdb::WriteBatch batch;
    for (const ShadowPut& put : sorted) {
      RETURN_IF_ERROR(FromRocks(
          batch.Put(log_->projections_cf(),
                    rocksdb::Slice(put.key.data(), put.key.size()), *put.value),
          "rebuild"));
      if (static_cast<uint64_t>(batch.Count()) >= kRebuildSwapBatchKeysMax) {
        RETURN_IF_ERROR(FromRocks(log_->db()->Write(options, &batch),
                                  "rebuild: write shadow records"));
        batch.Clear();
      }
    }
    if (batch.Count() == 0) return absl::OkStatus();
    return FromRocks(log_->db()->Write(options, &batch),
                     "rebuild: write shadow records");
  }

  // `puts` (sorted by key, no key twice) as one SST file in the database's
  // directory, moved into the projections column family. The file is
  // scratch like the space it fills: one name, reused (a crash may leave it
  // behind; the next run overwrites it).
  absl::Status IngestShadow(const std::vector<ShadowPut>& puts) {
    rocksdb::Options options = log_->db()->GetOptions(log_->projections_cf());
    // Read once (the comparison) and deleted: not worth compressing.
    options.compression = rocksdb::kNoCompression;
    options.bottommost_compression = rocksdb::kDisableCompressionOption;
    // invalidate_page_cache false: the comparison reads the file soon.
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options,
                                  log_->projections_cf(),
                                  /*invalidate_page_cache=*/false);
    const std::string path = log_->db()->GetName() + "/" + kShadowSstFile;
    RETURN_IF_ERROR(FromRocks(writer.Open(path), "rebuild: open shadow SST"));
    for (const ShadowPut& put : puts) {
      // SstFileWriter refuses a key not after the one before: a key
      // ProjectionPuts wrote twice surfaces here.
      RETURN_IF_ERROR(
          FromRocks(writer.Put(rocksdb::Slice(put.key.data(), put.key.size()),
                               *put.value),
                    "rebuild: write shadow SST"));
    }
    RETURN_IF_ERROR(FromRocks(writer.Finish(), "rebuild: finish shadow SST"));
    rocksdb::IngestExternalFileOptions ingest;
    ingest.move_files = true;  // a hard link, no copy
    return FromRocks(
        log_->db()->IngestExternalFile(log_->projections_cf(), {path}, ingest),
        "rebuild: ingest shadow SST");
  }

  EventLog* log_;
  // The shadow space as written (no WAL, never through an append):
  // EventLog::ReadView::kAppended, no snapshot.
  ProjectionReader shadow_;
  const uint64_t sst_keys_min_;
  ProjectionPutList puts_;   // one eviction's writes (Evict, WriteShadow)
  std::string shadow_keys_;  // their shadow keys, end to end (WriteShadow)
  // Lookups are const (StateReader); they record the touch and cache what
  // they read back.
  mutable Map<StoreRecord> stores_;
  mutable Map<ProductRecord> products_;  // key: store \0 product
  mutable Map<OrderRecord> orders_;
  mutable Map<WithdrawalRecord> withdrawals_;
  mutable Map<MerchantRecord> merchants_;
  mutable std::string product_key_;  // ProductCacheKey's buffer
  WrittenFilter written_;
  uint64_t generation_ = 1;
  mutable uint64_t reads_back_ = 0;
};

// Verified batches of envelopes from the reader thread to the fold. Bounded
// (kQueueBatches): a slow fold holds the reader back. Spent batches go back
// to the reader, which clears them (frees their arenas) as it fills them
// again: freeing is the reader's work, not the fold's, and after the first
// kQueueBatches batches no arena is allocated again.
class BatchQueue {
 public:
  // Reader. Hands *batch over and gives back a spent one (or an empty one).
  // False when the fold has stopped: the reader should stop too.
  bool Push(EnvelopeBatch* batch) {
    std::unique_lock<std::mutex> lock(mu_);
    room_.wait(lock, [&] { return ready_.size() < kQueueBatches || stopped_; });
    if (stopped_) return false;
    ready_.push_back(std::move(*batch));
    if (!spent_.empty()) {
      *batch = std::move(spent_.back());
      spent_.pop_back();
    } else {
      *batch = EnvelopeBatch();
    }
    filled_.notify_one();
    return true;
  }
  // Reader: no more batches; `status` is the scan's.
  void Close(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    status_ = std::move(status);
    filled_.notify_all();
  }
  // Fold: replaces *batch (which it is done with) by the next one. False at
  // the end of the scan (status() says how it ended).
  bool Pop(EnvelopeBatch* batch) {
    std::unique_lock<std::mutex> lock(mu_);
    filled_.wait(lock, [&] { return !ready_.empty() || closed_; });
    if (!batch->empty() && spent_.size() < kQueueBatches) {
      spent_.push_back(std::move(*batch));
    }
    if (ready_.empty()) return false;
    *batch = std::move(ready_.front());
    ready_.pop_front();
    room_.notify_one();
    return true;
  }
  // Fold: stop the reader (an error, or the end).
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    room_.notify_all();
  }
  absl::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  static constexpr size_t kQueueBatches = 16;
  std::mutex mu_;
  std::condition_variable room_, filled_;
  std::deque<EnvelopeBatch> ready_;
  std::vector<EnvelopeBatch> spent_;
  bool closed_ = false, stopped_ = false;
  absl::Status status_;
};

absl::Status DeleteShadow(EventLog* log) {
  const std::string begin(kShadowPrefix);
  const std::string end = PrefixEnd(kShadowPrefix);
  return FromRocks(log->db()->DeleteRange(rocksdb::WriteOptions(),
                                          log->projections_cf(), begin, end),
                   "rebuild: clear the shadow space");
}

// Pauses RocksDB's automatic compactions of the projections column family
// for the life of this object. The shadow records are scratch, written once
// and deleted at the end of the run: compacting them (which also rewrites
// the live records whose key range they fall in) only takes a core from the
// rebuild -- a fifth of its CPU at 5 million events. With compactions off
// RocksDB does not stall writes on the number of L0 files either (it does on
// memtables, which stay bounded). The setting is restored when the run ends,
// even on error; a crash leaves nothing behind, since EventLog::Open passes
// its column family options explicitly.
class CompactionPause {
 public:
  explicit CompactionPause(EventLog* log) : log_(log) {
    const bool was_disabled =
        log->db()->GetOptions(log->projections_cf()).disable_auto_compactions;
    paused_ = !was_disabled &&
              log->db()
                  ->SetOptions(log->projections_cf(),
                               {{"disable_auto_compactions", "true"}})
                  .ok();
  }
  ~CompactionPause() {
    if (paused_) {
      // Nothing to do on failure: the database works either way, and the
      // next open starts from EventLog's own options.
      log_->db()
          ->SetOptions(log_->projections_cf(),
                       {{"disable_auto_compactions", "false"}})
          .PermitUncheckedError();
    }
  }
  CompactionPause(const CompactionPause&) = delete;
  CompactionPause& operator=(const CompactionPause&) = delete;

 private:
  EventLog* log_;
  bool paused_ = false;
};

// The record type stored under a live key, for the difference report.
const google::protobuf::Message* RecordPrototype(absl::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 's':
      return &StoreRecord::default_instance();
    case 'p':
      return &ProductRecord::default_instance();
    case 'o':
      return &OrderRecord::default_instance();
    case 'w':
      return &WithdrawalRecord::default_instance();
    case 'm':
      return &MerchantRecord::default_instance();
    default:
      return nullptr;  // k/ O/ W/: index entries with empty values
  }
}

// What differs between the rebuilt and the live value, field by field.
std::string DescribeDifference(absl::string_view key, absl::string_view rebuilt,
                               absl::string_view live) {
  const google::protobuf::Message* prototype = RecordPrototype(key);
  if (prototype == nullptr) {
    return absl::StrCat("index value: rebuilt \"", absl::CEscape(rebuilt),
                        "\", live \"", absl::CEscape(live), "\"");
  }
  std::unique_ptr<google::protobuf::Message> want(prototype->New());
  std::unique_ptr<google::protobuf::Message> have(prototype->New());
  if (!want->ParseFromArray(rebuilt.data(), static_cast<int>(rebuilt.size()))) {
    return "rebuilt value does not parse";  // cannot happen: we wrote it
  }
  if (!have->ParseFromArray(live.data(), static_cast<int>(live.size()))) {
    return absl::StrCat("live value does not parse as ",
                        prototype->GetDescriptor()->name());
  }
  std::string report;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&report);
  if (differencer.Compare(*want, *have)) {
    // Same fields, different bytes: not the deterministic serialization.
    return "same fields, but the live bytes are not the deterministic "
           "serialization";
  }
  // The report reads "modified: paid_fen: 100 -> 200" with rebuilt first.
  while (!report.empty() && report.back() == '\n') report.pop_back();
  absl::StrReplaceAll({{"\n", "; "}}, &report);
  return absl::StrCat("rebuilt -> live: ", report);
}

class RebuildRun {
 public:
  RebuildRun(EventLog* log, const RebuildOptions& options)
      : log_(log), options_(options) {}

  absl::StatusOr<v1::RebuildSummary> Run() {
    const absl::Time started = absl::Now();
    const double cpu_started = ProcessCpuSeconds();
    summary_.set_shadow(options_.shadow_only);
    double seconds = 0;
    {
      CompactionPause pause(log_);
      RETURN_IF_ERROR(DeleteShadow(log_));  // leftovers of an interrupted run
      RETURN_IF_ERROR(Replay());
      seconds = absl::ToDoubleSeconds(absl::Now() - started);
      if (options_.stats != nullptr) {
        options_.stats->replay_seconds = seconds;
        options_.stats->replay_cpu_seconds = ProcessCpuSeconds() - cpu_started;
      }
      RETURN_IF_ERROR(CompareAndSwap());
    }
    RETURN_IF_ERROR(DeleteShadow(log_));
    summary_.set_seconds(absl::ToDoubleSeconds(absl::Now() - started));
    summary_.set_events_per_second(
        seconds > 0 ? static_cast<double>(summary_.events_replayed()) / seconds
                    : 0);
    return summary_;
  }

 private:
  absl::Status Replay() {
    const uint64_t total = log_->head().position;
    const uint64_t flush_every =
        options_.flush_every_events == 0 ? 1 : options_.flush_every_events;
    RecordCache cache(log_, options_.sst_keys_min);
    uint64_t events = 0, since_flush = 0, keys = 0;
    uint64_t cached_max = 0;

    // Folds one verified batch; false (with `fold_status`) on an error.
    absl::Status fold_status;
    auto fold = [&](const EnvelopeBatch& batch) {
      for (size_t i = 0; i < batch.size(); ++i) {
        const Envelope& envelope = batch[i];
        fold_status = EvolveEnvelope(envelope, &cache);
        if (!fold_status.ok()) {
          fold_status = absl::Status(
              fold_status.code(),
              absl::StrCat("rebuild at position ", envelope.position(), ": ",
                           fold_status.message()));
          return false;
        }
        ++events;
        if (++since_flush >= flush_every) {
          since_flush = 0;
          cached_max = std::max<uint64_t>(cached_max, cache.cached());
          fold_status = cache.Evict(/*all=*/false, &keys);
          if (!fold_status.ok()) return false;
        }
        if (options_.progress && events % kProgressEveryEvents == 0) {
          options_.progress(events, total);
        }
      }
      return true;
    };

    if (options_.verify_on_second_thread) {
      BatchQueue queue;
      // The reader reads, parses and checks positions and the chain; the
      // SHA-256 of each envelope is checked here, a batch at a time before
      // any of it is folded (BatchHashes::kByConsumer): hashing is a fifth
      // of the reader's work, which left alone is the slower of the two.
      std::thread reader([&] {
        queue.Close(log_->ScanBatches(
            0, kEnvelopeBatchEvents,
            [&](EnvelopeBatch* batch) { return queue.Push(batch); },
            BatchHashes::kByConsumer));
      });
      EnvelopeBatch batch;
      while (queue.Pop(&batch)) {
        fold_status = batch.VerifyHashes();
        if (!fold_status.ok() || !fold(batch)) break;
      }
      queue.Stop();
      reader.join();
      RETURN_IF_ERROR(fold_status);
      RETURN_IF_ERROR(queue.status());
    } else {
      RETURN_IF_ERROR(log_->ScanBatches(
          0, kEnvelopeBatchEvents,
          [&](EnvelopeBatch* batch) { return fold(*batch); }));
      RETURN_IF_ERROR(fold_status);
    }
    cached_max = std::max<uint64_t>(cached_max, cache.cached());
    RETURN_IF_ERROR(cache.Evict(/*all=*/true, &keys));
    if (options_.progress) options_.progress(events, total);
    summary_.set_events_replayed(events);
    if (options_.stats != nullptr) {
      options_.stats->shadow_keys_written = keys;
      options_.stats->reads_back = cache.reads_back();
      options_.stats->cached_records_max = cached_max;
      options_.stats->filter_bytes = cache.filter_bytes();
    }
    return absl::OkStatus();
  }

  // Walks live and shadow keys of each record prefix side by side.
  absl::Status CompareAndSwap() {
    RETURN_IF_ERROR(CheckShadowGaps());
    for (absl::string_view prefix : kProjectionRecordPrefixes) {
      RETURN_IF_ERROR(ComparePrefix(prefix));
    }
    summary_.set_records_rebuilt(records_rebuilt_);
    return WriteBatchNow(/*last=*/true);
  }

  // Nothing but live prefixes may sit in the shadow space (WriteShadow
  // checks what it writes; this checks what it finds): the gaps around and
  // between the live prefixes' ranges in it are empty. One seek per gap
  // (kProjectionRecordPrefixes is in byte order), not a scan of every shadow
  // key; the comparison walks, and counts, what is inside the ranges.
  absl::Status CheckShadowGaps() {
    const std::string shadow_end = PrefixEnd(kShadowPrefix);
    std::unique_ptr<rocksdb::Iterator> it =
        Iterate(std::string(kShadowPrefix), shadow_end);
    std::string gap_begin(kShadowPrefix);
    for (size_t i = 0; i <= kProjectionRecordPrefixes.size(); ++i) {
      const std::string gap_end = i < kProjectionRecordPrefixes.size()
                                      ? Shadow(kProjectionRecordPrefixes[i])
                                      : shadow_end;
      it->Seek(gap_begin);
      if (it->Valid() && View(it->key()) < gap_end) {
        return absl::InternalError(absl::StrCat(
            "rebuild: unexpected shadow key ", absl::CEscape(View(it->key()))));
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "rebuild: scan rebuilt"));
      if (i < kProjectionRecordPrefixes.size()) gap_begin = PrefixEnd(gap_end);
    }
    return absl::OkStatus();
  }

  absl::Status ComparePrefix(absl::string_view prefix) {
    const std::string live_begin(prefix);
    const std::string live_end = PrefixEnd(prefix);
    const std::string shadow_begin = Shadow(prefix);
    const std::string shadow_end = PrefixEnd(shadow_begin);
    std::unique_ptr<rocksdb::Iterator> live = Iterate(live_begin, live_end);
    std::unique_ptr<rocksdb::Iterator> rebuilt =
        Iterate(shadow_begin, shadow_end);
    live->Seek(live_begin);
    rebuilt->Seek(shadow_begin);
    while (live->Valid() || rebuilt->Valid()) {
      const absl::string_view rebuilt_key =
          rebuilt->Valid() ? View(rebuilt->key()).substr(kShadowPrefix.size())
                           : absl::string_view();
      const absl::string_view live_key =
          live->Valid() ? View(live->key()) : absl::string_view();
      if (!live->Valid() || (rebuilt->Valid() && rebuilt_key < live_key)) {
        RETURN_IF_ERROR(Differ(rebuilt_key, "missing from live", "",
                               View(rebuilt->value())));
        ++records_rebuilt_;
        rebuilt->Next();
      } else if (!rebuilt->Valid() || live_key < rebuilt_key) {
        RETURN_IF_ERROR(
            Differ(live_key, "not derived from the log", "", std::nullopt));
        live->Next();
      } else {
        if (View(live->value()) != View(rebuilt->value())) {
          RETURN_IF_ERROR(
              Differ(live_key, "value differs",
                     DescribeDifference(live_key, View(rebuilt->value()),
                                        View(live->value())),
                     View(rebuilt->value())));
        }
        ++records_rebuilt_;
        live->Next();
        rebuilt->Next();
      }
    }
    RETURN_IF_ERROR(FromRocks(live->status(), "rebuild: scan live"));
    return FromRocks(rebuilt->status(), "rebuild: scan rebuilt");
  }

  // Records one difference; unless comparing only, queues the repair: put
  // the rebuilt value, or delete the live key (`rebuilt` absent).
  absl::Status Differ(absl::string_view live_key, absl::string_view problem,
                      absl::string_view detail,
                      std::optional<absl::string_view> rebuilt) {
    summary_.set_differences(summary_.differences() + 1);
    if (options_.on_difference) {
      v1::ProjectionDifference difference;
      difference.set_key(absl::CEscape(live_key));
      const google::protobuf::Message* prototype = RecordPrototype(live_key);
      difference.set_record(
          prototype == nullptr ? "index" : prototype->GetDescriptor()->name());
      difference.set_problem(std::string(problem));
      difference.set_detail(std::string(detail));
      options_.on_difference(difference);
    }
    if (options_.shadow_only) return absl::OkStatus();
    const rocksdb::Slice key(live_key.data(), live_key.size());
    if (rebuilt.has_value()) {
      RETURN_IF_ERROR(FromRocks(
          batch_.Put(log_->projections_cf(), key,
                     rocksdb::Slice(rebuilt->data(), rebuilt->size())),
          "rebuild"));
      summary_.set_keys_written(summary_.keys_written() + 1);
    } else {
      RETURN_IF_ERROR(
          FromRocks(batch_.Delete(log_->projections_cf(), key), "rebuild"));
      summary_.set_keys_deleted(summary_.keys_deleted() + 1);
    }
    if (static_cast<uint64_t>(batch_.Count()) >= kRebuildSwapBatchKeysMax) {
      return WriteBatchNow(/*last=*/false);
    }
    return absl::OkStatus();
  }

  // The iterators read from an implicit snapshot taken when they were made,
  // so repairs written while walking do not disturb the walk.
  absl::Status WriteBatchNow(bool last) {
    if (batch_.Count() == 0) return absl::OkStatus();
    rocksdb::WriteOptions options;
    options.sync = last;
    RETURN_IF_ERROR(FromRocks(log_->db()->Write(options, &batch_),
                              "rebuild: write live projections"));
    batch_.Clear();
    return absl::OkStatus();
  }

  std::unique_ptr<rocksdb::Iterator> Iterate(const std::string& begin,
                                             const std::string& end) {
    bounds_.emplace_back(std::make_unique<Bounds>(begin, end));
    rocksdb::ReadOptions read_options;
    read_options.iterate_lower_bound = &bounds_.back()->lower;
    read_options.iterate_upper_bound = &bounds_.back()->upper;
    return std::unique_ptr<rocksdb::Iterator>(
        log_->db()->NewIterator(read_options, log_->projections_cf()));
  }

  struct Bounds {
    Bounds(std::string b, std::string e)
        : begin(std::move(b)), end(std::move(e)), lower(begin), upper(end) {}
    std::string begin, end;
    rocksdb::Slice lower, upper;
  };

  EventLog* log_;
  const RebuildOptions& options_;
  v1::RebuildSummary summary_;
  rocksdb::WriteBatch batch_;
  std::vector<std::unique_ptr<Bounds>> bounds_;
  uint64_t records_rebuilt_ = 0;  // shadow keys the comparison walked
};

}  // namespace

bool IsLiveProjectionKey(absl::string_view key) {
  // Every record prefix is a letter and '/' (checked below, at compile
  // time): one table lookup on the first byte instead of eight compares
  // (the rebuild checks each key it writes).
  static constexpr std::array<bool, 256> kFirstByte = [] {
    std::array<bool, 256> table{};
    for (absl::string_view prefix : kProjectionRecordPrefixes) {
      table[static_cast<unsigned char>(prefix[0])] = true;
    }
    return table;
  }();
  return key.size() >= 2 && key[1] == '/' &&
         kFirstByte[static_cast<unsigned char>(key[0])];
}

absl::StatusOr<v1::RebuildSummary> Rebuild(EventLog* log,
                                           const RebuildOptions& options) {
  // The live projections are compared and repaired in RocksDB itself: what
  // a log writing behind holds in memory goes there first.
  RETURN_IF_ERROR(log->WriteBehindNow());
  RebuildRun run(log, options);
  return run.Run();
}

}  // namespace storeledger
