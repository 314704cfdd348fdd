// The event log on RocksDB. The layout is storage/FORMAT.md; keep the two in
// step.
#include "storage/event_log.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "base/limits.h"
#include "base/status_macros.h"
#include "google/protobuf/arena.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "rocksdb/write_buffer_manager.h"
#include "storage/format.h"
#include "storage/hash_internal.h"
#include "storage/merkle.h"
#include "storage/merkle_store.h"
#include "storage/rocks_util.h"
#include "storage/write_behind.h"

namespace storeledger {
namespace {

using storage_internal::Sha256Concat;

using format::kHashBytes;
using format::kPositionBytes;
// An envelope's bytes end with its hash field: tag (field 12, wire type 2),
// length 32, then the 32 hash bytes (FORMAT.md "Envelope").
constexpr char kHashFieldTag = 0x62;
constexpr size_t kHashFieldBytes = 2 + kHashBytes;

// Opens of a read-only EventLog that meet a table file a writer beside it
// deleted meanwhile, before the error is reported (EventLog::Open).
constexpr int kReadOnlyOpenAttempts = 5;

// Read-ahead of a scan of the events column family (one large read instead
// of one per block).
constexpr size_t kScanReadaheadBytes = 1 << 20;

// RocksDB memory bounds (storage/FORMAT.md "RocksDB options, and why").
// Everything RocksDB caches or buffers: blocks of every column family and
// the memtables (charged to the same cache).
constexpr size_t kRocksDbMemoryBytes = 64 << 20;
// The memtables' share: when they reach it, the largest is flushed.
constexpr size_t kMemtablesBytesMax = 32 << 20;
// The WAL kept for recovery (max_total_wal_size; EventLogOptions::
// memtables_bytes_max when set): past it, the column families whose
// memtables still hold data of the oldest WAL file are flushed, so that
// the file can go. Bounds what an open after a crash replays, however
// slowly some families fill ("meta", "merkle": without it their small
// memtables kept every WAL file since their last flush, 40-60 MiB).
constexpr uint64_t kWalBytesMax = 32 << 20;
// One memtable of "events" (sequential keys: cheap inserts, big is fine) ...
constexpr size_t kMemtableBytesEvents = 16 << 20;
// ... of "streams", "commands" and "projections" (random keys: a smaller
// skiplist is a cheaper insert) ...
constexpr size_t kMemtableBytes = 8 << 20;
// ... and of "meta" and "default" (one key, or none).
constexpr size_t kMemtableBytesSmall = 1 << 20;
// Size of one index or filter partition.
constexpr size_t kMetadataBlockBytes = 4096;
// Memtable bloom filter size, as a share of the memtable.
constexpr double kMemtableBloomRatio = 0.02;

// Stream heads the appending side keeps in memory (Impl::head_cache), so
// that checking an expected version does not read RocksDB for a stream
// appended to recently. When full the cache is emptied and refills: bounded
// memory (a head is ~50 bytes with its key), no bookkeeping per hit.
constexpr size_t kHeadCacheStreamsMax = 50'000;

constexpr char kEventsCf[] = "events";
constexpr char kStreamsCf[] = "streams";
constexpr char kCommandsCf[] = "commands";
constexpr char kMetaCf[] = "meta";
constexpr char kProjectionsCf[] = "projections";
constexpr char kMerkleCf[] = "merkle";
using format::kMetaHeadKey;
constexpr char kMetaFormatVersionKey[] = "format_version";
// The position (and hash) up to which "streams" and "projections" are in
// RocksDB, with EventLogOptions::write_behind; absent: up to the head.
using format::kMetaDerivedKey;
// The SST files of one write-behind, in the database's directory until
// RocksDB ingests (moves) them; left over by a crash, removed at open.
constexpr char kWriteBehindFilePrefix[] = "write-behind-";

// Index of each handle in Impl::handles; handle 0 is RocksDB's "default".
enum CfIndex : size_t {
  kDefault = 0,
  kEvents,
  kStreams,
  kCommands,
  kMeta,
  kProjections,
  kMerkle,
  kCfCount
};

const std::string& ZeroHash() {
  static const std::string* const kZero = new std::string(kHashBytes, '\0');
  return *kZero;
}

std::string EncodeBigEndian32(uint32_t value) {
  std::string out(4, '\0');
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

uint32_t DecodeBigEndian32(absl::string_view bytes) {
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) {
    value = (value << 8) | static_cast<unsigned char>(bytes[i]);
  }
  return value;
}

using format::StreamIndexKey;
using format::StreamIndexPrefix;

std::string EncodeHead(const Head& head) {
  return PositionKey(head.position) + head.hash;
}

absl::Status ValidateStreamId(absl::string_view stream_id) {
  if (stream_id.empty()) {
    return absl::InvalidArgumentError("stream id is empty");
  }
  if (stream_id.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stream id \"", absl::CEscape(stream_id), "\" contains a NUL byte"));
  }
  return absl::OkStatus();
}

// RocksDB's lock-file failures: "While lock file: <dir>/LOCK: ..." when
// another process holds it, "lock hold by current process" when this one
// does.
bool IsLockError(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  const std::string text = s.ToString();
  return absl::StrContains(text, "While lock file") ||
         absl::StrContains(text, "lock hold by current process");
}

// The column families of a ledger, in CfIndex order.
const std::vector<std::string>& LedgerColumnFamilies() {
  static const std::vector<std::string>* const kNames =
      new std::vector<std::string>{rocksdb::kDefaultColumnFamilyName,
                                   kEventsCf,
                                   kStreamsCf,
                                   kCommandsCf,
                                   kMetaCf,
                                   kProjectionsCf,
                                   kMerkleCf};
  return *kNames;
}

bool IsLedgerColumnFamily(const std::string& name) {
  const std::vector<std::string>& ours = LedgerColumnFamilies();
  return std::find(ours.begin(), ours.end(), name) != ours.end();
}

// What RocksDB writes into a new database's directory before CURRENT (a
// creation killed that early left only these).
bool IsRocksDbCreationFile(const std::string& name) {
  return name == "." || name == ".." || name == "LOCK" || name == "IDENTITY" ||
         absl::StartsWith(name, "LOG") || absl::StartsWith(name, "MANIFEST-") ||
         absl::StartsWith(name, "OPTIONS-") || absl::EndsWith(name, ".dbtmp");
}

absl::Status NotALedger(const std::string& dir, absl::string_view why) {
  return absl::FailedPreconditionError(absl::StrCat(
      "database ", dir, " is not a storeledger ledger (", why,
      "); refusing to open it: give an empty or absent directory for a new "
      "ledger"));
}

// Only an empty or absent directory becomes a new ledger (storage/FORMAT.md
// "Open"). A directory that holds anything else must be a ledger: a RocksDB
// database with no column family but a ledger's. One with some of them, all
// empty, is a ledger whose creation was cut short (Initialize finishes it);
// one that holds data anywhere without the format marker is refused there.
// Called before RocksDB opens the directory, which would add the column
// families to any database.
absl::Status CheckLedgerDirectory(const std::string& dir,
                                  const rocksdb::Options& db_options) {
  std::vector<std::string> children;
  if (!db_options.env->GetChildren(dir, &children).ok()) {
    return absl::OkStatus();  // absent (or unreadable: RocksDB says so)
  }
  if (std::find(children.begin(), children.end(), "CURRENT") ==
      children.end()) {
    for (const std::string& child : children) {
      if (!IsRocksDbCreationFile(child)) {
        return NotALedger(dir, absl::StrCat("the directory holds ", child,
                                            " and no RocksDB database"));
      }
    }
    return absl::OkStatus();
  }
  std::vector<std::string> families;
  RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::ListColumnFamilies(db_options, dir, &families),
                absl::StrCat("open database ", dir)));
  for (const std::string& family : families) {
    if (!IsLedgerColumnFamily(family)) {
      return NotALedger(dir, absl::StrCat("it has a column family \"", family,
                                          "\" that no ledger has"));
    }
  }
  // Every family: Initialize checks the marker.
  if (families.size() == LedgerColumnFamilies().size()) {
    return absl::OkStatus();
  }
  // Every one but "merkle" with the format marker: a ledger made before the
  // tree, which its next open for writing adds.
  const bool before_the_tree =
      families.size() + 1 == LedgerColumnFamilies().size() &&
      std::find(families.begin(), families.end(), kMerkleCf) == families.end();
  // Otherwise some of a ledger's column families: they must all be empty.
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& family : families) {
    descriptors.emplace_back(family, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(
                                db_options, dir, descriptors, &handles, &raw),
                            absl::StrCat("open database ", dir)));
  std::unique_ptr<rocksdb::DB> db(raw);
  absl::Status status;
  bool marked = false;
  if (before_the_tree) {
    for (size_t i = 0; i < handles.size(); ++i) {
      if (families[i] != kMetaCf) continue;
      std::string version;
      marked = db->Get(rocksdb::ReadOptions(), handles[i],
                       kMetaFormatVersionKey, &version)
                   .ok();
    }
  }
  for (size_t i = 0; i < handles.size() && status.ok() && !marked; ++i) {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    it->SeekToFirst();
    status = FromRocks(it->status(), absl::StrCat("open database ", dir));
    if (status.ok() && it->Valid()) {
      status = NotALedger(
          dir, absl::StrCat("column family \"", families[i],
                            "\" holds data and there is no format marker"));
    }
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    db->DestroyColumnFamilyHandle(handle);
  }
  return status;
}

}  // namespace

namespace {

// ParseStoredEnvelope and VerifyStoredEnvelope into *envelope, which may
// live on an arena (the log scan's EnvelopeBatch).
absl::Status ParseStoredEnvelopeInto(uint64_t position, absl::string_view raw,
                                     Envelope* envelope) {
  auto loss = [position](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("event at position ", position, ": ", what));
  };
  if (raw.size() > kEnvelopeBytesMax) {
    return loss(absl::StrCat(raw.size(), " bytes, over the limit of ",
                             kEnvelopeBytesMax));
  }
  if (raw.size() < kHashFieldBytes ||
      raw[raw.size() - kHashFieldBytes] != kHashFieldTag ||
      raw[raw.size() - kHashFieldBytes + 1] != static_cast<char>(kHashBytes)) {
    return loss("stored bytes do not end with the hash field");
  }
  if (!envelope->ParseFromArray(raw.data(), static_cast<int>(raw.size()))) {
    return loss("stored bytes do not parse as an Envelope");
  }
  if (envelope->position() != position) {
    return loss(absl::StrCat("envelope says position ", envelope->position()));
  }
  if (envelope->prev_hash().size() != kHashBytes) {
    return loss(
        absl::StrCat("prev_hash has ", envelope->prev_hash().size(), " bytes"));
  }
  return absl::OkStatus();
}

// StoredEnvelopeHash into out[0, kHashBytes).
void StoredEnvelopeHashTo(const Envelope& envelope, absl::string_view raw,
                          unsigned char* out) {
  // The stored bytes themselves (everything before the hash field), so that
  // any changed byte is caught, whatever a re-serialization would give.
  storage_internal::Sha256ConcatTo(
      envelope.prev_hash(), raw.substr(0, raw.size() - kHashFieldBytes), out);
}

