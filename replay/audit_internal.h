// The audit engine's internals (replay/audit.h is the contract): one
// Auditor holds the state the passes share (the snapshot, the point-read
// iterators, the report, what one pass counts for a later one to compare)
// and each pass is in its own file: audit.cc (Run, the second look, the
// plumbing every pass uses), audit_events.cc (pass 1), audit_streams.cc
// (2), audit_commands.cc (3), audit_projections.cc (4), audit_merkle.cc (5,
// storage/merkle_store.h). Layouts: storage/format.h for the log,
// replay/projection_store.h for the projection keys.
// Internal to replay/: callers use Audit() (replay/audit.h). An Auditor is
// used once, by one thread.
#ifndef STORELEDGER_REPLAY_AUDIT_INTERNAL_H_
#define STORELEDGER_REPLAY_AUDIT_INTERNAL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "core/state.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replay/projection_keys.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "storage/event_log.h"
#include "storage/format.h"
#include "storage/overlay_iterator.h"
#include "storage/rocks_util.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger::audit_internal {

// The log's layout, as storage writes it.
using format::kHashBytes;
using format::kHeadValueBytes;
using format::kMetaHeadKey;
using format::kPositionBytes;
using format::kStreamIndexSeparator;
using format::StreamIndexKey;

// The projection key prefixes (kStorePrefix, ...) are
// replay/projection_keys.h's; between the parts of a pair key:
inline constexpr char kKeySeparator = kProjectionKeySeparator;

inline constexpr absl::string_view kStoreStreamPrefix = "store-";
inline constexpr absl::string_view kMerchantStreamPrefix = "merchant-";

// Characters of a record quoted in a violation message.
inline constexpr size_t kRecordTextMax = 300;

// A RocksDB iterator pins the memtables it was made over for as long as it
// lives, and past the write-buffer budget every write waits for them
// (storage/event_log.cc): the audit's iterators are made anew, at the same
// snapshot, every so many steps, so an audit of a live ledger holds on to
// no memtable for long.
inline constexpr uint64_t kIteratorStepsMax = 4096;

// kKeySeparator as a string.
std::string Sep();

// "first" or "first..last".
std::string Range(uint64_t first, uint64_t last);

// A message's short text form, cut at kRecordTextMax characters.
std::string Short(const google::protobuf::Message& message);

// The stream an event belongs in (core/decide.cc emits each event to it).
std::string ExpectedStream(const v1::Event& event);

// Whether `account` may appear in a posting of store `store_id` (R13): the
// store's own accounts, its payouts and merchant bank, and the two shared
// outside accounts.
bool AccountOfStore(absl::string_view store_id, absl::string_view account);

// Point reads through one long-lived iterator per column family: Seek, then
// compare the key. A RocksDB Get consults each file's bloom filter first,
// and a filter block larger than a block-cache shard (the default 8 MiB
// cache has 16 shards; a column family of 10^6 keys has a ~1.2 MiB filter)
// is read from the file and checksummed again on every Get: measured on a
// 10^6-event log, that was 70% of the audit's time. A seek uses no filter.
class Lookup {
 public:
  Lookup(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) : db_(db), cf_(cf) {}

  // Reads from now on see `snapshot` (not owned; nullptr: the latest), with
  // `window` (EventLog::WindowAt: what a log writing behind holds in
  // memory) over it.
  void SetSnapshot(const rocksdb::Snapshot* snapshot,
                   std::shared_ptr<const KeyOverlay> window = nullptr) {
    snapshot_ = snapshot;
    window_ = std::move(window);
    it_.reset();
  }
  rocksdb::ColumnFamilyHandle* cf() const { return cf_; }

