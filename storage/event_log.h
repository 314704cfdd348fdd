// The event log on RocksDB (DESIGN.md §3, storage/FORMAT.md). Append-only:
// contiguous global positions from 1, per-stream versions from 1, expected
// version checks, a SHA-256 hash chain, stored command outcomes (idempotency),
// and a projections column family that the layers above write in the same
// WriteBatch as the events. It knows nothing of the rules.
//
// An EventLog is safe for concurrent use from multiple threads; appends are
// serialised internally. An acknowledged Append is durable (WAL synced)
// unless EventLogOptions::sync is false, or the caller asked for an
// unsynced append and has not called Sync() since.
#ifndef STORELEDGER_STORAGE_EVENT_LOG_H_
#define STORELEDGER_STORAGE_EVENT_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "storage/overlay_iterator.h"
#include "storeledger/v1/ledger.pb.h"

namespace google::protobuf {
class Arena;
}  // namespace google::protobuf

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Env;
class Snapshot;
}  // namespace rocksdb

namespace storeledger {

namespace storage_internal {
struct DerivedView;
}  // namespace storage_internal
class EventLog;

using v1::Envelope;
using v1::StoredOutcome;
using v1::StreamHead;

inline constexpr int64_t kExpectAny = -1;      // any version
inline constexpr int64_t kExpectNoStream = 0;  // stream must not exist
// The format version a new ledger gets; one holding a diverged record
// (storage/diverged.h) carries kFormatVersionDiverged, which differs only
// by those records. This build opens both.
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kFormatVersionDiverged = 2;

// A group of appends as it is about to be stored (EventLogOptions::
// before_write): the exact bytes of its envelopes, positions first_position
// on, and the stored outcome (bytes(StoredOutcome)) of each request that has
// one, in request order. The views are valid during the call only.
struct StoredGroup {
  uint64_t first_position = 0;
  std::string prev_hash;  // hash at first_position - 1
  std::vector<absl::string_view> envelopes;
  std::vector<absl::string_view> outcomes;
};

// How long EventLog::Open took, step by step (storeledger-recovery-bench
// reports it): what an open after a crash spends where.
struct EventLogOpenStats {
  // rocksdb::DB::Open: the replay of the WAL (and the flush of what it
  // recovered) included.
  absl::Duration rocksdb_open;
  absl::Duration initialize;  // the format marker read (or written)
  absl::Duration load_head;   // meta "head" checked against the last event
  absl::Duration merkle;      // LoadMerkleTree: the right edge, built if short
  // The write-behind window a crash lost, folded from meta "derived" to the
  // head (and written behind when that is past the distance), and how many
  // events that was.
  absl::Duration window;
  uint64_t window_events = 0;
};

// The write-behind distance (EventLogOptions::write_behind): the derived
// writes of at most so many events, or so many bytes of them, are held in
// memory before they are written to RocksDB -- what an open after a crash
// folds from the log before it answers (storage/FORMAT.md "Written behind
// the log"). The fold runs at 130-160 k events/s (storeledger-recovery-
// bench, 2026-12-07): 50,000 keeps the open after a kill of a 10^7-event
// ledger near 0.6 s; at 100,000 it would approach the 1 s bound.
inline constexpr uint64_t kWriteBehindEventsMax = 50'000;
inline constexpr size_t kWriteBehindBytesMax = 64 << 20;

// The projection writes of the events after `after_position` up to the
// head, folded from the log onto the projections as they stand at
// `after_position` (read through `log` with EventLog::ReadView::kAppended):
// what an open adds to the write-behind window when it was lost in a crash.
// It calls `each` with every envelope it folds, in log order, so that the
// open derives the stream index and heads from the same scan of the log.
// The ledger's fold (ledger/ledger.h DeriveProjections); storage/ knows no
// rules.
using DeriveProjectionsFn = std::function<absl::Status(
    const EventLog& log, uint64_t after_position,
    const std::function<void(const Envelope&)>& each,
    std::vector<std::pair<std::string, std::string>>* puts)>;

struct EventLogOptions {
  // Create the database if missing. Default: true.
  bool create_if_missing = true;
  // Sync the WAL before acknowledging an append. Default: true.
  bool sync = true;
  // Open read-only (no appends; several readers may share a directory).
  // Default: false.
  bool read_only = false;
  // The RocksDB Env to use; not owned, must outlive the EventLog. Tests pass
  // one whose file system fails on purpose. Default: nullptr (Env::Default()).
  rocksdb::Env* env = nullptr;
  // Called with the bytes of every WriteBatch an append writes (RocksDB's
  // WriteBatch::Data()), just before it is written: storeledger-bench
  // replays them into raw RocksDB, to measure what the same writes cost
  // without deciding anything. Called by the appending thread. Default:
  // none.
  std::function<void(absl::string_view write_batch)> write_batch_tap = nullptr;
  // The memtables' budget (RocksDB's write_buffer_manager): past it the
  // largest memtable is flushed and writes wait for the flush. Tests shrink
  // it to reach it with a few thousand commands; each memtable is then at
  // most a quarter of it (an empty memtable's first arena block alone is an
  // eighth of its size). It also bounds the WAL kept for recovery. 0:
  // kMemtablesBytesMax, the memtable sizes and the WAL bound of
  // storage/FORMAT.md "RocksDB options". Default: 0.
  size_t memtables_bytes_max = 0;
  // Keep the Merkle tree over the log (FORMAT.md "The Merkle tree") in the
  // appends' WriteBatches, and build what is missing of it at open. Off only
  // to measure what it costs (storeledger-bench); a later open with it on
  // builds the tree from the log. Default: true.
  bool merkle_tree = true;
  // Called by the appending thread with every group of appends that adds
  // events (but those of AppendReplicated) before it is written. A status
  // other than ok writes nothing: every append of the group fails with that
  // status and the log refuses appends from then on, as after a write error.
  // replication/ publishes the group to its partition's stream here, so
  // that nothing is stored which the stream refused. Default: none.
  std::function<absl::Status(const StoredGroup& group)> before_write = nullptr;
  // Filled by Open with the time of each of its steps; not owned. Default:
  // nullptr (not measured).
  EventLogOpenStats* open_stats = nullptr;