// The stored hash of a parsed envelope against its stored bytes.
absl::Status VerifyStoredHash(const Envelope& envelope, absl::string_view raw) {
  // The digest into a buffer, not a string: this runs for every event a
  // scan reads.
  unsigned char computed[kHashBytes];
  StoredEnvelopeHashTo(envelope, raw, computed);
  const absl::string_view computed_view(reinterpret_cast<char*>(computed),
                                        kHashBytes);
  if (computed_view != envelope.hash()) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", envelope.position(), ": hash mismatch: stored ",
        ToHex(envelope.hash()), ", computed ", ToHex(computed_view)));
  }
  return absl::OkStatus();
}

absl::Status VerifyStoredEnvelopeInto(uint64_t position, absl::string_view raw,
                                      Envelope* envelope) {
  RETURN_IF_ERROR(ParseStoredEnvelopeInto(position, raw, envelope));
  return VerifyStoredHash(*envelope, raw);
}

}  // namespace

absl::StatusOr<Envelope> ParseStoredEnvelope(uint64_t position,
                                             absl::string_view raw) {
  Envelope envelope;
  RETURN_IF_ERROR(ParseStoredEnvelopeInto(position, raw, &envelope));
  return envelope;
}

std::string StoredEnvelopeHash(const Envelope& envelope,
                               absl::string_view raw) {
  unsigned char hash[kHashBytes];
  StoredEnvelopeHashTo(envelope, raw, hash);
  return std::string(reinterpret_cast<const char*>(hash), kHashBytes);
}

absl::StatusOr<Envelope> VerifyStoredEnvelope(uint64_t position,
                                              absl::string_view raw) {
  Envelope envelope;
  RETURN_IF_ERROR(VerifyStoredEnvelopeInto(position, raw, &envelope));
  return envelope;
}

struct EnvelopeBatch::Storage {
  Storage() : first_block(new char[kEnvelopeBatchArenaBytes]) {
    google::protobuf::ArenaOptions options;
    options.initial_block = first_block.get();
    options.initial_block_size = kEnvelopeBatchArenaBytes;
    arena = std::make_unique<google::protobuf::Arena>(options);
  }
  // Declared first: the arena (destroyed first) uses it.
  std::unique_ptr<char[]> first_block;
  std::unique_ptr<google::protobuf::Arena> arena;
};

EnvelopeBatch::EnvelopeBatch() = default;
EnvelopeBatch::~EnvelopeBatch() = default;
EnvelopeBatch::EnvelopeBatch(EnvelopeBatch&&) noexcept = default;
EnvelopeBatch& EnvelopeBatch::operator=(EnvelopeBatch&&) noexcept = default;

Envelope* EnvelopeBatch::Add() {
  if (storage_ == nullptr) storage_ = std::make_unique<Storage>();
  Envelope* envelope =
      google::protobuf::Arena::CreateMessage<Envelope>(storage_->arena.get());
  envelopes_.push_back(envelope);
  return envelope;
}

void EnvelopeBatch::Clear() {
  envelopes_.clear();
  raw_.clear();
  raw_ends_.clear();
  if (storage_ != nullptr) storage_->arena->Reset();
}

void EnvelopeBatch::KeepRaw(absl::string_view raw) {
  SL_CHECK(raw_ends_.size() + 1 == envelopes_.size(),
           "KeepRaw once per envelope, after its Add");
  raw_.append(raw.data(), raw.size());
  raw_ends_.push_back(raw_.size());
}

absl::Status EnvelopeBatch::VerifyHashes() {
  size_t begin = 0;
  for (size_t i = 0; i < raw_ends_.size(); ++i) {
    RETURN_IF_ERROR(VerifyStoredHash(
        *envelopes_[i],
        absl::string_view(raw_).substr(begin, raw_ends_[i] - begin)));
    begin = raw_ends_[i];
  }
  raw_.clear();
  raw_ends_.clear();
  return absl::OkStatus();
}

namespace {

// 'prefix' successor for an iterate_upper_bound; empty when none exists
// (prefix empty or all 0xff).
std::string PrefixSuccessor(absl::string_view prefix) {
  std::string out(prefix);
  while (!out.empty()) {
    unsigned char last = static_cast<unsigned char>(out.back());
    if (last != 0xff) {
      out.back() = static_cast<char>(last + 1);
      return out;
    }
    out.pop_back();
  }
  return out;
}

// The writes of one group commit, collected and then handed to RocksDB
// sorted by (column family, key). A memtable insert starts its skiplist
// search from where the previous insert into that memtable ended, so keys in
// order cost a fraction of keys at random -- and most of a group's keys
// (command ids, records, stream index entries) are random. The sort is
// stable: two writes to one key keep their order (a projection delete stays
// before a put of the same key), so the result is the batch in request order.
class GroupBatch {
 public:
  void Put(CfIndex cf, std::string key, std::string value) {
    entries_.push_back({cf, false, std::move(key), std::move(value)});
  }
  void Delete(CfIndex cf, std::string key) {
    entries_.push_back({cf, true, std::move(key), std::string()});
  }
  // Rollback: drop the writes added since size() was `save_point`.
  size_t size() const { return entries_.size(); }
  void RollbackTo(size_t save_point) { entries_.resize(save_point); }

  // The values put into `cf`, in the order they were added (for events:
  // position order).
  std::vector<absl::string_view> PutValues(CfIndex cf) const {
    std::vector<absl::string_view> values;
    for (const Entry& e : entries_) {
      if (e.cf == cf && !e.is_delete) values.push_back(e.value);
    }
    return values;
  }

  // The keys put into `cf`, in the order they were added.
  std::vector<absl::string_view> PutKeys(CfIndex cf) const {
    std::vector<absl::string_view> keys;
    for (const Entry& e : entries_) {
      if (e.cf == cf && !e.is_delete) keys.push_back(e.key);
    }
    return keys;
  }

  // The writes to the column families written behind (write_behind.h), in
  // the order they were added: fn(family, key, value or nullopt).
  template <typename Fn>
  void ForEachDerived(Fn fn) {
    for (Entry& e : entries_) {
      const std::optional<storage_internal::DerivedFamily> family =
          DerivedFamilyOf(e.cf);
      if (!family.has_value()) continue;
      fn(*family, std::move(e.key),
         e.is_delete ? std::nullopt
                     : std::optional<std::string>(std::move(e.value)));
    }
  }

  static std::optional<storage_internal::DerivedFamily> DerivedFamilyOf(
      CfIndex cf) {
    if (cf == kStreams) return storage_internal::kDerivedStreams;
    if (cf == kProjections) return storage_internal::kDerivedProjections;
    return std::nullopt;
  }

  // With leave_derived, the writes to the families written behind are left
  // out (ForEachDerived hands them over).
  rocksdb::Status Build(
      const std::vector<rocksdb::ColumnFamilyHandle*>& handles,
      rocksdb::WriteBatch* batch, bool leave_derived) const {
    std::vector<uint32_t> order(entries_.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      const Entry& x = entries_[a];
      const Entry& y = entries_[b];
      if (x.cf != y.cf) return x.cf < y.cf;
      return x.key < y.key;
    });
    for (uint32_t i : order) {
      const Entry& e = entries_[i];
      if (leave_derived && DerivedFamilyOf(e.cf).has_value()) continue;
      rocksdb::Status s = e.is_delete
                              ? batch->Delete(handles[e.cf], e.key)
                              : batch->Put(handles[e.cf], e.key, e.value);
      if (!s.ok()) return s;
    }
    return rocksdb::Status::OK();
  }

 private:
  struct Entry {
    CfIndex cf;
    bool is_delete;
    std::string key;
    std::string value;
  };
  std::vector<Entry> entries_;
};

// Checked before a group's batch is written (SL_CHECK: the batch is our own
// assembly, so a failure is a bug, not bad input): its events are the
// positions after `old_head` up to `new_head`, each once, in order.
void CheckPositionsContiguous(const GroupBatch& batch, CfIndex events,
                              const Head& old_head, const Head& new_head) {
  const std::vector<absl::string_view> keys = batch.PutKeys(events);
  SL_CHECK(new_head.position - old_head.position == keys.size(),
           "a batch of " << keys.size() << " events moves the head from "
                         << old_head.position << " to " << new_head.position);
  for (size_t i = 0; i < keys.size(); ++i) {
    SL_CHECK(keys[i] == PositionKey(old_head.position + 1 + i),
             "event " << i << " of a batch after position " << old_head.position
                      << " is not at position " << old_head.position + 1 + i);
  }
}

}  // namespace

struct EventLog::Impl {
  std::string dir;
  EventLogOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;

  // Held across one append (its checks, its write and the head moving up):
  // appends are serialized, and concurrent callers simply wait their turn.
  // Grouping is the caller's (the ledger's group commit hands each group
  // over as one AppendBatch). std::mutex rather than absl::Mutex: the
  // system Abseil is not built for ThreadSanitizer, which then cannot see
  // absl::Mutex's ordering.
  std::mutex append_mu;
  // Set by a failed write or sync; later appends return it (until reopen).
  // Its own mutex, not append_mu: Sync and WriteRefusal must not wait for
  // an append under way.
  mutable std::mutex failed_mu;
  std::optional<absl::Status> failed ABSL_GUARDED_BY(failed_mu);

  // Held around every RocksDB write of the log (Write below) and by
  // RunBetweenWrites, so that a failed write has set `failed` before anything
  // else touches RocksDB's WAL file: Debian's RocksDB 7.8 (built with
  // assertions) aborts when a memtable switch (a flush, a checkpoint) reaches
  // a WAL file a write failed on.
  mutable std::mutex rocks_write_mu;

  // Stream heads as committed, for the expected-version checks
  // (kHeadCacheStreamsMax). Used and updated only under append_mu, updated
  // only after a successful write. It mirrors what this EventLog wrote: a
  // write that bypasses Append (a test damaging the database through db())
  // is seen after a reopen.
  absl::flat_hash_map<std::string, StreamHead> head_cache;
  // The Merkle tree's right edge as committed (storage/merkle_store.h), when
  // EventLogOptions::merkle_tree is on: under append_mu, like head_cache.
  merkle::CompactRange merkle_range;

  // Written only under append_mu (and by Sync); read by anyone. `head` is the
  // last appended event, `durable_head` the last one known synced: they
  // differ only while an append made with sync = false awaits its Sync.
  mutable std::mutex head_mu;
  Head head ABSL_GUARDED_BY(head_mu);
  Head durable_head ABSL_GUARDED_BY(head_mu);
  // Set while an unsynced append awaits its Sync: a snapshot whose every
  // write is durable (taken before the first unsynced write, or by the Sync
  // that covered it), which the kDurable reads use. Null when everything
  // written is durable.
  std::shared_ptr<const rocksdb::Snapshot> durable_view
      ABSL_GUARDED_BY(head_mu);
  // From just before an unsynced write until `head` covers it (or it
  // failed): a Sync ending meanwhile finds head == durable_head and must
  // keep durable_view all the same, since the write may land after it.
  bool unsynced_write_in_flight ABSL_GUARDED_BY(head_mu) = false;

