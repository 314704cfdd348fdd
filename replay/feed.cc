// The downstream feed's follower (replay/feed.h).
//
// A read-only RocksDB sees the database as of its open and replays the whole
// unflushed WAL to get there (about a second for the 28 MB WAL `./run`
// leaves), so re-opening on every poll costs more the busier the writer is.
// The follower instead keeps one RocksDB *secondary* instance open and calls
// TryCatchUpWithPrimary on each poll, which reads only what the writer added
// since the last one.

#include "replay/feed.h"

#include <stdlib.h>

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/limits.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "storage/event_log.h"
#include "storage/format.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

constexpr char kEventsCf[] = "events";  // storage/FORMAT.md

}  // namespace

absl::StatusOr<std::unique_ptr<LogFollower>> LogFollower::Open(
    const std::string& dir, uint64_t after_position,
    const std::string& scratch_parent) {
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT")) {
    return absl::NotFoundError(absl::StrCat("no ledger database at ", dir));
  }
  std::unique_ptr<LogFollower> follower(new LogFollower());
  std::string pattern =
      (scratch_parent.empty() ? std::filesystem::temp_directory_path()
                              : std::filesystem::path(scratch_parent)) /
      "storeledger-follow-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot create a scratch directory like ", pattern));
  }
  follower->scratch_dir_ = pattern;

  rocksdb::Options options;
  options.create_if_missing = false;
  options.max_open_files = -1;  // required of a secondary instance
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kEventsCf, rocksdb::ColumnFamilyOptions()},
  };
  rocksdb::DB* raw_db = nullptr;
  RETURN_IF_ERROR(FromRocks(
      rocksdb::DB::OpenAsSecondary(options, dir, follower->scratch_dir_,
                                   descriptors, &follower->handles_, &raw_db),
      absl::StrCat("follow database ", dir)));
  follower->db_.reset(raw_db);
  follower->last_position_ = after_position;
  return follower;
}

LogFollower::~LogFollower() {
  if (db_ != nullptr) {
    for (rocksdb::ColumnFamilyHandle* handle : handles_) {
      db_->DestroyColumnFamilyHandle(handle).PermitUncheckedError();
    }
    db_->Close().PermitUncheckedError();
    db_.reset();
  }
  if (!scratch_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(scratch_dir_, ignored);
  }
}

// The hash the next envelope must link to: the zero hash before position
// 1, else the (verified) hash of the starting envelope once it exists.
absl::Status LogFollower::LoadStartHash() {
  if (last_position_ == 0) {
    last_hash_ = std::string(format::kHashBytes, '\0');
    return absl::OkStatus();
  }
  std::string raw;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), handles_[1],
                               PositionKey(last_position_), &raw);
  if (s.IsNotFound()) return absl::OkStatus();  // not written yet
  RETURN_IF_ERROR(FromRocks(s, "follow: read the starting event"));
  ASSIGN_OR_RETURN(v1::Envelope start,
                   VerifyStoredEnvelope(last_position_, raw));
  last_hash_ = start.hash();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> LogFollower::Poll(
    const std::function<bool(const v1::Envelope&, absl::string_view raw)>& fn) {
  RETURN_IF_ERROR(FromRocks(db_->TryCatchUpWithPrimary(),
                            "follow: catch up with the writer"));
  if (last_hash_.empty()) {
    RETURN_IF_ERROR(LoadStartHash());
    if (last_hash_.empty()) return 0;
  }
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), handles_[1]));
  uint64_t delivered = 0;
  for (it->Seek(PositionKey(last_position_ + 1)); it->Valid(); it->Next()) {
    const absl::string_view key = View(it->key());
    const uint64_t expected = last_position_ + 1;
    if (key.size() != format::kPositionBytes ||
        DecodeBigEndian64(key) != expected) {
      // One append is one WriteBatch, applied whole by the catch-up, so a
      // gap is damage, not a half-seen append.
      return absl::DataLossError(absl::StrCat(
          "event at position ", expected, " is missing (next stored key is ",
          key.size() == format::kPositionBytes
              ? absl::StrCat(DecodeBigEndian64(key))
              : "malformed",
          ")"));
    }
    const absl::string_view raw = View(it->value());
    ASSIGN_OR_RETURN(v1::Envelope envelope,
                     VerifyStoredEnvelope(expected, raw));
    if (envelope.prev_hash() != last_hash_) {
      return absl::DataLossError(absl::StrCat(
          "event at position ", expected, ": prev_hash ",
          ToHex(envelope.prev_hash()), " does not link to the hash ",
          ToHex(last_hash_), " of position ", last_position_));
    }
    if (!fn(envelope, raw)) break;
    last_position_ = expected;
    last_hash_ = envelope.hash();
    ++delivered;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "follow: scan events"));
  return delivered;
}

}  // namespace storeledger