  // Write the derived column families ("streams": index and heads;
  // "projections") behind the log: an append's synced WriteBatch holds the
  // envelopes, meta "head", the outcome and the Merkle nodes, and its
  // derived writes wait in memory (storage/write_behind.h) until the
  // write-behind distance is reached, then go to RocksDB as ingested SST
  // files with meta "derived", the position they reach. Reads see both.
  // Off: everything in the synced WriteBatch. Either way an open finds meta
  // "derived" behind the head after a crash and folds the log from there
  // (with derive_projections). Default: false.
  bool write_behind = false;
  // The write-behind distance; 0: kWriteBehindEventsMax and
  // kWriteBehindBytesMax. Tests shrink it. Default: 0.
  uint64_t write_behind_events_max = 0;
  size_t write_behind_bytes_max = 0;
  // Write what is waiting in memory when the EventLog is destroyed. Off
  // only in tests, to leave the log as a crash would. Default: true.
  bool write_behind_at_close = true;
  // Needed to open a log whose projections are behind its head (meta
  // "derived" short of it, after a crash): without it such an open fails
  // (kFailedPrecondition). Default: none.
  DeriveProjectionsFn derive_projections = nullptr;
  // Fold at open what a crash left of the write-behind window (above). Off
  // only for a read-only reader of the log alone (backup's check of its
  // copy's head), which must then read nothing of "streams" and
  // "projections". Default: true.
  bool recover_window = true;
};

// One event to append. The caller fills stream_id, expected_version and the
// envelope's event_id, command_id, event_type, occurred_at, recorded_at,
// policy_version and payload. The log fills position, stream_version,
// prev_hash and hash.
//
// A follower (replication/) sets `stored` instead: the envelope exactly as
// the leader stored it, which AppendReplicated checks and stores unchanged.
struct NewEvent {
  int64_t expected_version = kExpectAny;
  Envelope envelope;
  std::string stored;  // Default: empty (the log serializes `envelope`)
};

struct AppendRequest {
  std::vector<NewEvent> events;  // may be empty (outcome-only append)
  // Writes to the projections column family, in the same WriteBatch.
  std::vector<std::pair<std::string, std::string>> projection_puts;
  std::vector<std::string> projection_deletes;
  // The command outcome to store under outcome.result().command_id(); its
  // first_position / last_position are set by the log (0 when no events).
  std::optional<StoredOutcome> outcome;
};

struct AppendResult {
  uint64_t first_position = 0;  // 0 when no events were appended
  uint64_t last_position = 0;
  std::string head_hash;  // chain hash after this append
};

struct Head {
  uint64_t position = 0;  // 0 for an empty log
  std::string hash;       // 32 bytes; 32 zero bytes for an empty log
};

// Envelopes parsed onto one protobuf arena (EventLog::ScanBatches): adding
// one allocates from the arena (a first block of kEnvelopeBatchArenaBytes,
// made by the first Add -- a scan that finds nothing makes none -- and kept
// across Clear(); more blocks as needed), and Clear() frees them all at
// once, so a batch reused over a scan costs no heap allocation per event
// but for its strings longer than the small-string buffer (the hashes).
// Movable; not thread-safe.
inline constexpr size_t kEnvelopeBatchArenaBytes = 1 << 20;
// Envelopes in a batch of a scan, about what that first block holds:
// EventLog::Scan frees its arena after so many, and the rebuild's reader
// hands its fold batches of so many (ScanBatches).
inline constexpr size_t kEnvelopeBatchEvents = 1024;

class EnvelopeBatch {
 public:
  EnvelopeBatch();
  ~EnvelopeBatch();
  EnvelopeBatch(EnvelopeBatch&&) noexcept;
  EnvelopeBatch& operator=(EnvelopeBatch&&) noexcept;