  // The write-behind (storage/write_behind.h). Each append that wrote
  // something gets the next write sequence (write_seq, under append_mu);
  // the derived writes of appends up to durable_seq are durable (as the
  // events of durable_head are). Under head_mu, with the heads.
  uint64_t write_seq = 0;
  uint64_t appended_seq ABSL_GUARDED_BY(head_mu) = 0;
  uint64_t durable_seq ABSL_GUARDED_BY(head_mu) = 0;
  // The tables: `active` takes the appends' derived writes; `frozen`
  // (newest first) are on their way to RocksDB, or there already but still
  // needed by a durable view older than their ingestion. The lock order is
  // window_mu, then head_mu. A shared_mutex: readers look tables up
  // concurrently, the appending thread adds to `active` alone.
  mutable std::shared_mutex window_mu;
  std::shared_ptr<storage_internal::DerivedTable> active ABSL_GUARDED_BY(
      window_mu) = std::make_shared<storage_internal::DerivedTable>();
  std::vector<storage_internal::FrozenTable> frozen ABSL_GUARDED_BY(window_mu);
  // meta "derived" as this EventLog wrote or found it (under append_mu once
  // open); `marked`: the key exists.
  Head derived;
  bool derived_marked = false;
  // Names the SST files of one write-behind apart.
  uint64_t write_behind_files = 0;
  // Under append_mu once open, as `derived`.
  EventLog::WriteBehindStats write_behind_stats;
  // The reads look in the window: write_behind on, or a read-only open
  // that folded a window at open. Set at open.
  bool window_used = false;
  // Open returned this log. One whose open failed writes nothing behind at
  // close: its window may be short of the head (a fold that failed), and
  // meta "derived" moved to the head would hide what it lacks.
  bool opened = false;

  ~Impl() {
    if (db == nullptr) return;
    durable_view.reset();  // (the readers holding a copy have returned)
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      db->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
    db->Close().PermitUncheckedError();
  }

  rocksdb::ColumnFamilyHandle* cf(CfIndex index) const {
    return handles[index];
  }

  Head GetHead() const {
    std::lock_guard<std::mutex> lock(head_mu);
    return head;
  }
  Head GetDurableHead() const {
    std::lock_guard<std::mutex> lock(head_mu);
    return durable_head;
  }

  // One RocksDB write of the log. A failure is kUnavailable for I/O trouble,
  // else kInternal, and is recorded in `failed` (the first one stays) before
  // the next write or RunBetweenWrites can start.
  absl::Status Write(const rocksdb::WriteOptions& write_options,
                     rocksdb::WriteBatch* batch, absl::string_view what) {
    std::lock_guard<std::mutex> write_lock(rocks_write_mu);
    absl::Status status = FromRocks(db->Write(write_options, batch), what);
    if (status.ok()) return status;
    if (status.code() != absl::StatusCode::kUnavailable) {
      status = absl::InternalError(status.message());
    }
    std::lock_guard<std::mutex> failed_lock(failed_mu);
    if (!failed.has_value()) failed = status;
    return status;
  }

  std::shared_ptr<const rocksdb::Snapshot> NewSnapshot() const {
    rocksdb::DB* const database = db.get();
    return std::shared_ptr<const rocksdb::Snapshot>(
        database->GetSnapshot(), [database](const rocksdb::Snapshot* snapshot) {
          database->ReleaseSnapshot(snapshot);
        });
  }
  // nullopt when the key is absent.
  absl::StatusOr<std::optional<std::string>> Get(
      CfIndex index, absl::string_view key,
      const rocksdb::Snapshot* snapshot = nullptr) const {
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    std::string value;
    rocksdb::Status s = db->Get(read_options, cf(index),
                                rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::nullopt;
    RETURN_IF_ERROR(FromRocks(s, "read"));
    return value;
  }

  // `view` null: kAppended (the tables as they are now, and RocksDB's
  // latest).
  absl::StatusOr<std::optional<StreamHead>> GetStreamHead(
      absl::string_view stream_id, const rocksdb::Snapshot* snapshot,
      const storage_internal::DerivedView* view) const {
    ASSIGN_OR_RETURN(std::optional<std::string> bytes,
                     GetDerived(kStreams, stream_id, snapshot, view));
    if (!bytes.has_value()) return std::nullopt;
    StreamHead stream_head;
    if (!stream_head.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat(
          "stream head of \"", absl::CEscape(stream_id), "\" does not parse"));
    }
    return stream_head;
  }

  // EventLog::Scan's checks over the envelopes after `after_position`, in
  // order: each is parsed into next() (an Envelope* the caller owns, e.g. on
  // its arena) and handed to fn(Envelope&, raw) until fn returns false.
  // With check_hash false the SHA-256 of each envelope is left to the
  // caller (BatchHashes::kByConsumer), but for an envelope that fails the
  // chain check: its hash is checked first, as when check_hash is true.
  template <typename Next, typename Fn>
  absl::Status ScanVerified(uint64_t after_position, Next next, Fn fn,
                            bool check_hash = true) const {
    const uint64_t head_position = GetDurableHead().position;
    if (after_position >= head_position) return absl::OkStatus();

    std::string prev_hash = ZeroHash();
    if (after_position > 0) {
      ASSIGN_OR_RETURN(Envelope previous, ReadAt(after_position));
      prev_hash = previous.hash();
    }

    const std::string upper = PositionKey(head_position + 1);
    const rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions read_options;
    read_options.iterate_upper_bound = &upper_slice;
    // The scan reads the log front to back: large reads, not one per block.
    read_options.readahead_size = kScanReadaheadBytes;
    read_options.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(read_options, cf(kEvents)));
    uint64_t expected = after_position + 1;
    for (it->Seek(PositionKey(expected)); it->Valid(); it->Next()) {
      const rocksdb::Slice key = it->key();
      if (key.size() != kPositionBytes) {
        return absl::DataLossError(absl::StrCat("events key of ", key.size(),
                                                " bytes after position ",
                                                expected - 1));
      }
      const uint64_t position = DecodeBigEndian64(View(key));
      if (position != expected) {
        return absl::DataLossError(absl::StrCat("event at position ", expected,
                                                " is missing (next stored is ",
                                                position, ")"));
      }
      const absl::string_view raw = View(it->value());
      Envelope* envelope = next();
      if (check_hash) {
        RETURN_IF_ERROR(VerifyStoredEnvelopeInto(position, raw, envelope));
      } else {
        RETURN_IF_ERROR(ParseStoredEnvelopeInto(position, raw, envelope));
      }
      if (envelope->prev_hash() != prev_hash) {
        if (!check_hash) RETURN_IF_ERROR(VerifyStoredHash(*envelope, raw));
        return absl::DataLossError(absl::StrCat(
            "event at position ", position, ": prev_hash ",
            ToHex(envelope->prev_hash()), " does not link to the hash ",
            ToHex(prev_hash), " of position ", position - 1));
      }
      prev_hash = envelope->hash();
      ++expected;
      if (!fn(*envelope, raw)) return absl::OkStatus();
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scan events"));
    if (expected != head_position + 1) {
      return absl::DataLossError(absl::StrCat("event at position ", expected,
                                              " is missing (head is ",
                                              head_position, ")"));
    }
    return absl::OkStatus();
  }

  // The verified envelope at a position known to be <= the head.
  absl::StatusOr<Envelope> ReadAt(uint64_t position) const {
    absl::StatusOr<std::optional<std::string>> raw =
        Get(kEvents, PositionKey(position));
    if (!raw.ok()) {
      // A damaged table block: say which event could not be read.
      return absl::Status(raw.status().code(),
                          absl::StrCat("event at position ", position, ": ",
                                       raw.status().message()));
    }
    if (!raw->has_value()) {
      return absl::DataLossError(absl::StrCat("event at position ", position,
                                              " is missing (head is ",
                                              GetHead().position, ")"));
    }
    return VerifyStoredEnvelope(position, **raw);
  }

  // ---- Reads of the families written behind (kStreams, kProjections):
  // the write-behind tables first, then RocksDB.

  // The snapshot and tables of a durable read point, pinned together: a
  // table whose files RocksDB ingested before the snapshot is left out. The
  // snapshot is durable_view, or when everything written is durable a
  // snapshot of the database taken under head_mu -- an unsynced write sets
  // durable_view under it before it starts, so none can slip in between the
  // check and the snapshot.
  std::pair<std::shared_ptr<const rocksdb::Snapshot>,
            std::shared_ptr<const storage_internal::DerivedView>>
  PinDurable() const {
    if (!window_used) {
      std::lock_guard<std::mutex> head_lock(head_mu);
      return {durable_view != nullptr ? durable_view : NewSnapshot(), nullptr};
    }
    auto view = std::make_shared<storage_internal::DerivedView>();
    std::shared_lock<std::shared_mutex> lock(window_mu);
    std::shared_ptr<const rocksdb::Snapshot> snapshot;
    {
      std::lock_guard<std::mutex> head_lock(head_mu);
      snapshot = durable_view != nullptr ? durable_view : NewSnapshot();
      view->max_write_seq = durable_seq;
    }
    view->tables.push_back(active);
    for (const storage_internal::FrozenTable& f : frozen) {
      if (f.ingested_at == 0 || snapshot->GetSequenceNumber() < f.ingested_at) {
        view->tables.push_back(f.table);
      }
    }
    return {std::move(snapshot), std::move(view)};
  }

  // A key of kStreams or kProjections as `view` (null: kAppended) and
  // `snapshot` see it.
  absl::StatusOr<std::optional<std::string>> GetDerived(
      CfIndex index, absl::string_view key, const rocksdb::Snapshot* snapshot,
      const storage_internal::DerivedView* view) const {
    if (!window_used) return Get(index, key, snapshot);
    const storage_internal::DerivedFamily family =
        *GroupBatch::DerivedFamilyOf(index);
    {
      std::shared_lock<std::shared_mutex> lock(window_mu);
      const storage_internal::DerivedVersion* version = nullptr;
      if (view != nullptr) {
        for (const auto& table : view->tables) {
          version = table->Find(family, key, view->max_write_seq);
          if (version != nullptr) return version->value;
        }
      } else {
        // kAppended (the group commit's reads): every table not yet in
        // RocksDB, every append, under the one lock.
        version = active->Find(family, key, UINT64_MAX);
        for (auto f = frozen.begin(); version == nullptr && f != frozen.end();
             ++f) {
          if (f->ingested_at == 0) {
            version = f->table->Find(family, key, UINT64_MAX);
          }
        }
        if (version != nullptr) return version->value;
      }
    }
    return Get(index, key, snapshot);
  }