  // The value under `key`; nullopt when absent; kDataLoss on corruption.
  absl::StatusOr<std::optional<std::string>> Find(absl::string_view key) {
    rocksdb::Iterator& it = Iterator();
    it.Seek(rocksdb::Slice(key.data(), key.size()));
    if (it.Valid()) {
      if (View(it.key()) != key) return std::optional<std::string>();
      return std::optional<std::string>(std::string(View(it.value())));
    }
    RETURN_IF_ERROR(Error());
    return std::optional<std::string>();
  }

  // Calls fn(key, value) for the keys that start with `prefix`, in order,
  // until it returns false.
  absl::Status ScanPrefix(
      absl::string_view prefix,
      const std::function<bool(absl::string_view, absl::string_view)>& fn) {
    rocksdb::Iterator& it = Iterator();
    for (it.Seek(rocksdb::Slice(prefix.data(), prefix.size()));
         it.Valid() && absl::StartsWith(View(it.key()), prefix); it.Next()) {
      if (!fn(View(it.key()), View(it.value()))) break;
    }
    return Error();
  }

 private:
  rocksdb::Iterator& Iterator() {
    if (++uses_ % kIteratorStepsMax == 0) it_.reset();
    if (it_ == nullptr) {
      // Audit reads each block about once: keeping them out of the block
      // cache leaves it to the ledger's own reads and keeps the audit's
      // memory flat (measured at 10^6 events: peak RSS 25 MiB instead of
      // 66 MiB, for 30% more CPU).
      rocksdb::ReadOptions read_options;
      read_options.fill_cache = false;
      read_options.snapshot = snapshot_;
      it_.reset(db_->NewIterator(read_options, cf_));
      if (window_ != nullptr) it_ = NewOverlayIterator(window_, std::move(it_));
    }
    return *it_;
  }

  // The iterator's status as a Status; a failed iterator is replaced.
  absl::Status Error() {
    const rocksdb::Status s = it_->status();
    if (s.ok()) return absl::OkStatus();
    it_.reset();
    if (s.IsCorruption()) return absl::DataLossError(s.ToString());
    return absl::UnavailableError(absl::StrCat("audit: read: ", s.ToString()));
  }

  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* cf_;
  const rocksdb::Snapshot* snapshot_ = nullptr;
  std::shared_ptr<const KeyOverlay> window_;
  std::unique_ptr<rocksdb::Iterator> it_;
  uint64_t uses_ = 0;
};

// A forward iterator over one column family at a snapshot that is made
// anew every kIteratorStepsMax steps, positioned at the key it was at.
class SteppingIterator final : public rocksdb::Iterator {
 public:
  SteppingIterator(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                   const rocksdb::ReadOptions& read_options,
                   std::shared_ptr<const KeyOverlay> window = nullptr)
      : db_(db),
        cf_(cf),
        read_options_(read_options),
        window_(std::move(window)),
        it_(Make()) {}

  bool Valid() const override { return it_->Valid(); }
  void SeekToFirst() override { it_->SeekToFirst(); }
  void SeekToLast() override { it_->SeekToLast(); }
  void Seek(const rocksdb::Slice& target) override { it_->Seek(target); }
  void SeekForPrev(const rocksdb::Slice& target) override {
    it_->SeekForPrev(target);
  }
  void Next() override {
    it_->Next();
    if (++steps_ % kIteratorStepsMax != 0 || !it_->Valid()) return;
    const std::string key = it_->key().ToString();
    it_ = Make();
    it_->Seek(key);
  }
  void Prev() override { it_->Prev(); }
  rocksdb::Slice key() const override { return it_->key(); }
  rocksdb::Slice value() const override { return it_->value(); }
  rocksdb::Status status() const override { return it_->status(); }

 private:
  std::unique_ptr<rocksdb::Iterator> Make() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_options_, cf_));
    if (window_ != nullptr) it = NewOverlayIterator(window_, std::move(it));
    return it;
  }

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  const rocksdb::ReadOptions read_options_;
  const std::shared_ptr<const KeyOverlay> window_;
  std::unique_ptr<rocksdb::Iterator> it_;
  uint64_t steps_ = 0;
};