  size_t size() const { return envelopes_.size(); }
  bool empty() const { return envelopes_.empty(); }
  // REQUIRES: no hash left to check (VerifyHashes), else a crash.
  const Envelope& operator[](size_t i) const {
    SL_CHECK(raw_ends_.empty(), "VerifyHashes() before reading the batch");
    return *envelopes_[i];
  }
  // A new empty envelope on the arena, at the end of the batch; valid until
  // Clear().
  Envelope* Add();
  // Drops the envelopes, freeing the arena (but its first block).
  void Clear();

  // ScanBatches with BatchHashes::kByConsumer: the stored bytes of the
  // envelopes, whose SHA-256 the consumer checks. KeepRaw copies the bytes
  // of the last envelope added; VerifyHashes checks every kept envelope's
  // hash in order (kDataLoss naming the first that fails, as
  // EventLog::Scan's check does) and lets the batch be read.
  void KeepRaw(absl::string_view raw);
  absl::Status VerifyHashes();

 private:
  struct Storage;
  std::unique_ptr<Storage> storage_;  // from the first Add
  std::vector<Envelope*> envelopes_;
  std::string raw_;               // KeepRaw's bytes, end to end
  std::vector<size_t> raw_ends_;  // where each envelope's bytes end in raw_
};

// Where EventLog::ScanBatches checks each envelope's SHA-256 (the other
// checks -- parse, position, chain, contiguity -- it always makes itself).
enum class BatchHashes {
  kChecked,  // before the batch is handed over
  // By the consumer: each batch is handed over with its envelopes' stored
  // bytes, and must pass EnvelopeBatch::VerifyHashes before it is read
  // (rebuild's pipeline: the hashing moves to the folding thread). The
  // errors keep their order: a scan that fails checks the hashes of what
  // it read before the failure, and reports the first error in log order.
  kByConsumer,
};

class EventLog {
 public:
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(
      const std::string& dir, const EventLogOptions& options = {});
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Appends atomically (one WriteBatch): all events, index entries, stream
  // heads, projection writes, the outcome and the new head; or nothing.
  // Errors: kAborted when an expected version does not match (message names
  // the stream, expected and actual version); kInvalidArgument for a missing
  // stream id or an envelope over kEnvelopeBytesMax; I/O errors as returned by
  // RocksDB, after which the log refuses further appends
  // (kFailedPrecondition) until reopened.
  absl::StatusOr<AppendResult> Append(AppendRequest request);