  // fn(key, value) for each key of kStreams or kProjections in [begin, end)
  // (end empty: to the end), in key order, as `view` and `snapshot` see
  // them, until fn returns false.
  absl::Status ScanDerived(
      CfIndex index, absl::string_view begin, absl::string_view end,
      const rocksdb::Snapshot* snapshot,
      const storage_internal::DerivedView* view,
      const std::function<bool(absl::string_view, absl::string_view)>& fn)
      const {
    const storage_internal::DerivedFamily family =
        *GroupBatch::DerivedFamilyOf(index);
    auto window = std::make_shared<storage_internal::DerivedEntries>();
    if (window_used) {
      // One lock for choosing the tables and reading them: a write-behind
      // in between would split the active table, moving the versions of
      // unsynced appends into a new one this read would not look at.
      std::shared_lock<std::shared_mutex> lock(window_mu);
      if (view != nullptr) {
        for (const auto& table : view->tables) {
          table->Collect(family, begin, end, view->max_write_seq, window.get());
        }
      } else {
        active->Collect(family, begin, end, UINT64_MAX, window.get());
        for (const storage_internal::FrozenTable& f : frozen) {
          if (f.ingested_at == 0) {
            f.table->Collect(family, begin, end, UINT64_MAX, window.get());
          }
        }
      }
    }
    const rocksdb::Slice upper_slice(end.data(), end.size());
    rocksdb::ReadOptions read_options;
    read_options.snapshot = snapshot;
    if (!end.empty()) read_options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(read_options, cf(index)));
    if (!window->empty()) it = NewOverlayIterator(window, std::move(it));
    for (it->Seek(rocksdb::Slice(begin.data(), begin.size())); it->Valid();
         it->Next()) {
      if (!fn(View(it->key()), View(it->value()))) return absl::OkStatus();
    }
    return FromRocks(it->status(), "scan");
  }

  // ---- The write-behind itself.

  // Writes the versions of appends up to `cut` (durable: their events are
  // at or before `marker`) to RocksDB: one SST file per family and one for
  // meta "derived" = `marker`, ingested in one call. Requires append_mu
  // (or the open, before anyone else has the log).
  absl::Status WriteBehind(uint64_t cut, const Head& marker);
  // Drops the frozen tables no durable view needs any more.
  void PruneFrozen();
  // When the window reached the write-behind distance, WriteBehind at the
  // durable head. Requires append_mu.
  absl::Status MaybeWriteBehind();
  // WriteBehind at the durable head when anything waits. Requires
  // append_mu.
  absl::Status WriteBehindDurable();
  // Open: meta "derived", and the window folded from it to the head.
  absl::Status RecoverWindow(const EventLog& log);

  // The log as the requests of a group so far leave it.
  struct GroupState {
    Head head;
    std::map<std::string, StreamHead, std::less<>> stream_heads;
    std::vector<std::string> leaf_hashes;  // Merkle leaves, in position order
  };
  // Checks `request` against `state` and adds its writes to `batch`. On
  // success advances `state`; on error leaves `state` alone (the caller rolls
  // `batch` back).
  absl::StatusOr<AppendResult> AddToBatch(AppendRequest& request,
                                          GroupState& state,
                                          GroupBatch& batch) const;

  absl::Status Initialize();
  absl::Status LoadHead();
};

// A new database gets its format version and an empty head in one synced
// batch; an existing one must carry a version this code reads.
absl::Status EventLog::Impl::Initialize() {
  ASSIGN_OR_RETURN(std::optional<std::string> version,
                   Get(kMeta, kMetaFormatVersionKey));
  if (version.has_value()) {
    if (version->size() != 4) {
      return absl::DataLossError(
          absl::StrCat("database ", dir, ": format_version has ",
                       version->size(), " bytes, expected 4"));
    }
    const uint32_t found = DecodeBigEndian32(*version);
    if (found != kFormatVersion && found != kFormatVersionDiverged) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", dir, " has format version ", found,
                       "; this build reads format versions ", kFormatVersion,
                       " and ", kFormatVersionDiverged));
    }
    return absl::OkStatus();
  }
  // No version: only a database nobody has written yet may be initialized
  // (a ledger's creation cut short before this batch). Anything stored
  // anywhere without the marker is not a ledger, or a damaged one.
  for (size_t i = 0; i < kCfCount; ++i) {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), handles[i]));
    it->SeekToFirst();
    RETURN_IF_ERROR(FromRocks(it->status(), "scan for a format marker"));
    if (it->Valid()) {
      return NotALedger(
          dir, absl::StrCat("column family \"", LedgerColumnFamilies()[i],
                            "\" holds data and there is no format marker"));
    }
  }
  if (options.read_only) return absl::OkStatus();  // An empty log.
  rocksdb::WriteBatch batch;
  RETURN_IF_ERROR(FromRocks(batch.Put(cf(kMeta), kMetaFormatVersionKey,
                                      EncodeBigEndian32(kFormatVersion)),
                            "initialize"));
  RETURN_IF_ERROR(FromRocks(
      batch.Put(cf(kMeta), kMetaHeadKey, EncodeHead(Head{0, ZeroHash()})),
      "initialize"));
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  return FromRocks(db->Write(write_options, &batch), "initialize");
}

// Loads meta "head" and checks it against the last stored event.
absl::Status EventLog::Impl::LoadHead() {
  Head loaded{0, ZeroHash()};
  ASSIGN_OR_RETURN(std::optional<std::string> stored, Get(kMeta, kMetaHeadKey));
  if (stored.has_value()) {
    if (stored->size() != kPositionBytes + kHashBytes) {
      return absl::DataLossError(
          absl::StrCat("database ", dir, ": meta head has ", stored->size(),
                       " bytes, expected ", kPositionBytes + kHashBytes));
    }
    loaded.position = DecodeBigEndian64(*stored);
    loaded.hash = stored->substr(kPositionBytes);
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions(), cf(kEvents)));
  it->SeekToLast();
  RETURN_IF_ERROR(FromRocks(it->status(), "scan events"));
  if (!it->Valid()) {
    if (loaded.position != 0) {
      return absl::DataLossError(absl::StrCat(
          "database ", dir, ": head is at position ", loaded.position,
          " but the events column family is empty"));
    }
  } else {
    const rocksdb::Slice key = it->key();
    if (key.size() != kPositionBytes) {
      return absl::DataLossError(
          absl::StrCat("database ", dir, ": last events key has ", key.size(),
                       " bytes, expected ", kPositionBytes));
    }
    const uint64_t last = DecodeBigEndian64(View(key));
    if (last != loaded.position) {
      return absl::DataLossError(absl::StrCat(
          "database ", dir, ": head is at position ", loaded.position,
          " but the last stored event is at position ", last));
    }
    ASSIGN_OR_RETURN(Envelope envelope,
                     VerifyStoredEnvelope(last, View(it->value())));
    if (envelope.hash() != loaded.hash) {
      return absl::DataLossError(
          absl::StrCat("database ", dir, ": head hash ", ToHex(loaded.hash),
                       " differs from the hash of the event at position ", last,
                       ", ", ToHex(envelope.hash())));
    }
  }
  std::lock_guard<std::mutex> lock(head_mu);
  durable_head = loaded;  // whatever the WAL recovered was synced or is now
  head = std::move(loaded);
  return absl::OkStatus();
}

namespace {

Head DecodeHead(absl::string_view bytes) {
  return Head{DecodeBigEndian64(bytes.substr(0, kPositionBytes)),
              std::string(bytes.substr(kPositionBytes))};
}

}  // namespace

absl::Status EventLog::Impl::WriteBehind(uint64_t cut, const Head& marker) {
  const absl::Time started = absl::Now();
  std::shared_ptr<const storage_internal::DerivedTable> table;
  {
    std::unique_lock<std::shared_mutex> lock(window_mu);
    std::shared_ptr<storage_internal::DerivedTable> later =
        active->SplitAfter(cut);
    table = std::move(active);
    active = std::move(later);
    frozen.insert(frozen.begin(), storage_internal::FrozenTable{table, 0});
  }
  // One sorted file per family, and meta "derived", each written with the
  // family's own options (compression, table format).
  std::vector<rocksdb::IngestExternalFileArg> args;
  std::vector<std::string> paths;
  auto remove_files = [&] {
    for (const std::string& path : paths) {
      db->GetEnv()->DeleteFile(path).PermitUncheckedError();
    }
  };
  const uint64_t number = ++write_behind_files;
  auto write_file = [&](CfIndex index, absl::string_view name,
                        const auto& fill) -> absl::Status {
    const std::string path =
        absl::StrCat(dir, "/", kWriteBehindFilePrefix, marker.position, "-",
                     number, "-", name, ".sst");
    rocksdb::SstFileWriter writer(
        rocksdb::EnvOptions(),
        rocksdb::Options(db->GetDBOptions(), db->GetOptions(cf(index))),
        cf(index));
    RETURN_IF_ERROR(FromRocks(writer.Open(path), "write behind"));
    paths.push_back(path);
    RETURN_IF_ERROR(fill(writer));
    RETURN_IF_ERROR(FromRocks(writer.Finish(), "write behind"));
    rocksdb::IngestExternalFileArg arg;
    arg.column_family = cf(index);
    arg.external_files = {path};
    arg.options.move_files = true;
    args.push_back(std::move(arg));
    return absl::OkStatus();
  };
  absl::Status status;
  for (CfIndex index : {kStreams, kProjections}) {
    const storage_internal::DerivedFamily family =
        *GroupBatch::DerivedFamilyOf(index);
    if (table->empty(family) || !status.ok()) continue;
    status = write_file(
        index, LedgerColumnFamilies()[index],
        [&](rocksdb::SstFileWriter& writer) -> absl::Status {
          rocksdb::Status s;
          table->ForEachNewest(
              family, [&](const std::string& key,
                          const storage_internal::DerivedVersion& version) {
                if (!s.ok()) return;
                s = version.value.has_value() ? writer.Put(key, *version.value)
                                              : writer.Delete(key);
              });
          return FromRocks(s, "write behind");
        });
  }
  if (status.ok()) {
    status = write_file(kMeta, kMetaCf, [&](rocksdb::SstFileWriter& writer) {
      return FromRocks(writer.Put(kMetaDerivedKey, EncodeHead(marker)),
                       "write behind");
    });
  }
  if (status.ok()) {
    std::lock_guard<std::mutex> write_lock(rocks_write_mu);
    // Without synced appends (EventLogOptions::sync off) nothing has made
    // the events up to `marker` durable yet, while an ingestion is durable
    // at once: the WAL first, or a power loss could leave meta "derived"
    // past the head. (With sync on they are: `marker` is the durable head.)
    if (!options.sync) status = FromRocks(db->SyncWAL(), "write behind");
    if (status.ok()) {
      status = FromRocks(db->IngestExternalFiles(args), "write behind");
    }
    if (status.ok()) {
      std::unique_lock<std::shared_mutex> lock(window_mu);
      frozen.front().ingested_at = db->GetLatestSequenceNumber();
    }
  }
  if (!status.ok()) {
    // The table stays frozen in memory, where readers still find it; the
    // log refuses appends (whether RocksDB holds part of it is unknown).
    remove_files();
    std::lock_guard<std::mutex> failed_lock(failed_mu);
    if (!failed.has_value()) failed = status;
    return status;
  }
  if (marker.position != derived.position) {  // it moved meta "derived"
    const absl::Duration took = absl::Now() - started;
    ++write_behind_stats.count;
    write_behind_stats.events += marker.position - derived.position;
    write_behind_stats.total += took;
    write_behind_stats.longest = std::max(write_behind_stats.longest, took);
  }
  derived = marker;
  derived_marked = true;
  PruneFrozen();
  return absl::OkStatus();
}

