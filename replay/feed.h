// The downstream feed's follower: reads the event log of a database that
// another process is writing, as it grows, for `tail --follow`.
//
// Every envelope is checked as EventLog::Scan checks it (storage/FORMAT.md:
// the next position, the hash, the link to the previous envelope), so the
// feed has no gap, no duplicate and no altered event; kDataLoss otherwise.
// Not thread-safe.
#ifndef STORELEDGER_REPLAY_FEED_H_
#define STORELEDGER_REPLAY_FEED_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace storeledger {

class LogFollower {
 public:
  // Follows the log in `dir` from the event after `after_position`. The
  // secondary instance keeps its own small files in a scratch directory
  // under `scratch_parent` (default: the system temp directory), removed
  // when the follower is destroyed.
  static absl::StatusOr<std::unique_ptr<LogFollower>> Open(
      const std::string& dir, uint64_t after_position,
      const std::string& scratch_parent = "");
  ~LogFollower();
  LogFollower(const LogFollower&) = delete;
  LogFollower& operator=(const LogFollower&) = delete;

  // Catches up with the writer, then calls `fn` for each envelope after the
  // last one delivered, in position order, until `fn` returns false (that
  // envelope counts as not delivered: the next Poll offers it again) or the
  // log as the writer left it is exhausted. Returns how many were delivered.
  absl::StatusOr<uint64_t> Poll(
      const std::function<bool(const v1::Envelope&, absl::string_view raw)>&
          fn);

  // Position of the last envelope delivered (or the starting position).
  uint64_t last_position() const { return last_position_; }

 private:
  LogFollower() = default;
  absl::Status LoadStartHash();

  std::string scratch_dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  uint64_t last_position_ = 0;
  std::string last_hash_;  // empty until the start is known
};

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_FEED_H_