// A hash of a multiset of byte strings that takes constant memory: the sum,
// modulo 2^128, of the first 16 bytes of each member's SHA-256. Two
// multisets with equal sums and counts are equal but with negligible
// probability; pass 1 and pass 3 compare the commands' event runs with the
// stored outcomes this way, without a lookup per command.
class MultisetHash {
 public:
  void Add(absl::string_view member) {
    const std::string digest = Sha256(member);
    unsigned __int128 value = 0;
    for (int i = 0; i < 16; ++i) {
      value = (value << 8) | static_cast<unsigned char>(digest[i]);
    }
    sum_ += value;
    ++count_;
  }
  bool operator==(const MultisetHash& other) const {
    return sum_ == other.sum_ && count_ == other.count_;
  }
  bool operator!=(const MultisetHash& other) const { return !(*this == other); }

 private:
  unsigned __int128 sum_ = 0;
  uint64_t count_ = 0;
};

// What must agree between a command's events and its stored outcome, as
// one unambiguous string (fields length-prefixed).
std::string OutcomeFingerprint(absl::string_view command_id, uint64_t first,
                               uint64_t last, v1::OutcomeStatus status,
                               absl::string_view fingerprint,
                               absl::string_view rule, v1::RejectionCode code);

class Auditor {
 public:
  Auditor(const EventLog& log, const AuditOptions& options)
      : log_(log),
        options_(options),
        db_(log.db()),
        events_lookup_(db_, log.events_cf()),
        streams_lookup_(db_, log.streams_cf()),
        commands_lookup_(db_, log.commands_cf()),
        projections_lookup_(db_, log.projections_cf()),
        projections_scan_(db_, log.projections_cf()) {}

  ~Auditor() {
    for (Lookup* lookup : Lookups()) lookup->SetSnapshot(nullptr);
  }

  Auditor(const Auditor&) = delete;
  Auditor& operator=(const Auditor&) = delete;

  absl::StatusOr<v1::AuditReport> Run();

 private:
  // Every stored node of the Merkle tree against the tree of the stored
  // envelopes (a damaged envelope is also the chain's violation; here it is
  // the leaves and nodes above it that no longer match).
  absl::Status MerkleTreePass();
  // Pass 6 (replay/audit_diverged.cc): the diverged records, reported, and
  // each one's envelopes checked whole.
  absl::Status DivergedPass();

  // ------------------------------------------------------------ plumbing

  uint64_t CountOf(absl::string_view check) const;

  void Violation(absl::string_view check, absl::StatusCode code,
                 uint64_t position, absl::string_view stream_id,
                 absl::string_view key, std::string message);

  // A finding of the first events pass; the second look (diagnosing_)
  // re-walks the same events only to name other problems, so it stays quiet.
  void Integrity(absl::string_view check, absl::StatusCode code,
                 uint64_t position, absl::string_view stream_id,
                 absl::string_view key, std::string message);

  void Progress(absl::string_view pass, uint64_t done, uint64_t total,
                bool final_call = false);

  // An iterator error: corruption RocksDB itself detected (a block checksum)
  // is a violation that ends the pass; anything else stops the audit.
  absl::Status IteratorEnd(const rocksdb::Iterator& it, absl::string_view check,
                           absl::string_view what);

  std::vector<Lookup*> Lookups();

  Lookup& LookupFor(rocksdb::ColumnFamilyHandle* cf);

  // nullopt when absent. Corruption is returned as kDataLoss for the caller
  // to report.
  absl::StatusOr<std::optional<std::string>> Get(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view key);

  // The verified envelope at `position`, as EventLog::Read gives it:
  // kNotFound past the head, kDataLoss when missing or damaged.
  absl::StatusOr<v1::Envelope> ReadEnvelope(uint64_t position);

  // The stored outcome of `command_id`, as EventLog::GetOutcome gives it.
  absl::StatusOr<std::optional<v1::StoredOutcome>> ReadOutcome(
      absl::string_view command_id);

