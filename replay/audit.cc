// The audit engine; see audit.h for what each pass checks. Reads RocksDB
// directly (EventLog::db() and its column family handles) so that it can walk
// past damage that EventLog::Scan would stop at, and re-derives everything it
// compares: the hash of each envelope from its stored bytes, postings with
// PostingsFor, records with Evolve. Point reads go through long-lived
// iterators (class Lookup) and no read fills the block cache; both choices
// were measured on a 10^6-event log, see Lookup.
#include "replay/audit.h"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/evolve.h"
#include "core/limits.h"
#include "core/money.h"
#include "core/policy.h"
#include "core/postings.h"
#include "core/state.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "replay/finance.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "storage/diverged.h"
#include "storage/merkle_store.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

// The stored layout this pass re-reads (storage/event_log.cc, FORMAT.md;
// envelopes are checked with storage's ParseStoredEnvelope): keys of the
// events column family are 8-byte big-endian positions, and the streams column family holds, per stream, its
// head under "<stream>" and index entries under "<stream>\0<8-byte version>"
// whose value is the 8-byte position.
constexpr size_t kHashBytes = 32;
constexpr size_t kPositionBytes = 8;
constexpr char kKeySeparator = '\0';
// meta["head"] = 8-byte position, 32-byte hash.
constexpr absl::string_view kMetaHeadKey = "head";

// Projection key prefixes (replay/projection_store.h).
constexpr absl::string_view kStorePrefix = "s/";
constexpr absl::string_view kKindPrefix = "k/";
constexpr absl::string_view kProductPrefix = "p/";
constexpr absl::string_view kOrderPrefix = "o/";
constexpr absl::string_view kStoreOrderPrefix = "O/";
constexpr absl::string_view kWithdrawalPrefix = "w/";
constexpr absl::string_view kStoreWithdrawalPrefix = "W/";
constexpr absl::string_view kMerchantPrefix = "m/";

constexpr absl::string_view kStoreStreamPrefix = "store-";
constexpr absl::string_view kMerchantStreamPrefix = "merchant-";

// Characters of a record quoted in a violation message.
constexpr size_t kRecordTextMax = 300;

// A RocksDB iterator pins the memtables it was made over for as long as it
// lives, and past the write-buffer budget every write waits for them
// (storage/event_log.cc): the audit's iterators are made anew, at the same
// snapshot, every so many steps, so an audit of a live ledger holds on to
// no memtable for long.
constexpr uint64_t kIteratorStepsMax = 4096;

std::string Sep() { return std::string(1, kKeySeparator); }

std::string StreamIndexKey(absl::string_view stream_id, uint64_t version) {
  return absl::StrCat(stream_id, Sep(), PositionKey(version));
}

std::string Range(uint64_t first, uint64_t last) {
  return first == last ? absl::StrCat(first) : absl::StrCat(first, "..", last);
}

std::string Short(const google::protobuf::Message& message) {
  std::string text = message.ShortDebugString();
  if (text.size() > kRecordTextMax) {
    text.resize(kRecordTextMax);
    text += "...";
  }
  return absl::StrCat("{", text, "}");
}

ABSL_CONST_INIT const absl::string_view kAllChecks[] = {
    kCheckHashChain,   kCheckPositions,   kCheckStreamIndex, kCheckPostings,
    kCheckBalances,    kCheckProjections, kCheckOutcomes,
    kCheckMerkleTree,  kCheckDiverged,
};

// The stream an event belongs in (core/decide.cc emits each event to it).
std::string ExpectedStream(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kStoreOpened:
      return StoreStream(event.store_opened().store_id());
    case v1::Event::kMerchantOnboarded:
      return MerchantStream(event.merchant_onboarded().merchant_id());
    case v1::Event::kIndividualBusinessRegistered:
      return MerchantStream(
          event.individual_business_registered().merchant_id());
    case v1::Event::kProductAdded:
      return StoreStream(event.product_added().store_id());
    case v1::Event::kProductListed:
      return StoreStream(event.product_listed().store_id());
    case v1::Event::kProductDelisted:
      return StoreStream(event.product_delisted().store_id());
    case v1::Event::kProductDeleted:
      return StoreStream(event.product_deleted().store_id());
    case v1::Event::kStoreUpgraded:
      return StoreStream(event.store_upgraded().store_id());
    case v1::Event::kCategoryQualificationGranted:
      return StoreStream(event.category_qualification_granted().store_id());
    case v1::Event::kDepositPaid:
      return StoreStream(event.deposit_paid().store_id());
    case v1::Event::kOrderPlaced:
      return StoreStream(event.order_placed().store_id());
    case v1::Event::kOrderCancelled:
      return StoreStream(event.order_cancelled().store_id());
    case v1::Event::kOrderPaid:
      return StoreStream(event.order_paid().store_id());
    case v1::Event::kOrderShipped:
      return StoreStream(event.order_shipped().store_id());
    case v1::Event::kOrderSettled:
      return StoreStream(event.order_settled().store_id());
    case v1::Event::kOrderRefunded:
      return StoreStream(event.order_refunded().store_id());
    case v1::Event::kWithdrawalRequested:
      return StoreStream(event.withdrawal_requested().store_id());
    case v1::Event::kWithdrawalCompleted:
      return StoreStream(event.withdrawal_completed().store_id());
    case v1::Event::kWithdrawalFailed:
      return StoreStream(event.withdrawal_failed().store_id());
    case v1::Event::kProductsSynced:
      return StoreStream(event.products_synced().store_id());
    case v1::Event::kCommandRejected:
      return std::string(kRejectionsStream);
    case v1::Event::BODY_NOT_SET:
      break;
  }
  return "";
}

// Whether `account` may appear in a posting of store `store_id` (R13): the
// store's own accounts, its payouts and merchant bank, and the two shared
// outside accounts.
bool AccountOfStore(absl::string_view store_id, absl::string_view account) {
  return account == kBuyersAccount || account == kCommissionAccount ||
         account == MerchantBankAccount(store_id) ||
         BalanceFieldOf(store_id, account) != BalanceField::kNone;
}

// Point reads through one long-lived iterator per column family: Seek, then
// compare the key. A RocksDB Get consults each file's bloom filter first,
// and a filter block larger than a block-cache shard (the default 8 MiB
// cache has 16 shards; a column family of 10^6 keys has a ~1.2 MiB filter)
// is read from the file and checksummed again on every Get: measured on a
// 10^6-event log, that was 70% of the audit's time. A seek uses no filter.
class Lookup {
 public:
  Lookup(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf) : db_(db), cf_(cf) {}

  // Reads from now on see `snapshot` (not owned; nullptr: the latest).
  void SetSnapshot(const rocksdb::Snapshot* snapshot) {
    snapshot_ = snapshot;
    it_.reset();
  }

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
  std::unique_ptr<rocksdb::Iterator> it_;
  uint64_t uses_ = 0;
};

