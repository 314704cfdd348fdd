// The Merkle tree over the log (RFC 9162 §2.1; storage/FORMAT.md "The
// Merkle tree"): leaf and node hashes, the stored node keys, the compact
// range the appending side keeps, and inclusion and consistency proofs and
// their verification. Pure: nodes come in through a NodeReader, so the same
// code proves from RocksDB, from memory (tests) or from a verifier's inputs.
// Thread-compatible: a CompactRange is owned by one writer at a time.
#ifndef STORELEDGER_STORAGE_MERKLE_H_
#define STORELEDGER_STORAGE_MERKLE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace storeledger::merkle {

inline constexpr size_t kHashBytes = 32;
// Levels a tree of up to 2^64 - 1 leaves has (level 0 = leaves).
inline constexpr int kLevelsMax = 64;
// Key of a node: one level byte, then the index big-endian.
inline constexpr size_t kNodeKeyBytes = 9;

// SHA-256(0x00 || leaf): the hash of one leaf (a stored envelope's bytes).
std::string LeafHash(absl::string_view leaf);
// SHA-256(0x01 || left || right).
std::string NodeHash(absl::string_view left, absl::string_view right);
// SHA-256 of nothing: the root of the empty tree.
std::string EmptyRootHash();

struct NodeId {
  int level = 0;       // 0 = leaf
  uint64_t index = 0;  // covers leaves [index << level, (index + 1) << level)
  bool operator==(const NodeId&) const = default;
};

std::string NodeKey(NodeId id);
// kDataLoss unless `key` is kNodeKeyBytes long with a level below kLevelsMax.
absl::StatusOr<NodeId> ParseNodeKey(absl::string_view key);

// The perfect subtrees whose concatenation is the tree of `size` leaves,
// left to right (largest first): one per set bit of `size`.
std::vector<NodeId> RightEdge(uint64_t size);

// Called with every node an append completes, the leaf first.
using NodeSink = std::function<void(NodeId id, const std::string& hash)>;

// The right edge of a tree (its RightEdge nodes' hashes): enough to append
// leaves and to compute the root. Copyable (the log keeps one, and a copy
// per group being written).
class CompactRange {
 public:
  CompactRange() = default;  // the empty tree
  // From the hashes of RightEdge(size), in that order. kDataLoss when the
  // count or a hash's length is wrong.
  static absl::StatusOr<CompactRange> FromHashes(
      uint64_t size, std::vector<std::string> hashes);

  uint64_t size() const { return size_; }
  const std::vector<std::string>& hashes() const { return hashes_; }
  // Appends one leaf (by its LeafHash); `sink` gets the leaf and each node
  // it completes (1 + the number of trailing one bits of the old size).
  void Append(std::string leaf_hash, const NodeSink& sink);
  // MTH of the tree so far.
  std::string Root() const;

 private:
  uint64_t size_ = 0;
  std::vector<std::string> hashes_;  // of RightEdge(size_)
};

// Reads a stored node; kNotFound or kDataLoss when it is missing or bad.
using NodeReader = std::function<absl::StatusOr<std::string>(NodeId id)>;

// MTH of the first `size` leaves.
absl::StatusOr<std::string> RootHash(uint64_t size, const NodeReader& read);
// RFC 9162 PATH(index, D[size]). kInvalidArgument unless index < size.
absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                        uint64_t size,
                                                        const NodeReader& read);
// RFC 9162 PROOF(size1, D[size2]); empty when size1 == size2.
// kInvalidArgument unless 0 < size1 <= size2.
absl::StatusOr<std::vector<std::string>> ConsistencyProof(
    uint64_t size1, uint64_t size2, const NodeReader& read);

// RFC 9162 §2.1.3.2. Ok, or kDataLoss saying why the proof fails.
absl::Status VerifyInclusion(uint64_t index, uint64_t size,
                             absl::string_view leaf_hash,
                             const std::vector<std::string>& proof,
                             absl::string_view root);
// RFC 9162 §2.1.4.2. Ok, or kDataLoss saying why the proof fails.
absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               absl::string_view root1, absl::string_view root2,
                               const std::vector<std::string>& proof);

}  // namespace storeledger::merkle

#endif  // STORELEDGER_STORAGE_MERKLE_H_
