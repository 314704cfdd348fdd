#include "replay/rebuild.h"

#include <array>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "core/evolve.h"
#include "core/state.h"
#include "core/status_macros.h"
#include "google/protobuf/util/message_differencer.h"
#include "replay/projection_store.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"

namespace storeledger {
namespace {

// The record prefixes of projection_store.h, in byte order (the order the
// comparison walks them). A key ProjectionPuts writes outside these is a
// change to the layout this file must learn about: the rebuild refuses it.
constexpr std::array<absl::string_view, 8> kLivePrefixes = {
    "O/", "W/", "k/", "m/", "o/", "p/", "s/", "w/"};
// Events between two progress callbacks.
constexpr uint64_t kProgressEveryEvents = 1 << 16;

absl::string_view View(const rocksdb::Slice& slice) {
  return absl::string_view(slice.data(), slice.size());
}

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(context, ": ", s.ToString()));
  }
  return absl::UnavailableError(absl::StrCat(context, ": ", s.ToString()));
}

// The successor of every key starting with `prefix` (prefix is never empty
// nor all 0xff here).
std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

std::string Shadow(absl::string_view key) {
  return absl::StrCat(kShadowPrefix, key);
}

// Key layout of projection_store.h, read side. (The write side is
// ProjectionPuts itself, so rebuilt bytes and keys are the inline ones; a
// mismatch here would surface as a kDataLoss from Evolve, which the tests
// would catch.)
std::string PairKey(absl::string_view prefix, absl::string_view a,
                    absl::string_view b) {
  std::string key = absl::StrCat(prefix, a);
  key.push_back('\0');
  key.append(b.data(), b.size());
  return key;
}

// StateReader over the shadow key space: what the rebuild has flushed so
// far. Only the point reads Evolve uses are served from it; the list reads
// are served too (by scans), for completeness. Stream heads live in the log,
// not in projections: Head() answers from nothing, and Evolve never asks.
class ShadowReader : public StateReader {
 public:
  explicit ShadowReader(const EventLog* log) : log_(log) {}