void EventLog::Impl::PruneFrozen() {
  std::unique_lock<std::shared_mutex> lock(window_mu);
  std::lock_guard<std::mutex> head_lock(head_mu);
  // New durable snapshots see every ingested file; an old durable_view may
  // not.
  const uint64_t oldest =
      durable_view != nullptr ? durable_view->GetSequenceNumber() : UINT64_MAX;
  frozen.erase(std::remove_if(frozen.begin(), frozen.end(),
                              [&](const storage_internal::FrozenTable& f) {
                                return f.ingested_at != 0 &&
                                       oldest >= f.ingested_at;
                              }),
               frozen.end());
}

absl::Status EventLog::Impl::MaybeWriteBehind() {
  if (!options.write_behind) return absl::OkStatus();
  const uint64_t events_max = options.write_behind_events_max > 0
                                  ? options.write_behind_events_max
                                  : kWriteBehindEventsMax;
  const size_t bytes_max = options.write_behind_bytes_max > 0
                               ? options.write_behind_bytes_max
                               : kWriteBehindBytesMax;
  Head marker;
  uint64_t cut = 0;
  {
    std::lock_guard<std::mutex> head_lock(head_mu);
    marker = durable_head;
    cut = durable_seq;
  }
  size_t bytes = 0;
  {
    std::shared_lock<std::shared_mutex> lock(window_mu);
    bytes = active->bytes();
  }
  // Nothing durable past meta "derived": a write-behind would move nothing
  // (the bytes may all be versions of appends awaiting their sync).
  if (marker.position == derived.position ||
      (marker.position - derived.position < events_max && bytes < bytes_max)) {
    PruneFrozen();
    return absl::OkStatus();
  }
  return WriteBehind(cut, marker);
}

absl::Status EventLog::Impl::RecoverWindow(const EventLog& log) {
  ASSIGN_OR_RETURN(std::optional<std::string> stored,
                   Get(kMeta, kMetaDerivedKey));
  const Head head_now = GetHead();
  derived_marked = stored.has_value();
  if (!stored.has_value()) {
    derived = head_now;  // everything is in the column families
    return absl::OkStatus();
  }
  if (stored->size() != kPositionBytes + kHashBytes) {
    return absl::DataLossError(
        absl::StrCat("database ", dir, ": meta derived has ", stored->size(),
                     " bytes, expected ", kPositionBytes + kHashBytes));
  }
  derived = DecodeHead(*stored);
  if (derived.position > head_now.position) {
    return absl::DataLossError(absl::StrCat(
        "database ", dir, ": the projections reach position ", derived.position,
        " but the log's head is at ", head_now.position));
  }
  if (derived.position > 0) {
    ASSIGN_OR_RETURN(Envelope at, ReadAt(derived.position));
    if (at.hash() != derived.hash) {
      return absl::DataLossError(absl::StrCat(
          "database ", dir, ": the projections were written up to position ",
          derived.position, " with hash ", ToHex(derived.hash),
          ", but the event there has hash ", ToHex(at.hash())));
    }
  } else if (derived.hash != ZeroHash()) {
    return absl::DataLossError(
        absl::StrCat("database ", dir,
                     ": meta derived at position 0 with a "
                     "hash that is not zero"));
  }
  if (derived.position == head_now.position) return absl::OkStatus();

  // The projections first: the fold reads them, and the stream heads, as of
  // meta "derived" (the window is still empty).
  if (options.derive_projections == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", dir, ": its projections are written up to position ",
        derived.position, " of ", head_now.position,
        " (the rest was in memory when it stopped); open it through the "
        "ledger, which folds the log from there"));
  }
  // The stream index and heads come from the envelopes alone, gathered
  // during the same scan.
  std::map<std::string, StreamHead, std::less<>> heads;
  std::vector<std::pair<std::string, std::string>> index;
  uint64_t next_position = derived.position + 1;
  std::vector<std::pair<std::string, std::string>> puts;
  absl::Status in_order;  // the first envelope out of order, if any
  RETURN_IF_ERROR(options.derive_projections(
      log, derived.position,
      [&](const Envelope& envelope) {
        if (!in_order.ok()) return;
        if (envelope.position() != next_position) {
          in_order = absl::InternalError(absl::StrCat(
              "database ", dir, ": the open's fold gave position ",
              envelope.position(), " where ", next_position, " was next"));
          return;
        }
        ++next_position;
        index.emplace_back(
            StreamIndexKey(envelope.stream_id(), envelope.stream_version()),
            PositionKey(envelope.position()));
        StreamHead& stream_head = heads[envelope.stream_id()];
        stream_head.set_version(envelope.stream_version());
        *stream_head.mutable_last_occurred_at() = envelope.occurred_at();
      },
      &puts));
  RETURN_IF_ERROR(in_order);
  // The fold must have passed over every event up to the head it was
  // opened at: a fold that stopped short would leave streams unindexed.
  if (next_position != head_now.position + 1) {
    return absl::InternalError(
        absl::StrCat("database ", dir, ": the open's fold reached position ",
                     next_position - 1, " of ", head_now.position));
  }
  window_used = true;
  std::unique_lock<std::shared_mutex> lock(window_mu);
  for (auto& [key, value] : puts) {
    active->Add(storage_internal::kDerivedProjections, std::move(key),
                std::move(value), 0);
  }
  for (auto& [key, value] : index) {
    active->Add(storage_internal::kDerivedStreams, std::move(key),
                std::move(value), 0);
  }
  for (auto& [stream_id, stream_head] : heads) {
    active->Add(storage_internal::kDerivedStreams, stream_id,
                SerializeDeterministic(stream_head), 0);
  }
  return absl::OkStatus();
}

EventLog::EventLog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EventLog::~EventLog() {
  if (!impl_->opened || impl_->options.read_only ||
      !impl_->options.write_behind || !impl_->options.write_behind_at_close) {
    return;
  }
  // What waits in memory, so that the next open folds nothing; an error
  // leaves it to that fold (the log has it all).
  absl::Status written = WriteBehindNow();
  if (!written.ok() && !absl::IsFailedPrecondition(written)) {
    std::cerr << "storeledger: writing the projections behind the log at "
                 "close: "
              << written.message() << "\n";
  }
}

absl::Status EventLog::WriteBehindNow() {
  if (impl_->options.read_only && !impl_->window_used) return absl::OkStatus();
  if (impl_->options.read_only) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", impl_->dir, " is open read-only; nothing is written"));
  }
  std::lock_guard<std::mutex> append_lock(impl_->append_mu);
  RETURN_IF_ERROR(WriteRefusal());
  return impl_->WriteBehindDurable();
}

absl::Status EventLog::Impl::WriteBehindDurable() {
  // Only a log without write_behind has no meta "derived", and then nothing
  // waits: its appends write everything.
  if (!derived_marked) return absl::OkStatus();
  Head marker;
  uint64_t cut = 0;
  {
    std::lock_guard<std::mutex> head_lock(head_mu);
    marker = durable_head;
    cut = durable_seq;
  }
  if (marker.position == derived.position) {
    bool waiting = false;
    {
      std::shared_lock<std::shared_mutex> lock(window_mu);
      waiting = !active->empty();
    }
    if (!waiting) return absl::OkStatus();
  }
  return WriteBehind(cut, marker);
}

absl::StatusOr<EventLog::ReadPoint> EventLog::PinWrittenBehind() const {
  if (impl_->options.read_only || !impl_->window_used) {
    return Pin(ReadView::kDurable);
  }
  std::lock_guard<std::mutex> append_lock(impl_->append_mu);
  // After a write error nothing more is written: the window is read
  // through WindowAt.
  if (!WriteRefusal().ok()) return Pin(ReadView::kDurable);
  // Everything appended durable first: the point below is then a new
  // snapshot, which sees the ingested files (a durable_view kept for an
  // unsynced append would predate them).
  RETURN_IF_ERROR(const_cast<EventLog*>(this)->Sync());
  RETURN_IF_ERROR(impl_->WriteBehindDurable());
  return Pin(ReadView::kDurable);
}

std::shared_ptr<const KeyOverlay> EventLog::WindowAt(
    rocksdb::ColumnFamilyHandle* cf, const ReadPoint& at) const {
  if (at.derived_ == nullptr) return nullptr;
  std::optional<storage_internal::DerivedFamily> family;
  if (cf == impl_->cf(kStreams)) family = storage_internal::kDerivedStreams;
  if (cf == impl_->cf(kProjections)) {
    family = storage_internal::kDerivedProjections;
  }
  if (!family.has_value()) return nullptr;
  auto window = std::make_shared<KeyOverlay>();
  {
    std::shared_lock<std::shared_mutex> lock(impl_->window_mu);
    for (const auto& table : at.derived_->tables) {
      table->Collect(*family, "", "", at.derived_->max_write_seq, window.get());
    }
  }
  if (window->empty()) return nullptr;
  return window;
}

uint64_t EventLog::derived_position() const {
  std::lock_guard<std::mutex> append_lock(impl_->append_mu);
  return impl_->derived_marked ? impl_->derived.position
                               : impl_->GetHead().position;
}