  // Appends `requests` in order as one unit: each is checked as Append
  // checks it, against the log as the requests before it leave it, and
  // either all of them are written (in one WriteBatch, with one WAL sync)
  // or none is. The results are in request order. When request i fails its
  // checks nothing is written, its error is returned and *failed_request
  // (if not null) is set to i; on a write error it is set to
  // requests.size(). The ledger's group commit uses this: the commands of a
  // group are decided against each other's effects, so they must land
  // together or not at all.
  //
  // Appends (Append, AppendBatch, AppendReplicated) are serialized: a call
  // made while another is under way waits for it, and each lands whole in
  // its own WriteBatch. The log does not merge concurrent calls; callers
  // that want grouping group themselves (the ledger's group commit does).
  //
  // With `sync` false the write is not synced: its events are in the log
  // and visible to reads by key (stream index, projections, outcomes) at
  // once, but durable -- and visible to head(), Read, Scan and the feed --
  // only once a later Sync() returns. The group commit uses this to write
  // the next group while the previous one's sync is under way.
  absl::StatusOr<std::vector<AppendResult>> AppendBatch(
      std::vector<AppendRequest> requests, size_t* failed_request = nullptr,
      bool sync = true);

  // For a follower of a replicated partition: appends `requests` whose
  // events all carry `stored` bytes, as AppendBatch does (one unit, synced),
  // but stores those bytes unchanged after checking that each is the
  // envelope at the next position (VerifyStoredEnvelope), links to the hash
  // before it and carries the next version of its stream; a failure is
  // kDataLoss naming the position, and nothing is written. before_write is
  // not called. Serialized with the other appends, as AppendBatch is.
  absl::StatusOr<std::vector<AppendResult>> AppendReplicated(
      std::vector<AppendRequest> requests);

  // Makes every append that returned before this call durable (one WAL
  // sync), and moves head() up to them. May run while another thread
  // appends. An error is an I/O error (kUnavailable) after which the log
  // refuses appends, as after a failed write. A no-op when
  // EventLogOptions::sync is false.
  absl::Status Sync();

  // Runs `fn` while none of this log's writes is in progress, unless one
  // has failed (then WriteRefusal's kFailedPrecondition, and fn does not
  // run). For what makes RocksDB switch memtables from outside the write
  // path: a manual flush or compaction, a checkpoint. After a failed write
  // Debian's RocksDB 7.8 (built with assertions) aborts when a memtable
  // switch touches the WAL file that failed; the write path itself is
  // stopped by RocksDB, these are not. Appends wait meanwhile.
  absl::Status RunBetweenWrites(const std::function<absl::Status()>& fn) const;

  // Ok, or the kFailedPrecondition every append now gets after a write or
  // sync error ("ledger is read-only after a write error: ...").
  absl::Status WriteRefusal() const;

  // The last durable event (what readers may rely on): the same as
  // appended_head() except while an unsynced append awaits its Sync().
  Head head() const;
  // The last appended event, synced or not (the group commit numbers the
  // next group from it).
  Head appended_head() const;

  // The envelope at `position`. kNotFound past the head; kDataLoss when the
  // stored bytes do not parse or their hash does not match their content.
  absl::StatusOr<Envelope> Read(uint64_t position) const;

  // Calls `fn` for each envelope with position > after_position, in order,
  // until `fn` returns false or the head (as of the call) is reached. The
  // raw stored bytes are passed too. Each envelope is checked as in Read and
  // positions must be contiguous (a gap is kDataLoss).
  absl::Status Scan(uint64_t after_position,
                    const std::function<bool(const Envelope&,
                                             absl::string_view raw)>& fn) const;