  absl::StatusOr<std::optional<StoreRecord>> Store(
      absl::string_view store_id) const override {
    return Read<StoreRecord>(absl::StrCat("s/", store_id));
  }
  absl::StatusOr<std::optional<ProductRecord>> Product(
      absl::string_view store_id, absl::string_view product_id) const override {
    return Read<ProductRecord>(PairKey("p/", store_id, product_id));
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override {
    std::vector<ProductRecord> out;
    absl::Status status;
    RETURN_IF_ERROR(log_->ScanProjections(
        Shadow(PairKey("p/", store_id, "")),
        [&](absl::string_view key, absl::string_view value) {
          ProductRecord record;
          if (!record.ParseFromArray(value.data(),
                                     static_cast<int>(value.size()))) {
            status = Corrupt(key);
            return false;
          }
          out.push_back(std::move(record));
          return true;
        }));
    RETURN_IF_ERROR(status);
    return out;
  }
  absl::StatusOr<std::optional<OrderRecord>> Order(
      absl::string_view order_id) const override {
    return Read<OrderRecord>(absl::StrCat("o/", order_id));
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view store_id) const override {
    return ByIndex<OrderRecord>(PairKey("O/", store_id, ""), "o/");
  }
  absl::StatusOr<std::optional<WithdrawalRecord>> Withdrawal(
      absl::string_view withdrawal_id) const override {
    return Read<WithdrawalRecord>(absl::StrCat("w/", withdrawal_id));
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view store_id) const override {
    return ByIndex<WithdrawalRecord>(PairKey("W/", store_id, ""), "w/");
  }
  absl::StatusOr<std::optional<MerchantRecord>> Merchant(
      absl::string_view merchant_id) const override {
    return Read<MerchantRecord>(absl::StrCat("m/", merchant_id));
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(
      StoreKind kind) const override {
    const std::string prefix =
        Shadow(absl::StrCat("k/", static_cast<int>(kind), "/"));
    std::vector<std::string> ids;
    RETURN_IF_ERROR(log_->ScanProjections(
        prefix, [&](absl::string_view key, absl::string_view) {
          ids.emplace_back(key.substr(prefix.size()));
          return true;
        }));
    return ids;
  }
  absl::StatusOr<std::optional<StreamHead>> Head(
      absl::string_view) const override {
    return std::optional<StreamHead>();
  }

 private:
  static absl::Status Corrupt(absl::string_view key) {
    return absl::DataLossError(
        absl::StrCat("rebuilt record ", absl::CEscape(key), " is corrupt"));
  }

  template <typename Record>
  absl::StatusOr<std::optional<Record>> Read(absl::string_view live_key) const {
    const std::string key = Shadow(live_key);
    ASSIGN_OR_RETURN(std::optional<std::string> bytes, log_->GetProjection(key));
    if (!bytes.has_value()) return std::optional<Record>();
    Record record;
    if (!record.ParseFromString(*bytes)) return Corrupt(key);
    return std::optional<Record>(std::move(record));
  }

  template <typename Record>
  absl::StatusOr<std::vector<Record>> ByIndex(const std::string& index_prefix,
                                              absl::string_view record_prefix)
      const {
    const std::string prefix = Shadow(index_prefix);
    std::vector<std::string> ids;
    RETURN_IF_ERROR(log_->ScanProjections(
        prefix, [&](absl::string_view key, absl::string_view) {
          ids.emplace_back(key.substr(prefix.size()));
          return true;
        }));
    std::vector<Record> out;
    for (const std::string& id : ids) {
      ASSIGN_OR_RETURN(std::optional<Record> record,
                       Read<Record>(absl::StrCat(record_prefix, id)));
      if (!record.has_value()) {
        return absl::DataLossError(absl::StrCat(
            "rebuilt index ", absl::CEscape(prefix), " names ", id,
            " but its record is missing"));
      }
      out.push_back(*std::move(record));
    }
    return out;
  }

  const EventLog* log_;
};

// Writes the overlay's records into the shadow space and clears it.
absl::Status Flush(EventLog* log, StateOverlay* overlay, uint64_t* records) {
  rocksdb::WriteBatch batch;
  for (const auto& [key, value] : ProjectionPuts(*overlay)) {
    if (!IsLiveProjectionKey(key)) {
      return absl::InternalError(absl::StrCat(
          "rebuild: ProjectionPuts wrote key ", absl::CEscape(key),
          " outside the record prefixes replay/rebuild.cc knows; teach it the "
          "new prefix"));
    }
    RETURN_IF_ERROR(FromRocks(
        batch.Put(log->projections_cf(), Shadow(key), value), "rebuild"));
    ++*records;
  }
  overlay->Clear();
  // The shadow space is scratch, cleared at the start of every run: after a
  // crash it may be lost or left behind, never trusted. So no WAL for it --
  // which also spares the next open replaying it.
  rocksdb::WriteOptions options;
  options.disableWAL = true;
  return FromRocks(log->db()->Write(options, &batch),
                   "rebuild: write shadow records");
}

absl::Status DeleteShadow(EventLog* log) {
  const std::string begin(kShadowPrefix);
  const std::string end = PrefixEnd(kShadowPrefix);
  return FromRocks(
      log->db()->DeleteRange(rocksdb::WriteOptions(), log->projections_cf(),
                             begin, end),
      "rebuild: clear the shadow space");
}

// The record type stored under a live key, for the difference report.
const google::protobuf::Message* RecordPrototype(absl::string_view key) {
  switch (key.empty() ? '\0' : key[0]) {
    case 's': return &StoreRecord::default_instance();
    case 'p': return &ProductRecord::default_instance();
    case 'o': return &OrderRecord::default_instance();
    case 'w': return &WithdrawalRecord::default_instance();
    case 'm': return &MerchantRecord::default_instance();
    default: return nullptr;  // k/ O/ W/: index entries with empty values
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
    summary_.set_shadow(options_.shadow_only);
    RETURN_IF_ERROR(DeleteShadow(log_));  // leftovers of an interrupted run
    RETURN_IF_ERROR(Replay());
    const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
    RETURN_IF_ERROR(CompareAndSwap());
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
    ShadowReader shadow(log_);
    StateOverlay overlay(&shadow);
    uint64_t events = 0, since_flush = 0, records = 0;
    absl::Status status;
    RETURN_IF_ERROR(log_->Scan(
        0, [&](const v1::Envelope& envelope, absl::string_view) {
          status = EvolveEnvelope(envelope, &overlay);
          if (!status.ok()) {
            status = absl::Status(
                status.code(), absl::StrCat("rebuild at position ",
                                            envelope.position(), ": ",
                                            status.message()));
            return false;
          }
          ++events;
          if (++since_flush >= flush_every) {
            since_flush = 0;
            status = Flush(log_, &overlay, &records);
            if (!status.ok()) return false;
          }
          if (options_.progress && events % kProgressEveryEvents == 0) {
            options_.progress(events, total);
          }
          return true;
        }));
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(Flush(log_, &overlay, &records));
    if (options_.progress) options_.progress(events, total);
    summary_.set_events_replayed(events);
    summary_.set_records_rebuilt(records);
    return absl::OkStatus();
  }

  // Walks live and shadow keys of each record prefix side by side.
  absl::Status CompareAndSwap() {
    // Nothing but live prefixes may sit in the shadow space (Flush checks
    // what it writes; this checks what it finds).
    RETURN_IF_ERROR(log_->ScanProjections(
        kShadowPrefix, [&](absl::string_view key, absl::string_view) {
          if (!IsLiveProjectionKey(key.substr(kShadowPrefix.size()))) {
            stray_ = std::string(key);
            return false;
          }
          return true;
        }));
    if (!stray_.empty()) {
      return absl::InternalError(absl::StrCat(
          "rebuild: unexpected shadow key ", absl::CEscape(stray_)));
    }
    for (absl::string_view prefix : kLivePrefixes) {
      RETURN_IF_ERROR(ComparePrefix(prefix));
    }
    return WriteBatchNow(/*last=*/true);
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
          rebuilt->Valid()
              ? View(rebuilt->key()).substr(kShadowPrefix.size())
              : absl::string_view();
      const absl::string_view live_key =
          live->Valid() ? View(live->key()) : absl::string_view();
      if (!live->Valid() || (rebuilt->Valid() && rebuilt_key < live_key)) {
        RETURN_IF_ERROR(Differ(rebuilt_key, "missing from live", "",
                               View(rebuilt->value())));
        rebuilt->Next();
      } else if (!rebuilt->Valid() || live_key < rebuilt_key) {
        RETURN_IF_ERROR(Differ(live_key, "not derived from the log", "",
                               std::nullopt));
        live->Next();
      } else {
        if (View(live->value()) != View(rebuilt->value())) {
          RETURN_IF_ERROR(Differ(
              live_key, "value differs",
              DescribeDifference(live_key, View(rebuilt->value()),
                                 View(live->value())),
              View(rebuilt->value())));
        }
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
      difference.set_record(prototype == nullptr
                                ? "index"
                                : prototype->GetDescriptor()->name());
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
  std::string stray_;
};

}  // namespace

bool IsLiveProjectionKey(absl::string_view key) {
  for (absl::string_view prefix : kLivePrefixes) {
    if (absl::StartsWith(key, prefix)) return true;
  }
  return false;
}

absl::StatusOr<v1::RebuildSummary> Rebuild(EventLog* log,
                                           const RebuildOptions& options) {
  RebuildRun run(log, options);
  return run.Run();
}

}  // namespace storeledger