EventLog::WriteBehindStats EventLog::write_behind_stats() const {
  std::lock_guard<std::mutex> append_lock(impl_->append_mu);
  return impl_->write_behind_stats;
}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(
    const std::string& dir, const EventLogOptions& options) {
  rocksdb::Options db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  // A torn last WAL record (a crash mid-write) is dropped: that append was
  // never acknowledged. A damaged record anywhere else is Corruption at open
  // (DATA_LOSS), never a silently shorter log: kPointInTimeRecovery would
  // recover up to the damaged record and drop the acknowledged commands
  // after it without an error (tests/corruption_test.cc). Needs
  // recycle_log_file_num = 0 (recycled files end in old, "corrupt" records).
  db_options.wal_recovery_mode =
      rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  db_options.paranoid_checks = true;
  db_options.max_total_wal_size = options.memtables_bytes_max > 0
                                      ? options.memtables_bytes_max
                                      : kWalBytesMax;
  if (options.env != nullptr) db_options.env = options.env;

  // Memory is bounded whatever the size of the log (storage/FORMAT.md
  // "RocksDB options"): one cache of kRocksDbMemoryBytes holds the data,
  // index and filter blocks of every column family and is charged for the
  // memtables too, which may take up to kMemtablesBytesMax of it; past that
  // the largest memtable is flushed, and writes wait (allow_stall) rather
  // than let memtables outgrow the budget while flushes catch up.
  rocksdb::LRUCacheOptions cache_options;
  cache_options.capacity = kRocksDbMemoryBytes;
  // Index and filter partitions go to the high-priority half: data blocks
  // (read once by scans) do not push them out.
  cache_options.high_pri_pool_ratio = 0.5;
  const std::shared_ptr<rocksdb::Cache> block_cache =
      rocksdb::NewLRUCache(cache_options);
  db_options.write_buffer_manager =
      std::make_shared<rocksdb::WriteBufferManager>(
          options.memtables_bytes_max > 0 ? options.memtables_bytes_max
                                          : kMemtablesBytesMax,
          block_cache, /*allow_stall=*/true);

  // point_lookups: the append path looks keys up one by one (command ids,
  // stream heads, records), many of them absent: bloom filters pay. Events
  // are read by position in order (iterators) and never looked up missing:
  // no filter, which is also the largest filter saved.
  auto cf_options_for = [&](size_t write_buffer_bytes, bool point_lookups,
                            bool filter) {
    rocksdb::ColumnFamilyOptions cf_options;
    cf_options.level_compaction_dynamic_level_bytes = true;
    cf_options.write_buffer_size =
        options.memtables_bytes_max > 0
            ? std::min(write_buffer_bytes, options.memtables_bytes_max / 4)
            : write_buffer_bytes;
    // Envelopes and records are protobufs full of repeated ids: LZ4 roughly
    // halves them on disk for little CPU (flushes and compactions run in
    // the background).
    cf_options.compression = rocksdb::kLZ4Compression;
    rocksdb::BlockBasedTableOptions table_options;
    // Bloom filters: every new command id is a miss in "commands", and every
    // first append to a stream a miss in "streams"; filters keep those misses
    // off the disk.
    if (filter) {
      table_options.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    }
    table_options.block_cache = block_cache;
    // Index and filter blocks live in the bounded cache too (otherwise every
    // open table keeps its own in memory, and memory grows with the log).
    // Partitioned (kMetadataBlockBytes pieces under a small top-level index,
    // which stays pinned): a lookup loads the pieces it needs, not a whole
    // file's filter and index -- evicted and read back on every miss, those
    // cost far more than the lookup (FORMAT.md).
    table_options.cache_index_and_filter_blocks = true;
    table_options.cache_index_and_filter_blocks_with_high_priority = true;
    table_options.pin_l0_filter_and_index_blocks_in_cache = true;
    table_options.index_type =
        rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
    table_options.partition_filters = filter;
    table_options.metadata_block_size = kMetadataBlockBytes;
    table_options.pin_top_level_index_and_filter = true;
    cf_options.table_factory.reset(
        rocksdb::NewBlockBasedTableFactory(table_options));
    if (point_lookups) {
      // A bloom filter over the memtable: the append path looks up every
      // new command id (a miss) and stream heads; the filter answers most
      // misses without walking the skiplist.
      cf_options.memtable_whole_key_filtering = true;
      cf_options.memtable_prefix_bloom_size_ratio = kMemtableBloomRatio;
    }
    return cf_options;
  };
  const rocksdb::ColumnFamilyOptions small =
      cf_options_for(kMemtableBytesSmall, false, true);
  // Node hashes are random bytes: LZ4 would spend flush and compaction CPU
  // finding nothing to compress.
  rocksdb::ColumnFamilyOptions merkle =
      cf_options_for(kMemtableBytes, false, false);
  merkle.compression = rocksdb::kNoCompression;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, small},
      {kEventsCf, cf_options_for(kMemtableBytesEvents, false, false)},
      {kStreamsCf, cf_options_for(kMemtableBytes, true, true)},
      {kCommandsCf, cf_options_for(kMemtableBytes, true, true)},
      {kMetaCf, small},
      {kProjectionsCf, cf_options_for(kMemtableBytes, true, true)},
      // Read by key, never looked up missing, written in key order per level.
      {kMerkleCf, merkle},
  };

  RETURN_IF_ERROR(CheckLedgerDirectory(dir, db_options));

  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status s;
  EventLogOpenStats unused_stats;
  EventLogOpenStats& stats =
      options.open_stats != nullptr ? *options.open_stats : unused_stats;
  absl::Time step_began = absl::Now();
  // The time since the last call (or since the open began).
  auto step = [&step_began] {
    const absl::Time now = absl::Now();
    const absl::Duration took = now - step_began;
    step_began = now;
    return took;
  };
  if (options.read_only) {
    // A read-only open cannot create the "merkle" column family that a
    // database from before the tree lacks: say how to add it.
    std::vector<std::string> families;
    if (rocksdb::DB::ListColumnFamilies(db_options, dir, &families).ok() &&
        std::find(families.begin(), families.end(), kMerkleCf) ==
            families.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database ", dir,
          " has no Merkle tree yet (written before it "
          "existed): open it for writing once (e.g. storeledger rebuild) to "
          "build it"));
    }
    // A writer beside it (storeledgerd) may delete a table file -- after a
    // compaction, a flush, a write-behind's ingestion -- between the
    // MANIFEST read and the file's open: that is a race, not damage, and a
    // new attempt reads the newer MANIFEST. A file still missing after
    // kReadOnlyOpenAttempts is reported.
    for (int attempt = 1;; ++attempt) {
      s = rocksdb::DB::OpenForReadOnly(db_options, dir, descriptors,
                                       &impl->handles, &raw_db);
      if (s.ok() || attempt == kReadOnlyOpenAttempts ||
          !absl::StrContains(s.ToString(), "No such file or directory")) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(10 * attempt));
    }
  } else {
    s = rocksdb::DB::Open(db_options, dir, descriptors, &impl->handles,
                          &raw_db);
  }
  stats.rocksdb_open = step();
  if (!s.ok()) {
    if (IsLockError(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("database ", dir, " is in use by another process (",
                       s.ToString(), ")"));
    }
    return FromRocks(s, absl::StrCat("open database ", dir));
  }
  impl->db.reset(raw_db);
  if (impl->handles.size() != kCfCount) {
    return absl::InternalError(
        absl::StrCat("open database ", dir, ": got ", impl->handles.size(),
                     " column families, expected ", kCfCount));
  }
  RETURN_IF_ERROR(impl->Initialize());
  stats.initialize = step();
  RETURN_IF_ERROR(impl->LoadHead());
  stats.load_head = step();
  if (options.merkle_tree) {
    ASSIGN_OR_RETURN(
        impl->merkle_range,
        LoadMerkleTree(impl->db.get(), impl->cf(kEvents), impl->cf(kMerkle),
                       impl->head.position, options.read_only));
  }
  stats.merkle = step();
  if (!options.read_only) {
    // SST files a write-behind left when it was stopped before RocksDB took
    // them: not part of the database.
    std::vector<std::string> children;
    if (impl->db->GetEnv()->GetChildren(dir, &children).ok()) {
      for (const std::string& child : children) {
        if (absl::StartsWith(child, kWriteBehindFilePrefix)) {
          RETURN_IF_ERROR(FromRocks(
              impl->db->GetEnv()->DeleteFile(absl::StrCat(dir, "/", child)),
              "remove an unfinished write-behind file"));
        }
      }
    }
  }
  Impl& opened = *impl;
  opened.window_used = options.write_behind;
  std::unique_ptr<EventLog> log(new EventLog(std::move(impl)));
  if (options.recover_window) RETURN_IF_ERROR(opened.RecoverWindow(*log));
  stats.window_events = opened.GetHead().position - opened.derived.position;
  if (!options.read_only) {
    if (options.write_behind && !opened.derived_marked) {
      // From here on meta "derived" says how far the column families are
      // written; now they are up to the head.
      rocksdb::WriteBatch batch;
      RETURN_IF_ERROR(FromRocks(batch.Put(opened.cf(kMeta), kMetaDerivedKey,
                                          EncodeHead(opened.GetHead())),
                                "open"));
      rocksdb::WriteOptions write_options;
      write_options.sync = true;
      RETURN_IF_ERROR(
          FromRocks(opened.db->Write(write_options, &batch), "open"));
      opened.derived = opened.GetHead();
      opened.derived_marked = true;
    } else if (!options.write_behind && opened.derived_marked) {
      // Back to everything in one WriteBatch: the window goes to RocksDB,
      // and without meta "derived" the column families are up to the head.
      if (opened.derived.position != opened.GetHead().position) {
        RETURN_IF_ERROR(opened.WriteBehind(0, opened.GetHead()));
      }
      rocksdb::WriteBatch batch;
      RETURN_IF_ERROR(
          FromRocks(batch.Delete(opened.cf(kMeta), kMetaDerivedKey), "open"));
      rocksdb::WriteOptions write_options;
      write_options.sync = true;
      RETURN_IF_ERROR(
          FromRocks(opened.db->Write(write_options, &batch), "open"));
      opened.derived_marked = false;
    } else {
      RETURN_IF_ERROR(opened.MaybeWriteBehind());
    }
  }
  stats.window = step();
  opened.opened = true;
  return log;
}