  // Scan for a consumer on another thread (rebuild's pipeline): the same
  // checks, in the same order, but the verified envelopes are handed to `fn`
  // in batches of up to `batch_events` (only the last may be shorter; 0 is
  // taken as 1), which `fn` may keep by swapping *batch with another batch
  // (empty or spent: the scan clears it before filling it). Stops early
  // when `fn` returns false. `hashes`: see BatchHashes.
  absl::Status ScanBatches(uint64_t after_position, size_t batch_events,
                           const std::function<bool(EnvelopeBatch* batch)>& fn,
                           BatchHashes hashes = BatchHashes::kChecked) const;

  // Envelopes of one stream with stream_version > after_version, in order.
  absl::Status ScanStream(absl::string_view stream_id, uint64_t after_version,
                          const std::function<bool(const Envelope&)>& fn) const;

  // The reads by key below see the durable database (kDurable): a RocksDB
  // snapshot with no write that awaits its Sync (taken before the first
  // such write, or under the head's mutex when there is none), so nothing a
  // later crash or failed sync could take back is ever shown. ScanStream
  // always does. The writer that made the unsynced appends (the group
  // commit) decides its next commands against them and reads kAppended:
  // the database as written, at each read.
  enum class ReadView { kDurable, kAppended };

  // What the reads given it see, fixed when pinned: for kDurable one durable
  // database, however many appends and syncs follow; for kAppended the
  // database as written at each read. A reader that reads several keys and
  // needs them to agree (a store's state is its store, product, order and
  // withdrawal records and its stream head) pins one point for all of them;
  // a read given a ReadView pins one for itself. A durable point holds a
  // RocksDB snapshot: keep it for one question, and never past the EventLog.
  class ReadPoint {
   public:
    // For readers of the column families themselves (the audit); null for
    // kAppended.
    const rocksdb::Snapshot* snapshot() const { return snapshot_.get(); }

   private:
    friend class EventLog;
    ReadPoint(std::shared_ptr<const rocksdb::Snapshot> snapshot,
              std::shared_ptr<const storage_internal::DerivedView> derived)
        : snapshot_(std::move(snapshot)), derived_(std::move(derived)) {}
    std::shared_ptr<const rocksdb::Snapshot> snapshot_;  // null: kAppended
    // The write-behind tables this point reads before RocksDB, and the
    // last append it sees in them; null for kAppended.
    std::shared_ptr<const storage_internal::DerivedView> derived_;
  };
  ReadPoint Pin(ReadView view = ReadView::kDurable) const;

  absl::StatusOr<std::optional<StreamHead>> GetStreamHead(
      absl::string_view stream_id, ReadView view = ReadView::kDurable) const;
  absl::StatusOr<std::optional<StreamHead>> GetStreamHead(
      absl::string_view stream_id, const ReadPoint& at) const;

  absl::StatusOr<std::optional<StoredOutcome>> GetOutcome(
      absl::string_view command_id, ReadView view = ReadView::kDurable) const;

  absl::StatusOr<std::optional<std::string>> GetProjection(
      absl::string_view key, ReadView view = ReadView::kDurable) const;
  absl::StatusOr<std::optional<std::string>> GetProjection(
      absl::string_view key, const ReadPoint& at) const;
  // Projection entries whose key starts with `prefix`, in key order.
  absl::Status ScanProjections(
      absl::string_view prefix,
      const std::function<bool(absl::string_view key, absl::string_view value)>&
          fn,
      ReadView view = ReadView::kDurable) const;
  absl::Status ScanProjections(
      absl::string_view prefix,
      const std::function<bool(absl::string_view key, absl::string_view value)>&
          fn,
      const ReadPoint& at) const;