  // Get, with corruption turned into a violation (and nullopt).
  absl::StatusOr<std::optional<std::string>> GetOrReport(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
      absl::string_view check, uint64_t position);

  std::unique_ptr<rocksdb::Iterator> Sequential(
      rocksdb::ColumnFamilyHandle* cf) const;

  // ------------------------------------------------------------ pass 1

  // The events of one command seen so far in position order.
  struct CommandRun {
    bool active = false;
    std::string command_id;
    uint64_t first = 0, last = 0;            // positions the run spans
    uint64_t first_good = 0, last_good = 0;  // of its intact envelopes
    // A damaged or missing position inside or next to the run: its exact
    // extent is unknown, so only containment is checked.
    bool tainted = false;
    std::optional<v1::StoredOutcome> outcome;  // looked up (second look)
    bool outcome_unreadable = false;
    // What the events say the outcome is: their count by kind, and for a
    // rejection the refused command's fingerprint, rule and code.
    uint64_t facts = 0;
    uint64_t rejections = 0;
    std::string fingerprint;
    std::string rule;
    v1::RejectionCode code = v1::REJECTION_CODE_UNSPECIFIED;
  };

  absl::Status EventsPass();

  // Checks one stored envelope; `prev_hash` is the stored hash of the
  // position before (nullopt when unknown) and becomes this one's.
  void CheckEnvelope(uint64_t position, absl::string_view raw,
                     std::optional<std::string>* prev_hash);

  void CheckIndexed(const v1::Envelope& envelope);

  void CheckStream(const v1::Envelope& envelope);

  void CheckPostings(const v1::Envelope& envelope);

  // A damaged or missing position up to `through`: the run around it, and
  // the run after it, have an unknown extent.
  void Taint(uint64_t through);

  void AddToRun(const v1::Envelope& envelope);

  void CheckAgainstOutcome(const v1::Envelope& envelope);

  void CloseRun();

  // ------------------------------------------------------------ pass 2

  // One stream of the index, as pass 2 walks it.
  struct StreamWalk {
    bool active = false;
    std::string stream_id;
    std::optional<std::string> head_bytes;
    uint64_t next_version = 1;
    uint64_t last_version = 0;
    google::protobuf::Timestamp last_occurred_at;
    // Empty while the stream can be folded; otherwise why not.
    std::string fold_problem;
    uint64_t fold_problem_position = 0;
    bool fold_problem_reported = false;
    std::string store_id;     // set for store streams
    std::string merchant_id;  // set for merchant streams
    std::unique_ptr<StateOverlay> state;
    AccountBalances accounts;  // the store's postings, summed
    // Versions at which the store has a snapshot or snapshot meta record
    // (replay/snapshots.h), each checked when the fold reaches it.
    std::set<uint64_t> snapshot_versions;
    // False once an event of the stream is missing or unreadable: the sums
    // of its postings are then incomplete and say nothing.
    bool sums_complete = true;
    // Accounts already reported below zero: later events only repeat it.
    std::set<std::string> negative_reported;
  };

  absl::Status StreamsPass();

  void StartStream(absl::string_view stream_id);

  // The versions of the store's snapshots: few (one per ~1000 events of the
  // store), so a set of them does not grow with the log in any way that
  // matters.
  void CollectSnapshotVersions();

  // The snapshot at `envelope`'s version against the records folded so far
  // (the fold has just applied `envelope`).
  void CheckSnapshot(const v1::Envelope& envelope);

  // Records that the stream's records cannot be recomputed; `reported` says a
  // violation already names the cause.
  void StopFold(std::string why, uint64_t position, bool reported);

  bool Folding() const { return walk_.fold_problem.empty(); }

  void VisitIndexEntry(uint64_t version, uint64_t position);