namespace {

// The links of a follower's envelope (already verified against its own
// hash at `position`) to the log it joins.
absl::Status CheckReplicated(uint64_t position, absl::string_view head_hash,
                             uint64_t stream_version,
                             const Envelope& envelope) {
  if (envelope.prev_hash() != head_hash) {
    return absl::DataLossError(
        absl::StrCat("event at position ", position, ": prev_hash ",
                     ToHex(envelope.prev_hash()), " does not link to the hash ",
                     ToHex(head_hash), " of position ", position - 1));
  }
  if (envelope.stream_version() != stream_version) {
    return absl::DataLossError(absl::StrCat(
        "event at position ", position, ": stream ", envelope.stream_id(),
        " version ", envelope.stream_version(), ", expected ", stream_version));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AppendResult> EventLog::Impl::AddToBatch(
    AppendRequest& request, GroupState& state, GroupBatch& batch) const {
  Head new_head = state.head;
  // Stream heads as this request leaves them; ordered so that the batch is
  // the same for the same request.
  std::map<std::string, StreamHead, std::less<>> touched;
  std::vector<std::string> leaf_hashes;

  for (size_t i = 0; i < request.events.size(); ++i) {
    Envelope& envelope = request.events[i].envelope;
    if (!request.events[i].stored.empty()) {
      RETURN_IF_ERROR(VerifyStoredEnvelopeInto(
          new_head.position + 1, request.events[i].stored, &envelope));
    }
    const int64_t expected = request.events[i].expected_version;
    const std::string& stream_id = envelope.stream_id();

    auto it = touched.find(stream_id);
    if (it == touched.end()) {
      auto in_group = state.stream_heads.find(stream_id);
      if (in_group != state.stream_heads.end()) {
        it = touched.emplace(stream_id, in_group->second).first;
      } else if (auto cached = head_cache.find(stream_id);
                 cached != head_cache.end()) {
        it = touched.emplace(stream_id, cached->second).first;
      } else {
        ASSIGN_OR_RETURN(std::optional<StreamHead> stored,
                         GetStreamHead(stream_id, nullptr, nullptr));
        it = touched.emplace(stream_id, stored.value_or(StreamHead())).first;
      }
    }
    StreamHead& stream_head = it->second;
    const uint64_t actual = stream_head.version();
    if (expected != kExpectAny && static_cast<uint64_t>(expected) != actual) {
      return absl::AbortedError(
          absl::StrCat("stream ", stream_id, ": expected version ", expected,
                       expected == kExpectNoStream ? " (no stream)" : "",
                       ", actual ", actual));
    }

    const uint64_t position = new_head.position + 1;
    std::string bytes;
    std::string hash;
    if (!request.events[i].stored.empty()) {
      // A follower's copy of what the leader stored: checked, kept as is.
      RETURN_IF_ERROR(
          CheckReplicated(position, new_head.hash, actual + 1, envelope));
      bytes = std::move(request.events[i].stored);
      hash = envelope.hash();
    } else {
      envelope.set_position(position);
      envelope.set_stream_version(actual + 1);
      envelope.set_prev_hash(new_head.hash);
      envelope.clear_hash();
      bytes = SerializeDeterministic(envelope);
      // Check the record before it is written: the limit covers the hash.
      if (bytes.size() + kHashFieldBytes > kEnvelopeBytesMax) {
        return absl::InvalidArgumentError(
            absl::StrCat("event ", i, " of stream ", stream_id,
                         ": envelope is ", bytes.size() + kHashFieldBytes,
                         " bytes, over the limit of ", kEnvelopeBytesMax));
      }
      hash = Sha256Concat(new_head.hash, bytes);
      // Field 12 is the last field, so its encoding is the tail of the bytes.
      bytes.push_back(kHashFieldTag);
      bytes.push_back(static_cast<char>(kHashBytes));
      bytes.append(hash);
      envelope.set_hash(hash);
    }
    // Our own bookkeeping (a follower's copy was checked above, as a status):
    // the event is at the next position and linked to the one before it.
    SL_CHECK(envelope.position() == position &&
                 envelope.prev_hash() == new_head.hash &&
                 envelope.hash() == hash,
             "event " << i << " of stream " << stream_id
                      << " is not linked at position " << position);
    if (options.merkle_tree) leaf_hashes.push_back(merkle::LeafHash(bytes));

    batch.Put(kEvents, PositionKey(position), std::move(bytes));
    batch.Put(kStreams, StreamIndexKey(stream_id, actual + 1),
              PositionKey(position));
    stream_head.set_version(actual + 1);
    *stream_head.mutable_last_occurred_at() = envelope.occurred_at();
    new_head.position = position;
    new_head.hash = hash;
  }

  // Deletes first, so that a key both deleted and put ends up put.
  for (std::string& key : request.projection_deletes) {
    batch.Delete(kProjections, std::move(key));
  }
  for (auto& [key, value] : request.projection_puts) {
    batch.Put(kProjections, std::move(key), std::move(value));
  }

  AppendResult result;
  if (!request.events.empty()) {
    result.first_position = state.head.position + 1;
    result.last_position = new_head.position;
  }
  result.head_hash = new_head.hash;
  if (request.outcome.has_value()) {
    v1::CommandResult* command_result = request.outcome->mutable_result();
    command_result->set_first_position(result.first_position);
    command_result->set_last_position(result.last_position);
    batch.Put(kCommands, command_result->command_id(),
              SerializeDeterministic(*request.outcome));
  }

  for (auto& [stream_id, stream_head] : touched) {
    state.stream_heads[stream_id] = std::move(stream_head);
  }
  state.head = std::move(new_head);
  for (std::string& leaf_hash : leaf_hashes) {
    state.leaf_hashes.push_back(std::move(leaf_hash));
  }
  return result;
}

namespace {

// The checks that need no state: stream ids, expected versions, unknown
// fields, the outcome's command id.
absl::Status ValidateRequest(const AppendRequest& request) {
  for (const NewEvent& event : request.events) {
    // A follower's stored bytes are checked when parsed (AddToBatch).
    if (!event.stored.empty()) continue;
    RETURN_IF_ERROR(ValidateStreamId(event.envelope.stream_id()));
    if (event.expected_version < kExpectAny) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stream ", event.envelope.stream_id(), ": expected version ",
          event.expected_version, " is below ", kExpectAny));
    }
    if (!event.envelope.GetReflection()
             ->GetUnknownFields(event.envelope)
             .empty()) {
      // They would serialize after the hash field, which must be last.
      return absl::InvalidArgumentError(
          absl::StrCat("stream ", event.envelope.stream_id(),
                       ": envelope carries unknown fields"));
    }
  }
  if (request.outcome.has_value() &&
      request.outcome->result().command_id().empty()) {
    return absl::InvalidArgumentError("outcome has an empty command id");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<AppendResult> EventLog::Append(AppendRequest request) {
  std::vector<AppendRequest> requests;
  requests.push_back(std::move(request));
  ASSIGN_OR_RETURN(std::vector<AppendResult> results,
                   AppendBatch(std::move(requests)));
  return std::move(results.front());
}

absl::StatusOr<std::vector<AppendResult>> EventLog::AppendReplicated(
    std::vector<AppendRequest> requests) {
  for (const AppendRequest& request : requests) {
    for (const NewEvent& event : request.events) {
      if (event.stored.empty()) {
        return absl::InvalidArgumentError(
            "AppendReplicated: an event without its stored bytes");
      }
    }
  }
  return AppendBatchImpl(std::move(requests), nullptr, /*sync=*/true,
                         /*replicated=*/true);
}

absl::StatusOr<std::vector<AppendResult>> EventLog::AppendBatch(
    std::vector<AppendRequest> requests, size_t* failed_request, bool sync) {
  return AppendBatchImpl(std::move(requests), failed_request, sync,
                         /*replicated=*/false);
}

absl::StatusOr<std::vector<AppendResult>> EventLog::AppendBatchImpl(
    std::vector<AppendRequest> requests, size_t* failed_request, bool sync,
    bool replicated) {
  size_t ignored = 0;
  if (failed_request == nullptr) failed_request = &ignored;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (absl::Status valid = ValidateRequest(requests[i]); !valid.ok()) {
      *failed_request = i;
      return valid;
    }
  }
  if (impl_->options.read_only) {
    *failed_request = 0;
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", impl_->dir, " is open read-only; appends are refused"));
  }
  if (requests.empty()) return std::vector<AppendResult>();

  std::lock_guard<std::mutex> append_lock(impl_->append_mu);
  if (absl::Status refused = WriteRefusal(); !refused.ok()) {
    *failed_request = 0;
    return refused;
  }
  const bool synced = sync && impl_->options.sync;
  const Head old_head = impl_->GetHead();
  Impl::GroupState state{old_head, {}, {}};
  GroupBatch batch;
  std::vector<AppendResult> results;
  results.reserve(requests.size());
  // Each request against the log as the ones before it leave it; the first
  // that fails its checks fails them all, and nothing is written.
  for (size_t i = 0; i < requests.size(); ++i) {
    absl::StatusOr<AppendResult> result =
        impl_->AddToBatch(requests[i], state, batch);
    if (!result.ok()) {
      *failed_request = i;
      return result.status();
    }
    results.push_back(*std::move(result));
  }
  // Each stream's head once per call, as the requests leave it (not once
  // per request: a group of a thousand commands often touches a store's
  // stream several times).
  for (const auto& [stream_id, stream_head] : state.stream_heads) {
    batch.Put(kStreams, stream_id, SerializeDeterministic(stream_head));
  }
  if (state.head.position != old_head.position) {
    batch.Put(kMeta, kMetaHeadKey, EncodeHead(state.head));
  }
  // The leaves and the nodes they complete (FORMAT.md "The Merkle tree").
  merkle::CompactRange merkle_range = impl_->merkle_range;
  for (std::string& leaf_hash : state.leaf_hashes) {
    merkle_range.Append(std::move(leaf_hash),
                        [&](merkle::NodeId id, const std::string& hash) {
                          if (MerkleNodeStored(id)) {
                            batch.Put(kMerkle, merkle::NodeKey(id), hash);
                          }
                        });
  }
  CheckPositionsContiguous(batch, kEvents, old_head, state.head);

  // before_write's refusal, or the write's failure.
  std::optional<absl::Status> write_error;
  if (state.head.position != old_head.position && !replicated &&
      impl_->options.before_write) {
    StoredGroup stored;
    stored.first_position = old_head.position + 1;
    stored.prev_hash = old_head.hash;
    stored.envelopes = batch.PutValues(kEvents);
    stored.outcomes = batch.PutValues(kCommands);
    if (absl::Status refused = impl_->options.before_write(stored);
        !refused.ok()) {
      write_error = refused;
    }
  }
  if (!write_error.has_value() && batch.size() > 0) {
    rocksdb::WriteBatch write_batch;
    rocksdb::Status s =
        batch.Build(impl_->handles, &write_batch, impl_->options.write_behind);
    if (s.ok() && !synced && impl_->options.sync) {
      // Readers keep reading what is durable until a Sync covers this
      // write -- also a Sync that ends before the head moves up to it.
      std::lock_guard<std::mutex> head_lock(impl_->head_mu);
      if (impl_->durable_view == nullptr) {
        impl_->durable_view = impl_->NewSnapshot();
      }
      impl_->unsynced_write_in_flight = true;
    }
    if (s.ok() && impl_->options.write_batch_tap) {
      impl_->options.write_batch_tap(View(write_batch.Data()));
    }
    if (!s.ok()) {
      // Building the batch failed: nothing reached RocksDB.
      write_error = absl::InternalError(FromRocks(s, "append").message());
    } else {
      rocksdb::WriteOptions write_options;
      write_options.sync = synced;
      if (absl::Status written =
              impl_->Write(write_options, &write_batch, "append");
          !written.ok()) {
        write_error = written;
      }
    }
  }
  if (write_error.has_value()) {
    {
      // The view stays: nothing after this write is ever acknowledged.
      std::lock_guard<std::mutex> head_lock(impl_->head_mu);
      impl_->unsynced_write_in_flight = false;
    }
    {
      std::lock_guard<std::mutex> failed_lock(impl_->failed_mu);
      if (!impl_->failed.has_value()) impl_->failed = *write_error;
    }
    *failed_request = requests.size();
    return *std::move(write_error);
  }

  if (impl_->head_cache.size() + state.stream_heads.size() >
      kHeadCacheStreamsMax) {
    impl_->head_cache.clear();
  }
  for (auto& [stream_id, stream_head] : state.stream_heads) {
    impl_->head_cache.insert_or_assign(stream_id, std::move(stream_head));
  }
  impl_->merkle_range = std::move(merkle_range);
  // The derived writes wait in the window, tagged with this append's number
  // (before the head moves: a reader of the new head finds them).
  const uint64_t seq = ++impl_->write_seq;
  if (impl_->options.write_behind) {
    std::unique_lock<std::shared_mutex> lock(impl_->window_mu);
    batch.ForEachDerived([&](storage_internal::DerivedFamily family,
                             std::string key,
                             std::optional<std::string> value) {
      impl_->active->Add(family, std::move(key), std::move(value), seq);
    });
  }
  {
    // Only now, after the write succeeded, do readers see the new head; the
    // durable one once it is synced (here, or by a later Sync). With
    // EventLogOptions::sync off nothing is ever promised durable: both move
    // together.
    std::lock_guard<std::mutex> head_lock(impl_->head_mu);
    impl_->head = state.head;
    impl_->appended_seq = seq;
    impl_->unsynced_write_in_flight = false;
    if (synced || !impl_->options.sync) {
      impl_->durable_head = state.head;
      impl_->durable_seq = seq;
      // A synced write covers the unsynced ones before it.
      impl_->durable_view.reset();
    }
  }
  // The window's durable part, once it is the write-behind distance long.
  // The append itself is done: a failure here refuses the next one.
  impl_->MaybeWriteBehind().IgnoreError();
  return results;
}

Head EventLog::head() const { return impl_->GetDurableHead(); }

Head EventLog::appended_head() const { return impl_->GetHead(); }

absl::Status EventLog::WriteRefusal() const {
  std::lock_guard<std::mutex> lock(impl_->failed_mu);
  if (!impl_->failed.has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "ledger is read-only after a write error: ", impl_->failed->message(),
      "; reopen to recover"));
}

absl::Status EventLog::RunBetweenWrites(
    const std::function<absl::Status()>& fn) const {
  std::lock_guard<std::mutex> write_lock(impl_->rocks_write_mu);
  RETURN_IF_ERROR(WriteRefusal());
  return fn();
}

absl::Status EventLog::Sync() {
  if (impl_->options.read_only) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database ", impl_->dir, " is open read-only; nothing to sync"));
  }
  // Everything appended before this point is covered by the WAL sync below
  // (RocksDB hands every record to the OS as it appends it).
  Head target;
  uint64_t target_seq = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->head_mu);
    target = impl_->head;
    target_seq = impl_->appended_seq;
  }
  if (!impl_->options.sync) return absl::OkStatus();
  RETURN_IF_ERROR(WriteRefusal());
  // Every write this snapshot sees reached the WAL before the sync below
  // begins, so it is durable once the sync returns: the readers' view then,
  // if appends made meanwhile still await a sync.
  std::shared_ptr<const rocksdb::Snapshot> covered = impl_->NewSnapshot();
  // An empty synced write, not DB::SyncWAL: it goes through RocksDB's write
  // queue behind every write before it, so a write whose WAL append failed
  // has already stopped the database (its error comes back here). SyncWAL
  // runs beside the queue: called while a concurrent write's append is
  // failing, it reaches the failed WAL file, which Debian's librocksdb 7.8
  // (built with assertions) answers with an abort
  // (WritableFileWriter::AssertFalseAndGetStatusForPrevError).
  rocksdb::WriteOptions synced_write;
  synced_write.sync = true;
  rocksdb::WriteBatch nothing;
  // A failure is recorded as after a failed write: whether the unsynced
  // appends reached the disk is unknown, so the log refuses further appends
  // until reopened.
  RETURN_IF_ERROR(impl_->Write(synced_write, &nothing, "sync the WAL"));
  {
    std::lock_guard<std::mutex> lock(impl_->head_mu);
    if (target.position > impl_->durable_head.position) {
      impl_->durable_head = target;
    }
    impl_->durable_seq = std::max(impl_->durable_seq, target_seq);
    if (impl_->head.position == impl_->durable_head.position &&
        !impl_->unsynced_write_in_flight) {
      impl_->durable_view.reset();
    } else if (impl_->durable_view == nullptr ||
               impl_->durable_view->GetSequenceNumber() <
                   covered->GetSequenceNumber()) {
      impl_->durable_view = std::move(covered);
    }
  }
  // A newer durable view may no longer need an ingested table.
  if (impl_->options.write_behind) impl_->PruneFrozen();
  return absl::OkStatus();
}