  // Writes what the write-behind window holds of durable appends to RocksDB
  // now (ingested SST files and meta "derived"), so that the column
  // families themselves are up to the durable head: for the readers of
  // db() below. Appends wait meanwhile. A no-op when nothing waits. An
  // error is an I/O error after which the log refuses appends, as after a
  // failed write.
  absl::Status WriteBehindNow();
  // The position up to which the derived column families in RocksDB are
  // written (meta "derived"; the head when nothing waits in memory).
  uint64_t derived_position() const;
  // The write-behinds since the open that moved meta "derived". Each holds
  // the append lock while it runs (on the appending thread, or in
  // WriteBehindNow and PinWrittenBehind): `longest` is the longest appends
  // waited for one. Waits for a write-behind under way.
  struct WriteBehindStats {
    uint64_t count = 0;
    uint64_t events = 0;  // the positions they moved meta "derived" by
    absl::Duration total;
    absl::Duration longest;
  };
  WriteBehindStats write_behind_stats() const;

  // For the readers of the derived column families themselves (the audit):
  // a durable read point at which "streams" and "projections" in RocksDB
  // hold everything up to its head, when this log can write them (open for
  // writing, no write error): appends wait while it syncs what awaits a
  // sync and writes the window behind (WriteBehindNow). Otherwise
  // Pin(kDurable), whose window WindowAt gives.
  absl::StatusOr<ReadPoint> PinWrittenBehind() const;
  // What `at` reads of `cf` from the write-behind window, to lay over an
  // iterator of `cf` at at.snapshot() (NewOverlayIterator). Null when that
  // is nothing: always for the families not written behind, and for a
  // point from PinWrittenBehind on a log open for writing.
  std::shared_ptr<const KeyOverlay> WindowAt(rocksdb::ColumnFamilyHandle* cf,
                                             const ReadPoint& at) const;

  // For audit, rebuild and tests that damage the database on purpose. With
  // write_behind, what is in the column families is up to
  // derived_position() only (WriteBehindNow).
  rocksdb::DB* db() const;
  rocksdb::ColumnFamilyHandle* events_cf() const;
  rocksdb::ColumnFamilyHandle* streams_cf() const;
  rocksdb::ColumnFamilyHandle* commands_cf() const;
  rocksdb::ColumnFamilyHandle* meta_cf() const;
  rocksdb::ColumnFamilyHandle* projections_cf() const;
  // The Merkle tree's nodes (storage/merkle_store.h reads them).
  rocksdb::ColumnFamilyHandle* merkle_cf() const;

 private:
  struct Impl;
  explicit EventLog(std::unique_ptr<Impl> impl);
  absl::StatusOr<std::vector<AppendResult>> AppendBatchImpl(
      std::vector<AppendRequest> requests, size_t* failed_request, bool sync,
      bool replicated);
  std::unique_ptr<Impl> impl_;
};

// Big-endian position key of the events column family.
std::string PositionKey(uint64_t position);
// SHA-256 of prev_hash || the envelope serialized with `hash` cleared.
std::string EnvelopeHash(const Envelope& envelope);
// Lowercase hex of bytes.
std::string ToHex(absl::string_view bytes);
// The checks every read of a stored event makes (FORMAT.md "Checks"), for
// readers of the events column family that do not go through an EventLog
// (replay/feed.cc's secondary instance, replay/audit.cc); the link to the
// previous hash is the caller's to check. All fail with kDataLoss naming
// `position`.
//
// Size, hash field, parse, position, a 32-byte prev_hash:
absl::StatusOr<Envelope> ParseStoredEnvelope(uint64_t position,
                                             absl::string_view raw);
// SHA-256 of prev_hash || the stored bytes before the hash field: what the
// envelope's hash must be.
std::string StoredEnvelopeHash(const Envelope& envelope, absl::string_view raw);
// ParseStoredEnvelope, and the stored hash equal to StoredEnvelopeHash.
absl::StatusOr<Envelope> VerifyStoredEnvelope(uint64_t position,
                                              absl::string_view raw);
// SHA-256 of arbitrary bytes (OpenSSL EVP).
std::string Sha256(absl::string_view bytes);
// The message's bytes with deterministic serialization (map entries in key
// order): what the log stores and hashes, and what the projections store
// (so a record rebuilt from the log is byte-identical to the inline one).
std::string SerializeDeterministic(
    const google::protobuf::MessageLite& message);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_EVENT_LOG_H_