// A forward iterator over one column family at a snapshot that is made
// anew every kIteratorStepsMax steps, positioned at the key it was at.
class SteppingIterator final : public rocksdb::Iterator {
 public:
  SteppingIterator(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                   const rocksdb::ReadOptions& read_options)
      : db_(db), cf_(cf), read_options_(read_options), it_(Make()) {}

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
    return std::unique_ptr<rocksdb::Iterator>(
        db_->NewIterator(read_options_, cf_));
  }

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const cf_;
  const rocksdb::ReadOptions read_options_;
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
                               absl::string_view rule,
                               v1::RejectionCode code) {
  return absl::StrCat(command_id.size(), ":", command_id, "|", first, "|",
                      last, "|", static_cast<int>(status), "|",
                      fingerprint.size(), ":", fingerprint, "|", rule.size(),
                      ":", rule, "|", static_cast<int>(code));
}

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

  absl::StatusOr<v1::AuditReport> Run() {
    // One consistent view for every pass, even while appends go on: a
    // snapshot of the durable log (no append that awaits its sync), and the
    // head as that snapshot stores it.
    read_point_.emplace(log_.Pin(EventLog::ReadView::kDurable));
    snapshot_ = read_point_->snapshot();
    for (Lookup* lookup : Lookups()) lookup->SetSnapshot(snapshot_);
    Head head = log_.head();
    Lookup meta(db_, log_.meta_cf());
    meta.SetSnapshot(snapshot_);
    absl::StatusOr<std::optional<std::string>> stored_head =
        meta.Find(kMetaHeadKey);
    if (stored_head.ok() && stored_head->has_value() &&
        (*stored_head)->size() == kPositionBytes + kHashBytes) {
      head.position = DecodeBigEndian64(**stored_head);
      head.hash = (*stored_head)->substr(kPositionBytes);
    }
    head_position_ = head.position;
    report_.set_head_position(head.position);
    report_.set_head_hash(ToHex(head.hash));
    head_hash_ = head.hash;
    RETURN_IF_ERROR(EventsPass());
    RETURN_IF_ERROR(StreamsPass());
    RETURN_IF_ERROR(CommandsPass());
    // The first look compared counts and multiset hashes, not items. When
    // they disagree (or damage made runs uncertain), a second look walks
    // the events and outcomes again with a lookup per item, to name each
    // problem by position. A sound log never needs it.
    const bool index_differs = verified_entries_ != good_envelopes_;
    const bool outcomes_differ = tainted_any_ || runs_ != outcomes_;
    if (index_differs || outcomes_differ) {
      const uint64_t index_before = CountOf(kCheckStreamIndex);
      const uint64_t outcomes_before = CountOf(kCheckOutcomes);
      diagnosing_ = true;
      check_index_ = index_differs;
      lookup_outcomes_ = outcomes_differ;
      run_ = CommandRun();
      next_run_tainted_ = false;
      RETURN_IF_ERROR(EventsPass());
      if (outcomes_differ) RETURN_IF_ERROR(CommandsPass());
      diagnosing_ = false;
      if (index_differs && CountOf(kCheckStreamIndex) == index_before) {
        Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, "", "",
                  absl::StrCat(good_envelopes_, " intact events but ",
                               verified_entries_,
                               " stream index entries point at them"));
      }
      if (outcomes_differ && !tainted_any_ &&
          CountOf(kCheckOutcomes) == outcomes_before && outcomes_before == 0) {
        Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, 0, "", "",
                  "the stored command outcomes and the commands of the "
                  "events disagree");
      }
    }
    RETURN_IF_ERROR(ProjectionsPass());
    RETURN_IF_ERROR(MerkleTreePass());
    RETURN_IF_ERROR(DivergedPass());
    for (absl::string_view name : kAllChecks) {
      v1::AuditCheck* check = report_.add_checks();
      check->set_name(std::string(name));
      auto it = counts_.find(name);
      const uint64_t n = it == counts_.end() ? 0 : it->second;
      check->set_violations(n);
      check->set_ok(n == 0);
    }
    report_.set_ok(report_.violations_total() == 0);
    return std::move(report_);
  }

 private:
  // The diverged records, reported; each one's envelopes checked whole.
  absl::Status DivergedPass() {
    ASSIGN_OR_RETURN(std::vector<v1::DivergedRecord> records,
                     ReadDivergedRecords(log_, snapshot_));
    for (v1::DivergedRecord& record : records) {
      uint64_t expected = record.first_position();
      std::string prev_hash;
      std::string problem;
      RETURN_IF_ERROR(ScanDivergedEnvelopes(
          log_, record.record(), snapshot_,
          [&](uint64_t position, absl::string_view raw) {
            if (!problem.empty()) return;
            absl::StatusOr<Envelope> envelope =
                VerifyStoredEnvelope(position, raw);
            if (position != expected) {
              problem = absl::StrCat("position ", expected, " is missing");
            } else if (!envelope.ok()) {
              problem = std::string(envelope.status().message());
            } else if (!prev_hash.empty() &&
                       envelope->prev_hash() != prev_hash) {
              problem = absl::StrCat("position ", position,
                                     " does not link to the one before");
            } else {
              prev_hash = envelope->hash();
            }
            ++expected;
          }));
      if (problem.empty() && expected != record.last_position() + 1) {
        problem = absl::StrCat("it ends at position ", expected - 1,
                               ", not ", record.last_position());
      }
      if (problem.empty() && ToHex(prev_hash) != record.last_hash()) {
        problem = "its last envelope's hash is not the record's last_hash";
      }
      if (!problem.empty()) {
        Violation(kCheckDiverged, absl::StatusCode::kDataLoss,
                  record.first_position(), "", "",
                  absl::StrCat("diverged record ", record.record(), " (",
                               Range(record.first_position(),
                                     record.last_position()),
                               "): ", problem));
      }
      *report_.add_diverged() = std::move(record);
    }
    return absl::OkStatus();
  }

  // Every stored node of the Merkle tree against the tree of the stored
  // envelopes (a damaged envelope is also the chain's violation; here it is
  // the leaves and nodes above it that no longer match).
  absl::Status MerkleTreePass() {
    if (options_.progress) options_.progress("merkle tree", 0, 0);
    absl::StatusOr<uint64_t> size = MerkleTreeSize(log_);
    if (!size.ok()) {
      Violation(kCheckMerkleTree, absl::StatusCode::kFailedPrecondition, 0, "",
                "", std::string(size.status().message()));
      return absl::OkStatus();
    }
    absl::StatusOr<MerkleCheck> checked = CheckMerkleTree(log_);
    if (absl::IsDataLoss(checked.status())) {
      // A gap in the events (the positions check names it) stops the
      // recomputation where it is.
      Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
                std::string(checked.status().message()));
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(MerkleCheck check, std::move(checked));
    for (std::string& problem : check.problems) {
      Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
                std::move(problem));
    }
    for (uint64_t i = check.problems.size(); i < check.problems_total; ++i) {
      Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
                "(more merkle tree problems)");
    }
    return absl::OkStatus();
  }

  // ------------------------------------------------------------ plumbing

  uint64_t CountOf(absl::string_view check) const {
    auto it = counts_.find(check);
    return it == counts_.end() ? 0 : it->second;
  }

  void Violation(absl::string_view check, absl::StatusCode code,
                 uint64_t position, absl::string_view stream_id,
                 absl::string_view key, std::string message) {
    ++counts_[std::string(check)];
    report_.set_violations_total(report_.violations_total() + 1);
    if (static_cast<size_t>(report_.violations_size()) >=
        options_.violations_max) {
      return;
    }
    v1::AuditViolation* v = report_.add_violations();
    v->set_check(std::string(check));
    v->set_code(absl::StatusCodeToString(code));
    v->set_position(position);
    v->set_stream_id(std::string(stream_id));
    v->set_key(absl::CEscape(key));
    v->set_message(std::move(message));
  }

  // A finding of the first events pass; the second look (diagnosing_)
  // re-walks the same events only to name other problems, so it stays quiet.
  void Integrity(absl::string_view check, absl::StatusCode code,
                 uint64_t position, absl::string_view stream_id,
                 absl::string_view key, std::string message) {
    if (diagnosing_) return;
    Violation(check, code, position, stream_id, key, std::move(message));
  }

  void Progress(absl::string_view pass, uint64_t done, uint64_t total,
                bool final_call = false) {
    if (!options_.progress) return;
    if (final_call || (options_.progress_every > 0 &&
                       done % options_.progress_every == 0)) {
      options_.progress(pass, done, total);
    }
  }

  // An iterator error: corruption RocksDB itself detected (a block checksum)
  // is a violation that ends the pass; anything else stops the audit.
  absl::Status IteratorEnd(const rocksdb::Iterator& it,
                           absl::string_view check, absl::string_view what) {
    const rocksdb::Status& s = it.status();
    if (s.ok()) return absl::OkStatus();
    if (s.IsCorruption()) {
      Violation(check, absl::StatusCode::kDataLoss, 0, "", "",
                absl::StrCat("RocksDB reports corruption while reading ", what,
                             "; the rest of it was not checked: ",
                             s.ToString()));
      return absl::OkStatus();
    }
    return absl::UnavailableError(
        absl::StrCat("audit: reading ", what, ": ", s.ToString()));
  }

  std::vector<Lookup*> Lookups() {
    return {&events_lookup_, &streams_lookup_, &commands_lookup_,
            &projections_lookup_, &projections_scan_};
  }

  Lookup& LookupFor(rocksdb::ColumnFamilyHandle* cf) {
    if (cf == log_.events_cf()) return events_lookup_;
    if (cf == log_.streams_cf()) return streams_lookup_;
    if (cf == log_.commands_cf()) return commands_lookup_;
    return projections_lookup_;
  }

  // nullopt when absent. Corruption is returned as kDataLoss for the caller
  // to report.
  absl::StatusOr<std::optional<std::string>> Get(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
    return LookupFor(cf).Find(key);
  }

  // The verified envelope at `position`, as EventLog::Read gives it:
  // kNotFound past the head, kDataLoss when missing or damaged.
  absl::StatusOr<v1::Envelope> ReadEnvelope(uint64_t position) {
    if (position == 0 || position > head_position_) {
      return absl::NotFoundError(absl::StrCat("no event at position ",
                                              position));
    }
    ASSIGN_OR_RETURN(std::optional<std::string> raw,
                     events_lookup_.Find(PositionKey(position)));
    if (!raw.has_value()) {
      return absl::DataLossError(
          absl::StrCat("event at position ", position, " is missing"));
    }
    return VerifyStoredEnvelope(position, *raw);
  }

  // The stored outcome of `command_id`, as EventLog::GetOutcome gives it.
  absl::StatusOr<std::optional<v1::StoredOutcome>> ReadOutcome(
      absl::string_view command_id) {
    ASSIGN_OR_RETURN(std::optional<std::string> bytes,
                     commands_lookup_.Find(command_id));
    if (!bytes.has_value()) return std::optional<v1::StoredOutcome>();
    v1::StoredOutcome outcome;
    if (!outcome.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat(
          "stored outcome of command ", absl::CEscape(command_id),
          " does not parse"));
    }
    return std::optional<v1::StoredOutcome>(std::move(outcome));
  }

  // Get, with corruption turned into a violation (and nullopt).
  absl::StatusOr<std::optional<std::string>> GetOrReport(
      rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
      absl::string_view check, uint64_t position) {
    absl::StatusOr<std::optional<std::string>> value = Get(cf, key);
    if (absl::IsDataLoss(value.status())) {
      Violation(check, absl::StatusCode::kDataLoss, position, "", key,
                absl::StrCat("RocksDB cannot read the key: ",
                             value.status().message()));
      return std::optional<std::string>();
    }
    return value;
  }

  std::unique_ptr<rocksdb::Iterator> Sequential(
      rocksdb::ColumnFamilyHandle* cf) const {
    rocksdb::ReadOptions read_options;
    // One pass over everything: keep it out of the block cache.
    read_options.fill_cache = false;
    read_options.snapshot = snapshot_;
    // No readahead_size: each file of a merging iterator would get a buffer
    // that large (measured: +20 MiB at 10^6 events); RocksDB's automatic
    // readahead for sequential reads is enough.
    return std::make_unique<SteppingIterator>(db_, cf, read_options);
  }

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

  absl::Status EventsPass() {
    std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.events_cf());
    uint64_t expected = 1;
    // Hash of position expected - 1 as stored; unknown after damage or a gap.
    std::optional<std::string> prev_hash = std::string(kHashBytes, '\0');
    uint64_t done = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const absl::string_view key = View(it->key());
      if (key.size() != kPositionBytes) {
        Integrity(kCheckPositions, absl::StatusCode::kDataLoss, 0, "", key,
                  absl::StrCat("events key of ", key.size(),
                               " bytes (keys are 8-byte positions), after "
                               "position ",
                               expected - 1));
        continue;
      }
      const uint64_t position = DecodeBigEndian64(key);
      if (position == 0) {
        Integrity(kCheckPositions, absl::StatusCode::kDataLoss, 0, "", key,
                  "an event is stored at position 0; positions start at 1");
        continue;
      }
      if (position > head_position_) {
        Integrity(kCheckPositions, absl::StatusCode::kDataLoss, position, "",
                  "",
                  absl::StrCat("an event is stored at position ", position,
                               ", beyond the head at ", head_position_));
        continue;
      }
      if (position != expected) {
        Integrity(kCheckPositions, absl::StatusCode::kDataLoss, expected, "",
                  "",
                  absl::StrCat("position", expected + 1 == position ? " " : "s ",
                               Range(expected, position - 1),
                               " missing: the log has a gap"));
        prev_hash.reset();
        Taint(position - 1);
      }
      expected = position + 1;
      CheckEnvelope(position, View(it->value()), &prev_hash);
      Progress(diagnosing_ ? "events (second look)" : "events", ++done,
               head_position_);
    }
    RETURN_IF_ERROR(io_error_);
    RETURN_IF_ERROR(IteratorEnd(*it, kCheckPositions, "the events"));
    if (expected <= head_position_ && it->status().ok()) {
      Integrity(kCheckPositions, absl::StatusCode::kDataLoss, expected, "", "",
                absl::StrCat("position", expected == head_position_ ? " " : "s ",
                             Range(expected, head_position_),
                             " missing: the log ends before its head"));
    }
    CloseRun();
    if (!diagnosing_ && prev_hash.has_value() &&
        expected == head_position_ + 1 &&
        head_position_ > 0 && *prev_hash != head_hash_) {
      Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, head_position_,
                "", "",
                absl::StrCat("the stored head hash ", ToHex(head_hash_),
                             " differs from the hash of the last event, ",
                             ToHex(*prev_hash)));
    }
    Progress(diagnosing_ ? "events (second look)" : "events", done,
             head_position_, true);
    return absl::OkStatus();
  }

  // Checks one stored envelope; `prev_hash` is the stored hash of the
  // position before (nullopt when unknown) and becomes this one's.
  void CheckEnvelope(uint64_t position, absl::string_view raw,
                     std::optional<std::string>* prev_hash) {
    if (!diagnosing_) report_.set_events_checked(report_.events_checked() + 1);
    absl::StatusOr<v1::Envelope> parsed = ParseStoredEnvelope(position, raw);
    if (!parsed.ok()) {
      Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, position, "", "",
                std::string(parsed.status().message()));
      prev_hash->reset();
      Taint(position);
      return;
    }
    const v1::Envelope& envelope = *parsed;
    const std::string computed = StoredEnvelopeHash(envelope, raw);
    const bool hash_ok = computed == envelope.hash();
    if (!hash_ok) {
      Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), "",
                absl::StrCat("event at position ", position,
                             ": hash mismatch: stored ", ToHex(envelope.hash()),
                             ", computed ", ToHex(computed),
                             " (the stored bytes were changed)"));
    }
    if (prev_hash->has_value() && envelope.prev_hash() != **prev_hash) {
      Integrity(kCheckHashChain, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), "",
                absl::StrCat("event at position ", position, ": prev_hash ",
                             ToHex(envelope.prev_hash()),
                             " does not link to the hash ", ToHex(**prev_hash),
                             " of position ", position - 1));
    }
    *prev_hash = envelope.hash();
    if (!hash_ok) {
      // The content cannot be trusted: checking it would only add noise.
      Taint(position);
      return;
    }
    if (!diagnosing_) ++good_envelopes_;
    if (check_index_) CheckIndexed(envelope);
    if (!diagnosing_) {
      CheckStream(envelope);
      CheckPostings(envelope);
    }
    AddToRun(envelope);
  }

  void CheckIndexed(const v1::Envelope& envelope) {
    const uint64_t position = envelope.position();
    const std::string& stream = envelope.stream_id();
    if (stream.empty() || stream.find(kKeySeparator) != std::string::npos) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position,
                stream, "",
                "the envelope's stream id is empty or holds a NUL byte");
      return;
    }
    const std::string key = StreamIndexKey(stream, envelope.stream_version());
    absl::StatusOr<std::optional<std::string>> value =
        GetOrReport(log_.streams_cf(), key, kCheckStreamIndex, position);
    if (!value.ok()) {
      io_error_ = value.status();
      return;
    }
    if (!value->has_value()) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position,
                stream, key,
                absl::StrCat("event at position ", position, " (stream ",
                             stream, " version ", envelope.stream_version(),
                             ") is not in the stream index"));
    } else if (**value != PositionKey(position)) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position,
                stream, key,
                absl::StrCat(
                    "the index entry of stream ", stream, " version ",
                    envelope.stream_version(), " points at ",
                    (*value)->size() == kPositionBytes
                        ? absl::StrCat("position ", DecodeBigEndian64(**value))
                        : std::string("a malformed position"),
                    ", not at position ", position, ", which holds it"));
    }
  }

  void CheckStream(const v1::Envelope& envelope) {
    const std::string expected = ExpectedStream(envelope.payload());
    if (expected.empty()) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss,
                envelope.position(), envelope.stream_id(), "",
                "the event has no body");
    } else if (expected != envelope.stream_id()) {
      Violation(kCheckStreamIndex, absl::StatusCode::kFailedPrecondition,
                envelope.position(), envelope.stream_id(), "",
                absl::StrCat("a ", envelope.event_type(), " event belongs in ",
                             "stream ", expected, " but was appended to ",
                             envelope.stream_id()));
    }
  }

  void CheckPostings(const v1::Envelope& envelope) {
    const std::vector<Posting> postings = PostingsFor(envelope.payload());
    if (postings.empty()) return;
    const uint64_t position = envelope.position();
    report_.set_postings_checked(report_.postings_checked() + postings.size());
    const std::string& store = postings.front().store_id;
    int64_t sum = 0;
    bool overflow = false;
    for (const Posting& posting : postings) {
      if (posting.store_id != store) {
        Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition,
                  position, envelope.stream_id(), "",
                  absl::StrCat("the postings of one event name two stores, ",
                               store, " and ", posting.store_id, " (R13)"));
      }
      if (!AccountOfStore(store, posting.account)) {
        Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition,
                  position, envelope.stream_id(), "",
                  absl::StrCat("a posting of store ", store, " touches account ",
                               posting.account,
                               ", which is not that store's (R13)"));
      }
      if (posting.debit_fen < 0 || posting.credit_fen < 0) {
        Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition,
                  position, envelope.stream_id(), "",
                  absl::StrCat("a posting to ", posting.account,
                               " has a negative amount"));
      }
      std::optional<int64_t> net =
          CheckedSub(posting.debit_fen, posting.credit_fen);
      std::optional<int64_t> next =
          net.has_value() ? CheckedAdd(sum, *net) : std::nullopt;
      if (!next.has_value()) {
        overflow = true;
      } else {
        sum = *next;
      }
    }
    if (overflow) {
      Violation(kCheckPostings, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), "",
                "the postings' sum overflows int64 fen");
    } else if (sum != 0) {
      Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition,
                position, envelope.stream_id(), "",
                absl::StrCat("the postings do not balance: debits - credits = ",
                             sum, " fen"));
    }
    if (envelope.stream_id() != StoreStream(store)) {
      Violation(kCheckPostings, absl::StatusCode::kFailedPrecondition,
                position, envelope.stream_id(), "",
                absl::StrCat("the event moves money of store ", store,
                             " but lives in stream ", envelope.stream_id(),
                             " (R13)"));
    }
  }

  // A damaged or missing position up to `through`: the run around it, and
  // the run after it, have an unknown extent.
  void Taint(uint64_t through) {
    if (run_.active) {
      run_.tainted = true;
      run_.last = std::max(run_.last, through);
    }
    next_run_tainted_ = true;
  }

  void AddToRun(const v1::Envelope& envelope) {
    const uint64_t position = envelope.position();
    if (run_.active && run_.command_id == envelope.command_id() &&
        run_.last + 1 == position) {
      run_.last = position;
      run_.last_good = position;
    } else {
      CloseRun();
      run_ = CommandRun();
      run_.active = true;
      run_.command_id = envelope.command_id();
      run_.first = run_.last = run_.first_good = run_.last_good = position;
      run_.tainted = next_run_tainted_;
      if (envelope.command_id().empty()) {
        Integrity(kCheckOutcomes, absl::StatusCode::kDataLoss, position,
                  envelope.stream_id(), "",
                  "the envelope carries no command id");
        run_.outcome_unreadable = true;
        tainted_any_ = true;
      } else if (lookup_outcomes_) {
        absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
            ReadOutcome(envelope.command_id());
        if (absl::IsDataLoss(outcome.status())) {
          run_.outcome_unreadable = true;  // pass 3 names it
        } else if (!outcome.ok()) {
          io_error_ = outcome.status();
          run_.outcome_unreadable = true;
        } else {
          run_.outcome = *std::move(outcome);
        }
      }
    }
    next_run_tainted_ = false;
    if (envelope.payload().has_command_rejected()) {
      if (run_.rejections++ == 0) {
        const v1::CommandRejected& rejected =
            envelope.payload().command_rejected();
        run_.fingerprint = Sha256(SerializeDeterministic(rejected.command()));
        run_.rule = rejected.rule();
        run_.code = rejected.code();
        if (rejected.command().command_id() != envelope.command_id()) {
          run_.fingerprint.clear();  // cannot match the outcome
        }
      }
    } else {
      ++run_.facts;
    }
    if (lookup_outcomes_) CheckAgainstOutcome(envelope);
  }

  void CheckAgainstOutcome(const v1::Envelope& envelope) {
    if (!run_.outcome.has_value()) return;
    const v1::StoredOutcome& outcome = *run_.outcome;
    const v1::CommandResult& result = outcome.result();
    const uint64_t position = envelope.position();
    const bool is_rejection = envelope.payload().has_command_rejected();
    if (result.status() != (is_rejection ? v1::REJECTED : v1::ACCEPTED)) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), envelope.command_id(),
                absl::StrCat("command ", envelope.command_id(),
                             " has stored outcome ",
                             v1::OutcomeStatus_Name(result.status()),
                             " but its event at position ", position, " is a ",
                             envelope.event_type()));
      return;
    }
    if (!is_rejection) return;
    const v1::CommandRejected& rejected = envelope.payload().command_rejected();
    if (rejected.command().command_id() != envelope.command_id() ||
        Sha256(SerializeDeterministic(rejected.command())) !=
            outcome.fingerprint() ||
        rejected.rule() != result.rule() || rejected.code() != result.code()) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, position,
                envelope.stream_id(), envelope.command_id(),
                absl::StrCat("the rejection recorded at position ", position,
                             " does not match the stored outcome of command ",
                             envelope.command_id(),
                             " (command, fingerprint, rule or code differ)"));
    }
  }

  void CloseRun() {
    if (!run_.active) return;
    run_.active = false;
    if (!lookup_outcomes_) {
      // First look: no lookups, only the run's fingerprint in the multiset
      // that pass 3 compares with the stored outcomes'.
      if (run_.tainted || run_.outcome_unreadable) {
        tainted_any_ = true;
        return;
      }
      const bool rejected = run_.facts == 0;
      const v1::OutcomeStatus status =
          run_.rejections == 0 ? v1::ACCEPTED
          : rejected           ? v1::REJECTED
                               : v1::OUTCOME_STATUS_UNSPECIFIED;  // mixed
      runs_.Add(OutcomeFingerprint(
          run_.command_id, run_.first, run_.last, status,
          rejected ? run_.fingerprint : "", rejected ? run_.rule : "",
          rejected ? run_.code : v1::REJECTION_CODE_UNSPECIFIED));
      return;
    }
    if (run_.outcome_unreadable) return;
    const std::string& id = run_.command_id;
    if (!run_.outcome.has_value()) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, run_.first_good,
                "", id,
                absl::StrCat("the events of command ", id, " at position",
                             run_.first_good == run_.last_good ? " " : "s ",
                             Range(run_.first_good, run_.last_good),
                             " have no stored outcome"));
      return;
    }
    const v1::CommandResult& result = run_.outcome->result();
    const bool matches =
        run_.tainted ? result.first_position() <= run_.first_good &&
                           run_.last_good <= result.last_position()
                     : result.first_position() == run_.first &&
                           result.last_position() == run_.last;
    if (!matches) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, run_.first_good,
                "", id,
                absl::StrCat("the stored outcome of command ", id,
                             " names positions ",
                             Range(result.first_position(),
                                   result.last_position()),
                             " but its events are at positions ",
                             Range(run_.first_good, run_.last_good)));
    }
  }

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

  absl::Status StreamsPass() {
    std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.streams_cf());
    uint64_t done = 0;
    for (it->SeekToFirst(); it->Valid() && io_error_.ok(); it->Next()) {
      const absl::string_view key = View(it->key());
      const absl::string_view value = View(it->value());
      const size_t separator = key.find(kKeySeparator);
      if (separator == absl::string_view::npos) {
        FinishStream();
        StartStream(key);
        walk_.head_bytes = std::string(value);
        continue;
      }
      const absl::string_view stream = key.substr(0, separator);
      if (!walk_.active || walk_.stream_id != stream) {
        FinishStream();
        StartStream(stream);
      }
      const absl::string_view version_bytes = key.substr(separator + 1);
      if (version_bytes.size() != kPositionBytes ||
          value.size() != kPositionBytes) {
        Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream,
                  key, "malformed stream index entry");
        StopFold("its stream index holds a malformed entry", 0, true);
        walk_.sums_complete = false;
        continue;
      }
      VisitIndexEntry(DecodeBigEndian64(version_bytes),
                      DecodeBigEndian64(value));
      Progress("streams", ++done, 0);
    }
    RETURN_IF_ERROR(io_error_);
    FinishStream();
    RETURN_IF_ERROR(io_error_);
    RETURN_IF_ERROR(IteratorEnd(*it, kCheckStreamIndex, "the stream index"));
    Progress("streams", done, 0, true);
    return absl::OkStatus();
  }

  void StartStream(absl::string_view stream_id) {
    walk_ = StreamWalk();
    walk_.active = true;
    walk_.stream_id = std::string(stream_id);
    if (absl::StartsWith(stream_id, kStoreStreamPrefix)) {
      walk_.store_id = std::string(stream_id.substr(kStoreStreamPrefix.size()));
    } else if (absl::StartsWith(stream_id, kMerchantStreamPrefix)) {
      walk_.merchant_id =
          std::string(stream_id.substr(kMerchantStreamPrefix.size()));
    }
    walk_.state = std::make_unique<StateOverlay>(&EmptyState());
    if (!walk_.store_id.empty()) CollectSnapshotVersions();
  }

  // The versions of the store's snapshots: few (one per ~1000 events of the
  // store), so a set of them does not grow with the log in any way that
  // matters.
  void CollectSnapshotVersions() {
    for (absl::string_view kind : {kSnapshotPrefix, kSnapshotMetaPrefix}) {
      const std::string prefix = absl::StrCat(kind, walk_.store_id, Sep());
      absl::Status scanned = projections_scan_.ScanPrefix(
          prefix, [&](absl::string_view key, absl::string_view) {
            const absl::string_view version = key.substr(prefix.size());
            if (version.size() != kPositionBytes) {
              Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
                        walk_.stream_id, key,
                        "a malformed snapshot key (the version is not 8 "
                        "bytes)");
            } else {
              walk_.snapshot_versions.insert(DecodeBigEndian64(version));
            }
            return true;
          });
      if (!scanned.ok() && !absl::IsDataLoss(scanned)) io_error_ = scanned;
    }
  }

  // The snapshot at `envelope`'s version against the records folded so far
  // (the fold has just applied `envelope`).
  void CheckSnapshot(const v1::Envelope& envelope) {
    const std::string& store_id = walk_.store_id;
    const uint64_t version = envelope.stream_version();
    v1::SnapshotMeta meta;
    meta.set_version(version);
    meta.set_position(envelope.position());
    *meta.mutable_occurred_at() = envelope.occurred_at();
    absl::StatusOr<v1::StoreSnapshot> expected =
        MakeSnapshot(*walk_.state, store_id, std::move(meta));
    const std::string snapshot_key = SnapshotKey(store_id, version);
    if (!expected.ok()) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss,
                envelope.position(), walk_.stream_id, snapshot_key,
                absl::StrCat("a snapshot is stored at version ", version,
                             " but the fold gives none: ",
                             expected.status().message()));
      return;
    }
    CompareRecord(snapshot_key, &*expected,
                  v1::StoreSnapshot::default_instance());
    CompareRecord(SnapshotMetaKey(store_id, version), &expected->meta(),
                  v1::SnapshotMeta::default_instance());
  }

  // Records that the stream's records cannot be recomputed; `reported` says a
  // violation already names the cause.
  void StopFold(std::string why, uint64_t position, bool reported) {
    if (!walk_.fold_problem.empty()) return;
    walk_.fold_problem = std::move(why);
    walk_.fold_problem_position = position;
    walk_.fold_problem_reported = reported;
    walk_.state.reset();
  }

  bool Folding() const { return walk_.fold_problem.empty(); }

  void VisitIndexEntry(uint64_t version, uint64_t position) {
    const std::string& stream = walk_.stream_id;
    if (version != walk_.next_version) {
      // The second look of pass 1 names the unindexed event; the position of
      // the missing version is not known from the index.
      walk_.sums_complete = false;
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0,
                stream, "",
                absl::StrCat("stream ", stream, ": version",
                             walk_.next_version + 1 == version ? " " : "s ",
                             Range(walk_.next_version, version - 1),
                             " missing from the stream index"));
      StopFold("versions are missing from its stream index", position, true);
    }
    walk_.next_version = version + 1;
    walk_.last_version = version;
    absl::StatusOr<v1::Envelope> envelope = ReadEnvelope(position);
    if (!envelope.ok()) walk_.sums_complete = false;
    if (absl::IsNotFound(envelope.status())) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position,
                stream, StreamIndexKey(stream, version),
                absl::StrCat("stream ", stream, " version ", version,
                             " points at position ", position,
                             ", where there is no event"));
      StopFold("its index points at a missing event", position, true);
      return;
    }
    if (absl::IsDataLoss(envelope.status())) {
      // Pass 1 names the damage itself; here it stops the fold.
      StopFold(absl::StrCat("the event at position ", position, " (version ",
                            version, ") is damaged or missing"),
               position, false);
      return;
    }
    if (!envelope.ok()) {
      io_error_ = envelope.status();
      return;
    }
    if (envelope->stream_id() != stream ||
        envelope->stream_version() != version) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position,
                stream, StreamIndexKey(stream, version),
                absl::StrCat("stream ", stream, " version ", version,
                             " points at position ", position,
                             ", which holds stream ", envelope->stream_id(),
                             " version ", envelope->stream_version()));
      StopFold("its index points at another stream's event", position, true);
      walk_.sums_complete = false;
      return;
    }
    ++verified_entries_;
    if (version > 1 && stream != kRejectionsStream &&
        ToTime(envelope->occurred_at()) < ToTime(walk_.last_occurred_at)) {
      Violation(kCheckStreamIndex, absl::StatusCode::kFailedPrecondition,
                position, stream, "",
                absl::StrCat("stream ", stream, ": business time goes back at "
                             "version ",
                             version, " (R0)"));
    }
    walk_.last_occurred_at = envelope->occurred_at();
    if (walk_.store_id.empty() && walk_.merchant_id.empty()) return;
    if (Folding()) {
      absl::Status evolved = EvolveEnvelope(*envelope, walk_.state.get());
      if (!evolved.ok()) {
        Violation(kCheckProjections, absl::StatusCode::kDataLoss, position,
                  stream, "",
                  absl::StrCat("folding stream ", stream, " with Evolve fails "
                               "at version ",
                               version, ": ", evolved.message()));
        StopFold("Evolve rejects one of its events", position, true);
      } else if (walk_.snapshot_versions.erase(version) > 0) {
        CheckSnapshot(*envelope);
      }
    }
    if (!walk_.store_id.empty() && walk_.sums_complete) SumPostings(*envelope);
  }

  // Adds the event's postings of this store to its accounts; no store
  // account may be below zero after any event.
  void SumPostings(const v1::Envelope& envelope) {
    std::set<std::string> touched;
    for (const Posting& posting : PostingsFor(envelope.payload())) {
      if (posting.store_id != walk_.store_id) continue;  // pass 1 reports it
      if (BalanceFieldOf(walk_.store_id, posting.account) ==
          BalanceField::kNone) {
        continue;  // outside accounts go negative by design
      }
      absl::Status s = walk_.accounts.Apply(posting.account, posting.debit_fen,
                                            posting.credit_fen);
      if (!s.ok()) {
        Violation(kCheckBalances, absl::StatusCode::kDataLoss,
                  envelope.position(), walk_.stream_id, "",
                  std::string(s.message()));
      }
      touched.insert(posting.account);
    }
    for (const std::string& account : touched) {
      const int64_t balance_fen = walk_.accounts.Get(account);
      if (balance_fen < 0 && walk_.negative_reported.insert(account).second) {
        Violation(kCheckBalances, absl::StatusCode::kFailedPrecondition,
                  envelope.position(), walk_.stream_id, "",
                  absl::StrCat("account ", account, " is ", balance_fen,
                               " fen after the event at position ",
                               envelope.position(),
                               ": a store balance went below zero (later "
                               "events of the stream are not reported again)"));
      }
    }
  }

  void FinishStream() {
    if (!walk_.active) return;
    walk_.active = false;
    report_.set_streams_checked(report_.streams_checked() + 1);
    const std::string& stream = walk_.stream_id;
    CheckStreamHead();
    if (!walk_.store_id.empty()) {
      report_.set_stores_checked(report_.stores_checked() + 1);
    } else if (!walk_.merchant_id.empty()) {
      report_.set_merchants_checked(report_.merchants_checked() + 1);
    } else {
      return;
    }
    for (uint64_t version : walk_.snapshot_versions) {
      if (!Folding() && version <= walk_.last_version) continue;
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
                SnapshotKey(walk_.store_id, version),
                absl::StrCat("a snapshot of store ", walk_.store_id,
                             " at version ", version,
                             ", past the stream's last version ",
                             walk_.last_version));
    }
    if (!Folding()) {
      if (!walk_.fold_problem_reported) {
        Violation(kCheckProjections, absl::StatusCode::kDataLoss,
                  walk_.fold_problem_position, stream, "",
                  absl::StrCat("the records of stream ", stream,
                               " were not recomputed: ", walk_.fold_problem));
      }
      return;
    }
    if (!walk_.store_id.empty()) {
      CompareStore();
    } else {
      CompareMerchant();
    }
  }

  void CheckStreamHead() {
    const std::string& stream = walk_.stream_id;
    if (!walk_.head_bytes.has_value()) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream,
                stream,
                absl::StrCat("stream ", stream,
                             " has index entries but no stream head"));
      return;
    }
    StreamHead stored;
    if (!stored.ParseFromString(*walk_.head_bytes)) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream,
                stream,
                absl::StrCat("the head of stream ", stream, " does not parse"));
      return;
    }
    if (stored.version() != walk_.last_version) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream,
                stream,
                absl::StrCat("the head of stream ", stream, " names version ",
                             stored.version(), " but its index ends at version ",
                             walk_.last_version));
      return;
    }
    StreamHead expected;
    expected.set_version(walk_.last_version);
    *expected.mutable_last_occurred_at() = walk_.last_occurred_at;
    if (SerializeDeterministic(expected) != *walk_.head_bytes) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream,
                stream,
                absl::StrCat("the head of stream ", stream, " is ",
                             Short(stored), ", its last event gives ",
                             Short(expected)));
    }
  }

  // Compares the stored record under `key` with `folded` (nullptr: the log
  // has no such record). `prototype` parses the stored bytes for messages.
  void CompareRecord(const std::string& key,
                     const google::protobuf::Message* folded,
                     const google::protobuf::Message& prototype) {
    const std::string& stream = walk_.stream_id;
    absl::StatusOr<std::optional<std::string>> stored =
        GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
    if (!stored.ok()) {
      io_error_ = stored.status();
      return;
    }
    if (!stored->has_value()) {
      if (folded != nullptr) {
        Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
                  key,
                  absl::StrCat("record missing from the projections; the log "
                               "gives ",
                               Short(*folded)));
      }
      return;
    }
    if (folded == nullptr) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
                "a record is stored that the log does not give");
      return;
    }
    if (SerializeDeterministic(*folded) == **stored) return;
    std::unique_ptr<google::protobuf::Message> parsed(prototype.New());
    const std::string stored_text =
        parsed->ParseFromString(**stored) ? Short(*parsed)
                                          : std::string("bytes that do not parse");
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
              absl::StrCat("the stored record differs from the one folded "
                           "from the log: stored ",
                           stored_text, ", folded ", Short(*folded)));
  }

  // Walks the stored keys under `prefix` beside the folded ids (both sorted
  // by id), calling `both` for ids in both and reporting the rest.
  template <typename Map, typename IdOf>
  void MergeIndex(const std::string& prefix, const Map& folded, IdOf id_of,
                  absl::string_view what,
                  const std::function<
                      void(absl::string_view id, absl::string_view value,
                           const typename Map::mapped_type::element_type&)>&
                      both) {
    const std::string& stream = walk_.stream_id;
    auto next = folded.begin();
    auto missing = [&]() {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
                prefix + id_of(next->first),
                absl::StrCat(what, " ", id_of(next->first),
                             " is missing from the projections; the log "
                             "gives ",
                             Short(*next->second)));
    };
    absl::Status scanned = projections_scan_.ScanPrefix(
        prefix, [&](absl::string_view key, absl::string_view value) {
          const absl::string_view id = key.substr(prefix.size());
          while (next != folded.end() && id_of(next->first) < id) {
            missing();
            ++next;
          }
          if (next != folded.end() && id_of(next->first) == id) {
            both(id, value, *next->second);
            ++next;
          } else {
            Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
                      stream, key,
                      absl::StrCat(what, " ", id,
                                   " is stored but the log has no such ",
                                   what, " in stream ", stream));
          }
          return io_error_.ok();
        });
    for (; next != folded.end(); ++next) missing();
    if (absl::IsDataLoss(scanned)) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
                prefix, std::string(scanned.message()));
    } else if (!scanned.ok()) {
      io_error_ = scanned;
    }
  }

  void CompareStore() {
    const std::string& store_id = walk_.store_id;
    const std::string& stream = walk_.stream_id;
    const StateOverlay& state = *walk_.state;
    auto store_it = state.stores().find(store_id);
    const StoreRecord* store =
        store_it == state.stores().end() ? nullptr : store_it->second.get();
    CompareRecord(StoreKey(store_id), store, StoreRecord::default_instance());
    if (store != nullptr) {
      CompareIndexKey(absl::StrCat(kKindPrefix, static_cast<int>(store->kind()),
                                   "/", store_id),
                      "the store-by-kind index entry");
      CompareBalances(*store);
      CheckMerchantLists(*store);
    }

    const std::string sep = Sep();
    MergeIndex(
        absl::StrCat(kProductPrefix, store_id, sep), state.products(),
        [](const std::pair<std::string, std::string>& key) -> const std::string& {
          return key.second;
        },
        "product",
        [&](absl::string_view, absl::string_view value,
            const ProductRecord& folded) {
          if (SerializeDeterministic(folded) == value) return;
          ProductRecord stored;
          Violation(
              kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
              absl::StrCat(kProductPrefix, store_id, sep, folded.product_id()),
              absl::StrCat("the stored record differs from the one folded "
                           "from the log: stored ",
                           stored.ParseFromArray(value.data(),
                                                 static_cast<int>(value.size()))
                               ? Short(stored)
                               : std::string("bytes that do not parse"),
                           ", folded ", Short(folded)));
        });
    MergeIndex(
        absl::StrCat(kStoreOrderPrefix, store_id, sep), state.orders(),
        [](const std::string& id) -> const std::string& { return id; },
        "order",
        [&](absl::string_view id, absl::string_view value,
            const OrderRecord& folded) {
          CheckEmptyIndexValue(id, value, kStoreOrderPrefix);
          CompareRecord(absl::StrCat(kOrderPrefix, id), &folded,
                        OrderRecord::default_instance());
        });
    MergeIndex(
        absl::StrCat(kStoreWithdrawalPrefix, store_id, sep),
        state.withdrawals(),
        [](const std::string& id) -> const std::string& { return id; },
        "withdrawal",
        [&](absl::string_view id, absl::string_view value,
            const WithdrawalRecord& folded) {
          CheckEmptyIndexValue(id, value, kStoreWithdrawalPrefix);
          CompareRecord(absl::StrCat(kWithdrawalPrefix, id), &folded,
                        WithdrawalRecord::default_instance());
        });
  }

  void CheckEmptyIndexValue(absl::string_view id, absl::string_view value,
                            absl::string_view prefix) {
    if (value.empty()) return;
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
              walk_.stream_id,
              absl::StrCat(prefix, walk_.store_id, Sep(), id),
              "an index entry holds a value; index entries are empty");
  }

  void CompareIndexKey(const std::string& key, absl::string_view what) {
    absl::StatusOr<std::optional<std::string>> stored =
        GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
    if (!stored.ok()) {
      io_error_ = stored.status();
    } else if (!stored->has_value()) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
                walk_.stream_id, key, absl::StrCat(what, " is missing"));
    }
  }

  // The store's balances, as Evolve folded them, against the sum of its
  // postings (two independent derivations of the same money).
  void CompareBalances(const StoreRecord& store) {
    absl::StatusOr<v1::Balances> from_postings =
        StoreBalancesFromAccounts(walk_.store_id, walk_.accounts);
    if (!from_postings.ok()) {
      Violation(kCheckBalances, absl::StatusCode::kDataLoss, 0,
                walk_.stream_id, "", std::string(from_postings.status().message()));
      return;
    }
    if (SerializeDeterministic(*from_postings) !=
        SerializeDeterministic(store.balances())) {
      Violation(kCheckBalances, absl::StatusCode::kFailedPrecondition, 0,
                walk_.stream_id, StoreKey(walk_.store_id),
                absl::StrCat("store ", walk_.store_id, ": balances folded "
                             "with Evolve ",
                             Short(store.balances()),
                             " differ from the sum of its postings ",
                             Short(*from_postings)));
    }
    // Deposits per category: the map against the S/deposit/<c> accounts.
    std::map<std::string, int64_t> from_accounts;
    const std::string deposit_prefix = DepositAccount(walk_.store_id, "");
    for (const auto& [account, balance_fen] : walk_.accounts.accounts()) {
      if (absl::StartsWith(account, deposit_prefix) && balance_fen != 0) {
        from_accounts[account.substr(deposit_prefix.size())] = balance_fen;
      }
    }
    std::map<std::string, int64_t> from_record;
    for (const auto& [category, fen] : store.deposit_fen_by_category()) {
      if (fen != 0) from_record[category] = fen;
    }
    if (from_accounts != from_record) {
      Violation(kCheckBalances, absl::StatusCode::kFailedPrecondition, 0,
                walk_.stream_id, StoreKey(walk_.store_id),
                absl::StrCat("store ", walk_.store_id,
                             ": deposits by category differ from the "
                             "balances of its deposit accounts"));
    }
  }

  // The store's merchant record must list it (the other half of
  // CompareMerchant's check of store_ids).
  void CheckMerchantLists(const StoreRecord& store) {
    const std::string key = absl::StrCat(kMerchantPrefix, store.merchant_id());
    absl::StatusOr<std::optional<std::string>> stored =
        GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
    if (!stored.ok()) {
      io_error_ = stored.status();
      return;
    }
    MerchantRecord merchant;
    if (!stored->has_value() || !merchant.ParseFromString(**stored)) {
      return;  // the merchant's own stream walk reports it
    }
    const auto& ids = merchant.store_ids();
    if (std::find(ids.begin(), ids.end(), store.store_id()) == ids.end()) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
                walk_.stream_id, key,
                absl::StrCat("merchant ", store.merchant_id(),
                             "'s record does not list its store ",
                             store.store_id()));
    }
  }

  // A merchant record folds from its stream, except store_ids: every store
  // opened adds itself (StoreOpened, in the store's stream). So the folded
  // record takes, besides the first store, those stored ids whose store
  // record names this merchant; CheckMerchantLists checks the converse.
  void CompareMerchant() {
    const std::string& merchant_id = walk_.merchant_id;
    const std::string key = absl::StrCat(kMerchantPrefix, merchant_id);
    const StateOverlay& state = *walk_.state;
    auto it = state.merchants().find(merchant_id);
    if (it == state.merchants().end()) {
      CompareRecord(key, nullptr, MerchantRecord::default_instance());
      return;
    }
    MerchantRecord expected = *it->second;
    std::set<std::string> ids(expected.store_ids().begin(),
                              expected.store_ids().end());
    absl::StatusOr<std::optional<std::string>> stored_bytes =
        GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
    if (!stored_bytes.ok()) {
      io_error_ = stored_bytes.status();
      return;
    }
    MerchantRecord stored;
    if (stored_bytes->has_value() && stored.ParseFromString(**stored_bytes)) {
      for (const std::string& store_id : stored.store_ids()) {
        absl::StatusOr<std::optional<std::string>> store_bytes = GetOrReport(
            log_.projections_cf(), StoreKey(store_id), kCheckProjections, 0);
        if (!store_bytes.ok()) {
          io_error_ = store_bytes.status();
          return;
        }
        StoreRecord store;
        if (store_bytes->has_value() && store.ParseFromString(**store_bytes) &&
            store.merchant_id() == merchant_id) {
          ids.insert(store_id);
        }
      }
    }
    expected.clear_store_ids();
    for (const std::string& id : ids) expected.add_store_ids(id);
    CompareRecord(key, &expected, MerchantRecord::default_instance());
  }

  // ------------------------------------------------------------ pass 3

  absl::Status CommandsPass() {
    std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.commands_cf());
    uint64_t done = 0;
    const absl::string_view pass =
        diagnosing_ ? "commands (second look)" : "commands";
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (!diagnosing_) {
        report_.set_commands_checked(report_.commands_checked() + 1);
      }
      RETURN_IF_ERROR(CheckOutcome(View(it->key()), View(it->value())));
      Progress(pass, ++done, 0);
    }
    if (!diagnosing_) {
      RETURN_IF_ERROR(
          IteratorEnd(*it, kCheckOutcomes, "the command outcomes"));
    }
    Progress(pass, done, 0, true);
    return absl::OkStatus();
  }

  // First look: the outcome on its own, and its fingerprint into outcomes_.
  // Second look: also the events at the positions it names.
  absl::Status CheckOutcome(absl::string_view command_id,
                            absl::string_view value) {
    auto violation = [&](uint64_t position, std::string message) {
      Integrity(kCheckOutcomes, absl::StatusCode::kDataLoss, position, "",
                command_id,
                absl::StrCat("stored outcome of command ",
                             absl::CEscape(command_id), ": ", message));
    };
    v1::StoredOutcome outcome;
    if (!outcome.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      violation(0, "does not parse");
      return absl::OkStatus();
    }
    const v1::CommandResult& result = outcome.result();
    if (result.command_id() != command_id) {
      violation(0, absl::StrCat("names command id ",
                                absl::CEscape(result.command_id())));
    }
    if (result.status() != v1::ACCEPTED && result.status() != v1::REJECTED) {
      violation(0, absl::StrCat("status ",
                                v1::OutcomeStatus_Name(result.status()),
                                " is never stored"));
      return absl::OkStatus();
    }
    const uint64_t first = result.first_position();
    const uint64_t last = result.last_position();
    if (first == 0 && last == 0) {
      if (result.status() == v1::REJECTED) {
        violation(0, "a rejection without the position of its record");
      }
      return absl::OkStatus();  // accepted with nothing to append
    }
    if (first == 0 || first > last || last > head_position_) {
      violation(first, absl::StrCat("names positions ", first, "..", last,
                                    ", not a range of the log (head ",
                                    head_position_, ")"));
      return absl::OkStatus();
    }
    if (result.status() == v1::REJECTED && first != last) {
      violation(first, absl::StrCat("a rejection names positions ",
                                    Range(first, last),
                                    "; a rejection is one event"));
    }
    if (!diagnosing_) {
      const bool rejected = result.status() == v1::REJECTED;
      outcomes_.Add(OutcomeFingerprint(
          command_id, first, last, result.status(),
          rejected ? outcome.fingerprint() : "", rejected ? result.rule() : "",
          rejected ? result.code() : v1::REJECTION_CODE_UNSPECIFIED));
      return absl::OkStatus();
    }
    for (uint64_t position : {first, last}) {
      absl::StatusOr<v1::Envelope> envelope = ReadEnvelope(position);
      if (absl::IsDataLoss(envelope.status())) continue;  // pass 1 names it
      RETURN_IF_ERROR(envelope.status());
      if (envelope->command_id() != command_id) {
        Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, position, "",
                  command_id,
                  absl::StrCat("stored outcome of command ",
                               absl::CEscape(command_id), ": ",
                               "names position ", position,
                               ", which holds an event of command ",
                               absl::CEscape(envelope->command_id())));
      }
      if (first == last) break;
    }
    return absl::OkStatus();
  }

  // ------------------------------------------------------------ pass 4

  absl::Status ProjectionsPass() {
    std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.projections_cf());
    uint64_t done = 0;
    for (it->SeekToFirst(); it->Valid() && io_error_.ok(); it->Next()) {
      report_.set_projection_keys_checked(report_.projection_keys_checked() +
                                          1);
      CheckProjectionKey(View(it->key()), View(it->value()));
      Progress("projections", ++done, 0);
    }
    RETURN_IF_ERROR(io_error_);
    RETURN_IF_ERROR(IteratorEnd(*it, kCheckProjections, "the projections"));
    Progress("projections", done, 0, true);
    return absl::OkStatus();
  }

  // Whether the stream has a head; the last answer is cached because keys
  // of one store come together.
  bool StreamExists(const std::string& stream) {
    if (stream == cached_stream_) return cached_stream_exists_;
    absl::StatusOr<std::optional<std::string>> head =
        Get(log_.streams_cf(), stream);
    cached_stream_ = stream;
    cached_stream_exists_ = head.ok() && head->has_value();
    if (!head.ok() && !absl::IsDataLoss(head.status())) io_error_ = head.status();
    return cached_stream_exists_;
  }

  void CheckProjectionKey(absl::string_view key, absl::string_view value) {
    auto orphan = [&](std::string message) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, "", key,
                std::move(message));
    };
    const std::string sep = Sep();
    auto store_of_pair = [&](absl::string_view rest) -> std::optional<std::string> {
      const size_t at = rest.find(kKeySeparator);
      if (at == absl::string_view::npos) return std::nullopt;
      return std::string(rest.substr(0, at));
    };
    if (absl::StartsWith(key, kSnapshotPrefix) ||
        absl::StartsWith(key, kSnapshotMetaPrefix)) {
      // Their content is checked in pass 2, while the fold passes them.
      const size_t prefix = absl::StartsWith(key, kSnapshotPrefix)
                                ? kSnapshotPrefix.size()
                                : kSnapshotMetaPrefix.size();
      const absl::string_view rest = key.substr(prefix);
      if (rest.size() < kPositionBytes + 1 ||
          rest[rest.size() - kPositionBytes - 1] != kKeySeparator) {
        return orphan("a malformed snapshot key");
      }
      const absl::string_view store =
          rest.substr(0, rest.size() - kPositionBytes - 1);
      if (!StreamExists(StoreStream(store))) {
        orphan(absl::StrCat("a snapshot of store ", store,
                            ", which has no stream in the log"));
      }
    } else if (absl::StartsWith(key, kStorePrefix)) {
      const absl::string_view store = key.substr(kStorePrefix.size());
      if (!StreamExists(StoreStream(store))) {
        orphan(absl::StrCat("a record of store ", store,
                            ", which has no stream in the log"));
      }
    } else if (absl::StartsWith(key, kKindPrefix)) {
      const absl::string_view rest = key.substr(kKindPrefix.size());
      const size_t slash = rest.find('/');
      int kind = 0;
      if (slash == absl::string_view::npos ||
          !absl::SimpleAtoi(rest.substr(0, slash), &kind)) {
        return orphan("a malformed store-by-kind index key");
      }
      const absl::string_view store = rest.substr(slash + 1);
      absl::StatusOr<std::optional<std::string>> bytes =
          GetOrReport(log_.projections_cf(), StoreKey(store),
                      kCheckProjections, 0);
      if (!bytes.ok()) {
        io_error_ = bytes.status();
        return;
      }
      StoreRecord record;
      if (!bytes->has_value() || !record.ParseFromString(**bytes) ||
          static_cast<int>(record.kind()) != kind) {
        orphan(absl::StrCat("store ", store, " is indexed under kind ", kind,
                            " but its record is missing or of another kind"));
      }
      if (!value.empty()) orphan("an index entry holds a value");
    } else if (absl::StartsWith(key, kProductPrefix) ||
               absl::StartsWith(key, kStoreOrderPrefix) ||
               absl::StartsWith(key, kStoreWithdrawalPrefix)) {
      std::optional<std::string> store = store_of_pair(key.substr(2));
      if (!store.has_value()) return orphan("a malformed projection key");
      if (!StreamExists(StoreStream(*store))) {
        orphan(absl::StrCat("a record of store ", *store,
                            ", which has no stream in the log"));
      }
    } else if (absl::StartsWith(key, kOrderPrefix) ||
               absl::StartsWith(key, kWithdrawalPrefix)) {
      const bool is_order = absl::StartsWith(key, kOrderPrefix);
      const absl::string_view id = key.substr(2);
      std::string store_id;
      if (is_order) {
        OrderRecord record;
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return orphan("the order record does not parse");
        }
        store_id = record.store_id();
      } else {
        WithdrawalRecord record;
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
          return orphan("the withdrawal record does not parse");
        }
        store_id = record.store_id();
      }
      const std::string index_key =
          absl::StrCat(is_order ? kStoreOrderPrefix : kStoreWithdrawalPrefix,
                       store_id, sep, id);
      absl::StatusOr<std::optional<std::string>> indexed =
          GetOrReport(log_.projections_cf(), index_key, kCheckProjections, 0);
      if (!indexed.ok()) {
        io_error_ = indexed.status();
      } else if (!indexed->has_value()) {
        orphan(absl::StrCat(is_order ? "order " : "withdrawal ", id,
                            " of store ", store_id,
                            " is not in that store's index, so the log does "
                            "not account for it"));
      }
    } else if (absl::StartsWith(key, kMerchantPrefix)) {
      const absl::string_view merchant = key.substr(kMerchantPrefix.size());
      if (!StreamExists(MerchantStream(merchant))) {
        orphan(absl::StrCat("a record of merchant ", merchant,
                            ", which has no stream in the log"));
      }
    } else {
      orphan("a projection key of no known kind");
    }
  }

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

}  // namespace

absl::StatusOr<v1::AuditReport> Audit(const EventLog& log,
                                      const AuditOptions& options) {
  Auditor auditor(log, options);
  return auditor.Run();
}

}  // namespace storeledger