absl::StatusOr<Envelope> EventLog::Read(uint64_t position) const {
  const uint64_t head_position = impl_->GetDurableHead().position;
  if (position == 0 || position > head_position) {
    return absl::NotFoundError(absl::StrCat("no event at position ", position,
                                            " (head is ", head_position, ")"));
  }
  return impl_->ReadAt(position);
}

absl::Status EventLog::Scan(
    uint64_t after_position,
    const std::function<bool(const Envelope&, absl::string_view raw)>& fn)
    const {
  // One arena for the whole scan, freed every kEnvelopeBatchEvents envelopes:
  // fn sees each envelope only for the length of its call.
  EnvelopeBatch batch;
  return impl_->ScanVerified(
      after_position,
      [&batch] {
        if (batch.size() >= kEnvelopeBatchEvents) batch.Clear();
        return batch.Add();
      },
      [&fn](const Envelope& envelope, absl::string_view raw) {
        return fn(envelope, raw);
      });
}

absl::Status EventLog::ScanBatches(
    uint64_t after_position, size_t batch_events,
    const std::function<bool(EnvelopeBatch*)>& fn, BatchHashes hashes) const {
  const bool by_consumer = hashes == BatchHashes::kByConsumer;
  EnvelopeBatch batch;
  bool stopped = false;
  const absl::Status status = impl_->ScanVerified(
      after_position, [&batch] { return batch.Add(); },
      [&](const Envelope&, absl::string_view raw) {
        if (by_consumer) batch.KeepRaw(raw);
        if (batch.size() < batch_events) return true;
        stopped = !fn(&batch);
        batch.Clear();  // what fn handed back (it may have swapped)
        return !stopped;
      },
      /*check_hash=*/!by_consumer);
  if (!status.ok()) {
    // The envelopes read before the failure and not handed over: a hash
    // among them that fails is the first error in log order.
    if (by_consumer) RETURN_IF_ERROR(batch.VerifyHashes());
    return status;
  }
  if (!stopped && !batch.empty()) fn(&batch);
  return absl::OkStatus();
}

absl::Status EventLog::ScanStream(
    absl::string_view stream_id, uint64_t after_version,
    const std::function<bool(const Envelope&)>& fn) const {
  RETURN_IF_ERROR(ValidateStreamId(stream_id));
  // One snapshot for the head and the index, so that they agree.
  const ReadPoint at = Pin(ReadView::kDurable);
  const rocksdb::Snapshot* snapshot = at.snapshot_.get();

  ASSIGN_OR_RETURN(
      std::optional<StreamHead> stream_head,
      impl_->GetStreamHead(stream_id, snapshot, at.derived_.get()));
  const uint64_t last_version =
      stream_head.has_value() ? stream_head->version() : 0;
  if (after_version >= last_version) return absl::OkStatus();

  const std::string prefix = StreamIndexPrefix(stream_id);
  uint64_t expected = after_version + 1;
  absl::Status checked;
  bool stopped = false;
  RETURN_IF_ERROR(impl_->ScanDerived(
      kStreams, StreamIndexKey(stream_id, expected), PrefixSuccessor(prefix),
      snapshot, at.derived_.get(),
      [&](absl::string_view key, absl::string_view value) {
        if (expected > last_version) return false;
        if (key.size() != prefix.size() + kPositionBytes ||
            value.size() != kPositionBytes) {
          checked = absl::DataLossError(absl::StrCat(
              "stream ", stream_id, ": malformed index entry after version ",
              expected - 1));
          return false;
        }
        const uint64_t version = DecodeBigEndian64(key.substr(prefix.size()));
        if (version != expected) {
          checked = absl::DataLossError(
              absl::StrCat("stream ", stream_id, ": version ", expected,
                           " is missing from the index"));
          return false;
        }
        const uint64_t position = DecodeBigEndian64(value);
        absl::StatusOr<Envelope> envelope = impl_->ReadAt(position);
        if (!envelope.ok()) {
          checked = envelope.status();
          return false;
        }
        if (envelope->stream_id() != stream_id ||
            envelope->stream_version() != version) {
          checked = absl::DataLossError(absl::StrCat(
              "stream ", stream_id, " version ", version,
              " points at position ", position, ", which holds stream ",
              envelope->stream_id(), " version ", envelope->stream_version()));
          return false;
        }
        if (!fn(*envelope)) {
          stopped = true;
          return false;
        }
        ++expected;
        return true;
      }));
  RETURN_IF_ERROR(checked);
  if (stopped) return absl::OkStatus();
  if (expected != last_version + 1) {
    return absl::DataLossError(absl::StrCat(
        "stream ", stream_id, ": version ", expected,
        " is missing from the index (head is version ", last_version, ")"));
  }
  return absl::OkStatus();
}

EventLog::ReadPoint EventLog::Pin(ReadView view) const {
  if (view == ReadView::kAppended) return ReadPoint(nullptr, nullptr);
  auto [snapshot, derived] = impl_->PinDurable();
  return ReadPoint(std::move(snapshot), std::move(derived));
}

absl::StatusOr<std::optional<StreamHead>> EventLog::GetStreamHead(
    absl::string_view stream_id, ReadView view) const {
  return GetStreamHead(stream_id, Pin(view));
}

absl::StatusOr<std::optional<StreamHead>> EventLog::GetStreamHead(
    absl::string_view stream_id, const ReadPoint& at) const {
  RETURN_IF_ERROR(ValidateStreamId(stream_id));
  return impl_->GetStreamHead(stream_id, at.snapshot_.get(), at.derived_.get());
}

absl::StatusOr<std::optional<StoredOutcome>> EventLog::GetOutcome(
    absl::string_view command_id, ReadView view) const {
  ASSIGN_OR_RETURN(
      std::optional<std::string> bytes,
      impl_->Get(kCommands, command_id, Pin(view).snapshot_.get()));
  if (!bytes.has_value()) return std::nullopt;
  StoredOutcome outcome;
  if (!outcome.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat("stored outcome of command \"",
                                            absl::CEscape(command_id),
                                            "\" does not parse"));
  }
  return outcome;
}

absl::StatusOr<std::optional<std::string>> EventLog::GetProjection(
    absl::string_view key, ReadView view) const {
  return GetProjection(key, Pin(view));
}

absl::StatusOr<std::optional<std::string>> EventLog::GetProjection(
    absl::string_view key, const ReadPoint& at) const {
  return impl_->GetDerived(kProjections, key, at.snapshot_.get(),
                           at.derived_.get());
}

absl::Status EventLog::ScanProjections(
    absl::string_view prefix,
    const std::function<bool(absl::string_view key, absl::string_view value)>&
        fn,
    ReadView view) const {
  return ScanProjections(prefix, fn, Pin(view));
}

absl::Status EventLog::ScanProjections(
    absl::string_view prefix,
    const std::function<bool(absl::string_view key, absl::string_view value)>&
        fn,
    const ReadPoint& at) const {
  return impl_->ScanDerived(kProjections, prefix, PrefixSuccessor(prefix),
                            at.snapshot_.get(), at.derived_.get(), fn);
}

rocksdb::DB* EventLog::db() const { return impl_->db.get(); }
rocksdb::ColumnFamilyHandle* EventLog::events_cf() const {
  return impl_->cf(kEvents);
}
rocksdb::ColumnFamilyHandle* EventLog::streams_cf() const {
  return impl_->cf(kStreams);
}
rocksdb::ColumnFamilyHandle* EventLog::commands_cf() const {
  return impl_->cf(kCommands);
}
rocksdb::ColumnFamilyHandle* EventLog::meta_cf() const {
  return impl_->cf(kMeta);
}
rocksdb::ColumnFamilyHandle* EventLog::projections_cf() const {
  return impl_->cf(kProjections);
}
rocksdb::ColumnFamilyHandle* EventLog::merkle_cf() const {
  return impl_->cf(kMerkle);
}

}  // namespace storeledger
