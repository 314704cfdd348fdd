#include "storage/diverged.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"
#include "storage/format.h"
#include "storage/merkle.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

// "meta" keys (FORMAT.md "Diverged records"):
//   "diverged" %x00 record                      bytes(DivergedRecord)
//   "diverged" %x00 record "e" position         envelope, as stored
//   "diverged" %x00 record "o" command-id       bytes(StoredOutcome)
//   "diverged" %x00 record "k" tree-size        checkpoint note
constexpr absl::string_view kDivergedPrefix("diverged\0", 9);
constexpr size_t kRecordKeyBytes = 9 + 8;
constexpr char kCheckpointPrefix[] = "checkpoint";  // then %x00 u64be size
constexpr char kFormatVersionKey[] = "format_version";

std::string RecordKey(uint64_t record) {
  return absl::StrCat(kDivergedPrefix, PositionKey(record));
}

std::string ZeroHash() { return std::string(format::kHashBytes, '\0'); }

rocksdb::Slice Slice(absl::string_view bytes) {
  return rocksdb::Slice(bytes.data(), bytes.size());
}

std::string BigEndian32(uint32_t value) {
  std::string out(4, '\0');
  for (int i = 3; i >= 0; --i) {
    out[i] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> GetRaw(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
    const rocksdb::Snapshot* snapshot = nullptr) {
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db->Get(read, cf, Slice(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_IF_ERROR(FromRocks(s, "read for a diverged tail"));
  return std::optional<std::string>(std::move(value));
}

// Calls fn(key, value) for each key of `cf` under `prefix`, in key order.
absl::Status ScanPrefix(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, absl::string_view prefix,
    const rocksdb::Snapshot* snapshot,
    const std::function<void(absl::string_view, absl::string_view)>& fn) {
  rocksdb::ReadOptions read;
  read.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read, cf));
  for (it->Seek(Slice(prefix));
       it->Valid() && it->key().starts_with(Slice(prefix)); it->Next()) {
    fn(View(it->key()), View(it->value()));
  }
  return FromRocks(it->status(), "scan for a diverged tail");
}

}  // namespace

absl::StatusOr<v1::DivergedRecord> MoveTailAside(EventLog* log, uint64_t keep,
                                                 absl::string_view reason,
                                                 absl::Time now) {
  const Head head = log->head();
  if (keep >= head.position) {
    return absl::InvalidArgumentError(
        absl::StrCat("no tail to move aside: the head is at ", head.position,
                     ", keeping up to ", keep));
  }
  // The derived families themselves are read and repaired below: what a
  // log writing behind holds in memory goes to them first.
  RETURN_IF_ERROR(log->WriteBehindNow());
  rocksdb::DB* db = log->db();
  std::string keep_hash = ZeroHash();
  if (keep > 0) {
    ASSIGN_OR_RETURN(Envelope kept, log->Read(keep));
    keep_hash = kept.hash();
  }
  ASSIGN_OR_RETURN(std::vector<v1::DivergedRecord> earlier,
                   ReadDivergedRecords(*log));
  v1::DivergedRecord record;
  record.set_record(earlier.empty() ? 1 : earlier.back().record() + 1);
  record.set_first_position(keep + 1);
  record.set_last_position(head.position);
  record.set_last_hash(ToHex(head.hash));
  const int64_t micros = absl::ToUnixMicros(now);
  record.mutable_moved_at()->set_seconds(micros / 1'000'000);
  record.mutable_moved_at()->set_nanos(
      static_cast<int32_t>(micros % 1'000'000) * 1000);
  record.set_reason(std::string(reason));
  const std::string prefix = RecordKey(record.record());

  rocksdb::WriteBatch batch;
  absl::Status written = absl::OkStatus();
  auto put = [&](rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                 absl::string_view value) {
    if (written.ok()) {
      written = FromRocks(batch.Put(cf, Slice(key), Slice(value)),
                          "move a tail aside");
    }
  };
  auto erase = [&](rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
    if (written.ok()) {
      written = FromRocks(batch.Delete(cf, Slice(key)), "move a tail aside");
    }
  };

  // The envelopes, their stream index entries, and what they name.
  std::map<std::string, uint64_t> first_version;  // stream -> its first in tail
  std::set<std::string> commands;
  RETURN_IF_ERROR(log->Scan(keep, [&](const Envelope& envelope,
                                      absl::string_view raw) {
    const uint64_t position = envelope.position();
    put(log->meta_cf(), absl::StrCat(prefix, "e", PositionKey(position)), raw);
    erase(log->events_cf(), PositionKey(position));
    erase(log->streams_cf(), format::StreamIndexKey(envelope.stream_id(),
                                                    envelope.stream_version()));
    auto [it, inserted] =
        first_version.emplace(envelope.stream_id(), envelope.stream_version());
    if (!inserted) it->second = std::min(it->second, envelope.stream_version());
    if (!envelope.command_id().empty()) commands.insert(envelope.command_id());
    return envelope.position() < head.position;
  }));

  // Stream heads step back to the version before the tail.
  for (const auto& [stream, version] : first_version) {
    if (version <= 1) {
      erase(log->streams_cf(), stream);
      continue;
    }
    ASSIGN_OR_RETURN(std::optional<std::string> index,
                     GetRaw(db, log->streams_cf(),
                            format::StreamIndexKey(stream, version - 1)));
    if (!index.has_value() || index->size() != format::kPositionBytes) {
      return absl::DataLossError(absl::StrCat(
          "stream ", stream, " has no index entry for version ", version - 1));
    }
    ASSIGN_OR_RETURN(Envelope before, log->Read(DecodeBigEndian64(*index)));
    StreamHead stream_head;
    stream_head.set_version(version - 1);
    *stream_head.mutable_last_occurred_at() = before.occurred_at();
    put(log->streams_cf(), stream, SerializeDeterministic(stream_head));
  }

  // The tail's command outcomes go with it.
  for (const std::string& command : commands) {
    ASSIGN_OR_RETURN(std::optional<StoredOutcome> outcome,
                     log->GetOutcome(command, EventLog::ReadView::kAppended));
    if (!outcome.has_value()) continue;
    if (outcome->result().first_position() <= keep) {
      return absl::FailedPreconditionError(absl::StrCat(
          "command ", command, " has events on both sides of position ", keep,
          " (", outcome->result().first_position(), "..",
          outcome->result().last_position(), "); a tail is whole commands"));
    }
    put(log->meta_cf(), absl::StrCat(prefix, "o", command),
        SerializeDeterministic(*outcome));
    erase(log->commands_cf(), command);
    record.set_outcomes(record.outcomes() + 1);
  }

  // Merkle nodes over any leaf past keep: at each level, index >= keep >> l.
  {
    std::unique_ptr<rocksdb::Iterator> it(
        db->NewIterator(rocksdb::ReadOptions(), log->merkle_cf()));
    for (int level = 0; level < 64; ++level) {
      const std::string from =
          merkle::NodeKey(merkle::NodeId{level, keep >> level});
      for (it->Seek(from); it->Valid(); it->Next()) {
        ASSIGN_OR_RETURN(merkle::NodeId id,
                         merkle::ParseNodeKey(View(it->key())));
        if (id.level != level) break;
        erase(log->merkle_cf(), View(it->key()));
      }
      RETURN_IF_ERROR(FromRocks(it->status(), "scan merkle nodes"));
    }
  }

  // Checkpoints over a tree past keep.
  std::string checkpoints_prefix(kCheckpointPrefix);
  checkpoints_prefix.push_back('\0');
  RETURN_IF_ERROR(ScanPrefix(
      db, log->meta_cf(), checkpoints_prefix, nullptr,
      [&](absl::string_view key, absl::string_view note) {
        if (key.size() != checkpoints_prefix.size() + 8) return;
        const uint64_t size =
            DecodeBigEndian64(key.substr(checkpoints_prefix.size()));
        if (size <= keep) return;
        put(log->meta_cf(), absl::StrCat(prefix, "k", PositionKey(size)), note);
        erase(log->meta_cf(), key);
        record.set_checkpoints(record.checkpoints() + 1);
      }));

  // Snapshots are a cache; those of a version in the tail would be wrong.
  for (absl::string_view cache : {"snap/", "snapmeta/"}) {
    RETURN_IF_ERROR(ScanPrefix(db, log->projections_cf(), cache, nullptr,
                               [&](absl::string_view key, absl::string_view) {
                                 erase(log->projections_cf(), key);
                               }));
  }

  // The derived families now end at `keep` with the log, as in a log that
  // never wrote behind; the next open that writes behind marks them again.
  erase(log->meta_cf(), format::kMetaDerivedKey);
  put(log->meta_cf(), format::kMetaHeadKey,
      absl::StrCat(PositionKey(keep), keep_hash));
  put(log->meta_cf(), kFormatVersionKey, BigEndian32(kFormatVersionDiverged));
  put(log->meta_cf(), prefix, SerializeDeterministic(record));
  RETURN_IF_ERROR(written);
  rocksdb::WriteOptions options;
  options.sync = true;
  RETURN_IF_ERROR(FromRocks(db->Write(options, &batch), "move a tail aside"));
  return record;
}

absl::StatusOr<std::vector<v1::DivergedRecord>> ReadDivergedRecords(
    const EventLog& log, const rocksdb::Snapshot* snapshot) {
  std::vector<v1::DivergedRecord> records;
  absl::Status parsed = absl::OkStatus();
  RETURN_IF_ERROR(
      ScanPrefix(log.db(), log.meta_cf(), kDivergedPrefix, snapshot,
                 [&](absl::string_view key, absl::string_view value) {
                   if (key.size() != kRecordKeyBytes || !parsed.ok()) return;
                   if (!records.emplace_back().ParseFromArray(
                           value.data(), static_cast<int>(value.size()))) {
                     parsed = absl::DataLossError(absl::StrCat(
                         "diverged record ", DecodeBigEndian64(key.substr(9)),
                         " does not parse"));
                   }
                 }));
  RETURN_IF_ERROR(parsed);
  return records;
}

absl::Status ScanDivergedEnvelopes(
    const EventLog& log, uint64_t record, const rocksdb::Snapshot* snapshot,
    const std::function<void(uint64_t position, absl::string_view raw)>& fn) {
  const std::string prefix = absl::StrCat(RecordKey(record), "e");
  return ScanPrefix(log.db(), log.meta_cf(), prefix, snapshot,
                    [&](absl::string_view key, absl::string_view raw) {
                      if (key.size() != prefix.size() + 8) return;
                      fn(DecodeBigEndian64(key.substr(prefix.size())), raw);
                    });
}

}  // namespace storeledger
