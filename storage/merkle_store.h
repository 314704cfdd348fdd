// The Merkle tree of an EventLog on disk (storage/FORMAT.md "The Merkle
// tree"): loading and completing it at open, proofs read from its stored
// nodes (and the lowest levels hashed from the envelopes), the audit's
// recomputation, the rebuild, and the stored signed checkpoints. The tree
// math is storage/merkle.h; the appends write the nodes MerkleNodeStored
// names themselves (EventLog, in the same WriteBatch as the events).
//
// Proofs are over durable tree sizes only (at most EventLog::head()), whose
// nodes never change. Every function is safe beside appends.
#ifndef STORELEDGER_STORAGE_MERKLE_STORE_H_
#define STORELEDGER_STORAGE_MERKLE_STORE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "storage/checkpoint.h"
#include "storage/event_log.h"
#include "storage/merkle.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace storeledger {

// The lowest level stored: the nodes below it (leaves included) are not
// written; a proof that needs one hashes the 2^kMerkleStoredLevelMin
// envelopes of its aligned block on demand. Per event an append puts
// 1/2^(kMerkleStoredLevelMin - 1) nodes on average instead of 2 (memtable
// inserts were most of the tree's cost, docs/performance.md).
inline constexpr int kMerkleStoredLevelMin = 4;
// Whether the node is stored in "merkle" (FORMAT.md "The Merkle tree").
inline bool MerkleNodeStored(merkle::NodeId id) {
  return id.level >= kMerkleStoredLevelMin;
}

// Leaves written per WriteBatch when the tree is built from the log (at
// open, by the rebuild).
inline constexpr uint64_t kMerkleBackfillLeaves = 10'000;
// Problems the tree check names; the rest are counted.
inline constexpr size_t kMerkleProblemsMax = 100;

// For EventLog::Open: the right edge of the tree of `head` leaves. When the
// tree does not reach `head` (an older database, or written with the tree
// off), builds the missing leaves and nodes from the "events" column family
// first, unless `read_only` (then returns the empty range; proofs refuse).
absl::StatusOr<merkle::CompactRange> LoadMerkleTree(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
    rocksdb::ColumnFamilyHandle* nodes, uint64_t head, bool read_only);

// Reads nodes of `log`: a stored one, or one below kMerkleStoredLevelMin
// hashed from its envelopes (a block of them read once per reader).
// kDataLoss when one is missing or not 32 bytes. The reader is for one
// proof at a time (not thread-safe).
merkle::NodeReader MerkleNodeReader(const EventLog& log);

// The largest tree size proofs may use: the durable head, when the tree
// reaches it; kFailedPrecondition when it does not (a read-only open of a
// database whose tree was never built).
absl::StatusOr<uint64_t> MerkleTreeSize(const EventLog& log);
// MTH of the first `tree_size` events. kInvalidArgument past the head.
absl::StatusOr<std::string> MerkleRoot(const EventLog& log, uint64_t tree_size);

struct InclusionProof {
  uint64_t position = 0;   // the event (leaf index = position - 1)
  uint64_t tree_size = 0;  // proven against the tree of so many events
  std::string envelope;    // the stored bytes, as hashed into the leaf
  std::string root;        // MTH(tree_size)
  std::vector<std::string> path;
};
// Proof that the event at `position` is in the tree of `tree_size` events.
// kInvalidArgument unless 1 <= position <= tree_size <= the durable head.
absl::StatusOr<InclusionProof> ProveInclusion(const EventLog& log,
                                              uint64_t position,
                                              uint64_t tree_size);

struct ConsistencyProof {
  uint64_t first_size = 0;
  uint64_t second_size = 0;
  std::string first_root;
  std::string second_root;
  std::vector<std::string> path;
};
// Proof that the tree of `second_size` events extends the tree of
// `first_size`. kInvalidArgument unless 1 <= first <= second <= the head.
absl::StatusOr<ConsistencyProof> ProveConsistency(const EventLog& log,
                                                  uint64_t first_size,
                                                  uint64_t second_size);

struct MerkleCheck {
  uint64_t leaves_checked = 0;
  uint64_t nodes_checked = 0;
  uint64_t problems_total = 0;
  std::vector<std::string> problems;  // the first kMerkleProblemsMax
};
// Recomputes the tree from the stored envelopes up to the durable head and
// compares every stored node: a differing, missing or extra node is a
// problem. Does not check the envelopes themselves (the audit's chain pass
// does). An error status only when the check could not run (I/O).
absl::StatusOr<MerkleCheck> CheckMerkleTree(const EventLog& log);
// Deletes every stored node and writes the tree again from the log (synced).
// Needs appends to be quiet (the CLI's rebuild holds the database).
absl::Status RebuildMerkleTree(EventLog& log);

// Signed checkpoints (storage/checkpoint.h makes them), in "meta".
absl::Status PutCheckpoint(EventLog& log, uint64_t tree_size,
                           absl::string_view note);
// Signs (origin = the key's name) the tree of the durable head at
// `unix_seconds` with `key`, stores the note under its tree size (replacing
// one stored for that size) and returns it. `storeledger checkpoint` and
// storeledgerd's signer.
absl::StatusOr<v1::SignedCheckpoint> WriteCheckpoint(EventLog& log,
                                                     const SigningKey& key,
                                                     int64_t unix_seconds);
// The stored checkpoint of the largest tree size, if any.
absl::StatusOr<std::optional<v1::SignedCheckpoint>> LatestCheckpoint(
    const EventLog& log);
absl::StatusOr<std::optional<v1::SignedCheckpoint>> GetCheckpoint(
    const EventLog& log, uint64_t tree_size);

// The proofs as sent to an auditor (`storeledger prove`, GetInclusionProof,
// GetConsistencyProof), with the stored checkpoints of their tree sizes. A
// tree size of 0 means the latest checkpoint's (the head's when none is
// stored).
absl::StatusOr<v1::InclusionProof> InclusionProofMessage(const EventLog& log,
                                                         uint64_t position,
                                                         uint64_t tree_size);
absl::StatusOr<v1::ConsistencyProof> ConsistencyProofMessage(
    const EventLog& log, uint64_t first_size, uint64_t second_size);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_MERKLE_STORE_H_