  // Adds the event's postings of this store to its accounts; no store
  // account may be below zero after any event.
  void SumPostings(const v1::Envelope& envelope);

  void FinishStream();

  void CheckStreamHead();

  // Compares the stored record under `key` with `folded` (nullptr: the log
  // has no such record). `prototype` parses the stored bytes for messages.
  void CompareRecord(const std::string& key,
                     const google::protobuf::Message* folded,
                     const google::protobuf::Message& prototype);

  // Walks the stored keys under `prefix` beside the folded ids (both sorted
  // by id), calling `both` for ids in both and reporting the rest.
  template <typename Map, typename IdOf>
  void MergeIndex(
      const std::string& prefix, const Map& folded, IdOf id_of,
      absl::string_view what,
      const std::function<void(absl::string_view id, absl::string_view value,
                               const typename Map::mapped_type::element_type&)>&
          both);

  void CompareStore();

  void CheckEmptyIndexValue(absl::string_view id, absl::string_view value,
                            absl::string_view prefix);

  void CompareIndexKey(const std::string& key, absl::string_view what);

  // The store's balances, as Evolve folded them, against the sum of its
  // postings (two independent derivations of the same money).
  void CompareBalances(const StoreRecord& store);

  // The store's merchant record must list it (the other half of
  // CompareMerchant's check of store_ids).
  void CheckMerchantLists(const StoreRecord& store);

  // A merchant record folds from its stream, except store_ids: every store
  // opened adds itself (StoreOpened, in the store's stream). So the folded
  // record takes, besides the first store, those stored ids whose store
  // record names this merchant; CheckMerchantLists checks the converse.
  void CompareMerchant();

  // ------------------------------------------------------------ pass 3

  absl::Status CommandsPass();

  // First look: the outcome on its own, and its fingerprint into outcomes_.
  // Second look: also the events at the positions it names.
  absl::Status CheckOutcome(absl::string_view command_id,
                            absl::string_view value);

  // ------------------------------------------------------------ pass 4

  absl::Status ProjectionsPass();

  // Whether the stream has a head; the last answer is cached because keys
  // of one store come together.
  bool StreamExists(const std::string& stream);

  void CheckProjectionKey(absl::string_view key, absl::string_view value);

  const EventLog& log_;
  const AuditOptions& options_;
  rocksdb::DB* db_;
  std::optional<EventLog::ReadPoint> read_point_;  // for the whole audit
  const rocksdb::Snapshot* snapshot_ = nullptr;    // read_point_'s
  Lookup events_lookup_;
  Lookup streams_lookup_;
  Lookup commands_lookup_;
  Lookup projections_lookup_;
  // For prefix scans, whose callbacks may look keys up with the one above.
  Lookup projections_scan_;
  uint64_t head_position_ = 0;
  std::string head_hash_;
  v1::AuditReport report_;
  std::map<std::string, uint64_t, std::less<>> counts_;
  // The first I/O error met inside a callback; ends the pass.
  absl::Status io_error_;
  CommandRun run_;
  bool next_run_tainted_ = false;
  // First look vs second look (see Run).
  bool diagnosing_ = false;
  bool check_index_ = false;
  bool lookup_outcomes_ = false;
  // Pass 1: intact envelopes; pass 2: index entries that point at one of
  // them under its own stream and version. Equal counts mean every intact
  // envelope is indexed (an entry can only match the one envelope it names).
  uint64_t good_envelopes_ = 0;
  uint64_t verified_entries_ = 0;
  // Pass 1's command runs and pass 3's stored outcomes, as multisets.
  MultisetHash runs_;
  MultisetHash outcomes_;
  // Some run's extent is unknown (damage): only the second look can tell.
  bool tainted_any_ = false;
  StreamWalk walk_;
  std::string cached_stream_;
  bool cached_stream_exists_ = false;
};

}  // namespace storeledger::audit_internal

#endif  // STORELEDGER_REPLAY_AUDIT_INTERNAL_H_
