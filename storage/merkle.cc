#include "storage/merkle.h"

#include <bit>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/hash_internal.h"

namespace storeledger::merkle {
namespace {

using storage_internal::Sha256Concat;

constexpr char kLeafPrefix[] = {'\x00'};
constexpr char kNodePrefix = '\x01';

// The largest power of 2 strictly below n (n >= 2).
uint64_t SplitPoint(uint64_t n) { return std::bit_floor(n - 1); }

bool IsPerfectAt(uint64_t begin, uint64_t count) {
  return std::has_single_bit(count) && begin % count == 0;
}

// MTH of leaves [begin, end), begin aligned as RFC 9162's recursion leaves
// it: a stored node when the range is a perfect subtree, else two halves.
absl::StatusOr<std::string> RangeHash(uint64_t begin, uint64_t end,
                                      const NodeReader& read) {
  const uint64_t count = end - begin;
  if (IsPerfectAt(begin, count)) {
    const int level = std::countr_zero(count);
    ASSIGN_OR_RETURN(std::string hash, read(NodeId{level, begin >> level}));
    if (hash.size() != kHashBytes) {
      return absl::DataLossError(
          absl::StrCat("merkle node (", level, ", ", begin >> level, ") has ",
                       hash.size(), " bytes, expected ", kHashBytes));
    }
    return hash;
  }
  const uint64_t k = SplitPoint(count);
  ASSIGN_OR_RETURN(std::string left, RangeHash(begin, begin + k, read));
  ASSIGN_OR_RETURN(std::string right, RangeHash(begin + k, end, read));
  return NodeHash(left, right);
}

// PATH(index, D[begin:end]), appended to *proof leaf-side first.
absl::Status Path(uint64_t index, uint64_t begin, uint64_t end,
                  const NodeReader& read, std::vector<std::string>* proof) {
  const uint64_t count = end - begin;
  if (count == 1) return absl::OkStatus();
  const uint64_t k = SplitPoint(count);
  if (index - begin < k) {
    RETURN_IF_ERROR(Path(index, begin, begin + k, read, proof));
    ASSIGN_OR_RETURN(std::string sibling, RangeHash(begin + k, end, read));
    proof->push_back(std::move(sibling));
  } else {
    RETURN_IF_ERROR(Path(index, begin + k, end, read, proof));
    ASSIGN_OR_RETURN(std::string sibling, RangeHash(begin, begin + k, read));
    proof->push_back(std::move(sibling));
  }
  return absl::OkStatus();
}

// SUBPROOF(m, D[begin:end], first).
absl::Status SubProof(uint64_t m, uint64_t begin, uint64_t end, bool first,
                      const NodeReader& read, std::vector<std::string>* proof) {
  const uint64_t count = end - begin;
  if (m == count) {
    if (first) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::string hash, RangeHash(begin, end, read));
    proof->push_back(std::move(hash));
    return absl::OkStatus();
  }
  const uint64_t k = SplitPoint(count);
  if (m <= k) {
    RETURN_IF_ERROR(SubProof(m, begin, begin + k, first, read, proof));
    ASSIGN_OR_RETURN(std::string right, RangeHash(begin + k, end, read));
    proof->push_back(std::move(right));
  } else {
    RETURN_IF_ERROR(SubProof(m - k, begin + k, end, false, read, proof));
    ASSIGN_OR_RETURN(std::string left, RangeHash(begin, begin + k, read));
    proof->push_back(std::move(left));
  }
  return absl::OkStatus();
}

// Right-shifts fn and sn together until fn's low bit is set or fn is 0.
void ShiftWhileEven(uint64_t& fn, uint64_t& sn) {
  while (fn != 0 && (fn & 1) == 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

absl::Status CheckHashSize(absl::string_view what, absl::string_view hash) {
  if (hash.size() != kHashBytes) {
    return absl::DataLossError(absl::StrCat(what, " has ", hash.size(),
                                            " bytes, expected ", kHashBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckProofHashes(const std::vector<std::string>& proof) {
  for (size_t i = 0; i < proof.size(); ++i) {
    RETURN_IF_ERROR(CheckHashSize(absl::StrCat("proof hash ", i), proof[i]));
  }
  return absl::OkStatus();
}

}  // namespace

std::string LeafHash(absl::string_view leaf) {
  return Sha256Concat(absl::string_view(kLeafPrefix, 1), leaf);
}

std::string NodeHash(absl::string_view left, absl::string_view right) {
  std::string both;
  both.reserve(1 + left.size() + right.size());
  both.push_back(kNodePrefix);
  both.append(left.data(), left.size());
  both.append(right.data(), right.size());
  return Sha256Concat(both, absl::string_view());
}

std::string EmptyRootHash() {
  return Sha256Concat(absl::string_view(), absl::string_view());
}

std::string NodeKey(NodeId id) {
  std::string key(kNodeKeyBytes, '\0');
  key[0] = static_cast<char>(id.level);
  uint64_t index = id.index;
  for (int i = 8; i >= 1; --i) {
    key[i] = static_cast<char>(index & 0xff);
    index >>= 8;
  }
  return key;
}

absl::StatusOr<NodeId> ParseNodeKey(absl::string_view key) {
  if (key.size() != kNodeKeyBytes) {
    return absl::DataLossError(absl::StrCat(
        "merkle key has ", key.size(), " bytes, expected ", kNodeKeyBytes));
  }
  NodeId id;
  id.level = static_cast<unsigned char>(key[0]);
  if (id.level >= kLevelsMax) {
    return absl::DataLossError(absl::StrCat("merkle key has level ", id.level,
                                            ", above ", kLevelsMax - 1));
  }
  for (size_t i = 1; i < kNodeKeyBytes; ++i) {
    id.index = (id.index << 8) | static_cast<unsigned char>(key[i]);
  }
  return id;
}

std::vector<NodeId> RightEdge(uint64_t size) {
  std::vector<NodeId> edge;
  uint64_t begin = 0;
  for (int level = kLevelsMax - 1; level >= 0; --level) {
    const uint64_t width = uint64_t{1} << level;
    if ((size & width) == 0) continue;
    edge.push_back(NodeId{level, begin >> level});
    begin += width;
  }
  return edge;
}

absl::StatusOr<CompactRange> CompactRange::FromHashes(
    uint64_t size, std::vector<std::string> hashes) {
  const size_t expected = static_cast<size_t>(std::popcount(size));
  if (hashes.size() != expected) {
    return absl::DataLossError(absl::StrCat("a tree of ", size, " leaves has ",
                                            expected, " right-edge nodes, got ",
                                            hashes.size()));
  }
  for (const std::string& hash : hashes) {
    RETURN_IF_ERROR(CheckHashSize("right-edge node", hash));
  }
  CompactRange range;
  range.size_ = size;
  range.hashes_ = std::move(hashes);
  return range;
}

void CompactRange::Append(std::string leaf_hash, const NodeSink& sink) {
  const uint64_t index = size_;
  if (sink) sink(NodeId{0, index}, leaf_hash);
  std::string hash = std::move(leaf_hash);
  // Each trailing one bit of the old size is a perfect subtree of the same
  // height as the one being carried: merge them, as in binary addition.
  int level = 0;
  for (uint64_t carry = index; (carry & 1) != 0; carry >>= 1) {
    hash = NodeHash(hashes_.back(), hash);
    hashes_.pop_back();
    ++level;
    if (sink) sink(NodeId{level, index >> level}, hash);
  }
  hashes_.push_back(std::move(hash));
  ++size_;
}

std::string CompactRange::Root() const {
  if (hashes_.empty()) return EmptyRootHash();
  std::string root = hashes_.back();
  for (size_t i = hashes_.size() - 1; i-- > 0;) {
    root = NodeHash(hashes_[i], root);
  }
  return root;
}

absl::StatusOr<std::string> RootHash(uint64_t size, const NodeReader& read) {
  if (size == 0) return EmptyRootHash();
  return RangeHash(0, size, read);
}

absl::StatusOr<std::vector<std::string>> InclusionProof(
    uint64_t index, uint64_t size, const NodeReader& read) {
  if (index >= size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "leaf index ", index, " is not in a tree of ", size, " leaves"));
  }
  std::vector<std::string> proof;
  RETURN_IF_ERROR(Path(index, 0, size, read, &proof));
  return proof;
}

absl::StatusOr<std::vector<std::string>> ConsistencyProof(
    uint64_t size1, uint64_t size2, const NodeReader& read) {
  if (size1 == 0 || size1 > size2) {
    return absl::InvalidArgumentError(
        absl::StrCat("a consistency proof needs 0 < first size <= second size, "
                     "got ",
                     size1, " and ", size2));
  }
  std::vector<std::string> proof;
  if (size1 == size2) return proof;
  RETURN_IF_ERROR(SubProof(size1, 0, size2, true, read, &proof));
  return proof;
}

absl::Status VerifyInclusion(uint64_t index, uint64_t size,
                             absl::string_view leaf_hash,
                             const std::vector<std::string>& proof,
                             absl::string_view root) {
  if (index >= size) {
    return absl::DataLossError(absl::StrCat(
        "leaf index ", index, " is not in a tree of ", size, " leaves"));
  }
  RETURN_IF_ERROR(CheckHashSize("leaf hash", leaf_hash));
  RETURN_IF_ERROR(CheckHashSize("root hash", root));
  RETURN_IF_ERROR(CheckProofHashes(proof));
  uint64_t fn = index;
  uint64_t sn = size - 1;
  std::string r(leaf_hash);
  for (const std::string& p : proof) {
    if (sn == 0) {
      return absl::DataLossError(
          "inclusion proof is longer than the tree is high");
    }
    if ((fn & 1) != 0 || fn == sn) {
      r = NodeHash(p, r);
      ShiftWhileEven(fn, sn);
    } else {
      r = NodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::DataLossError(
        "inclusion proof is shorter than the tree is high");
  }
  if (r != root) {
    return absl::DataLossError(
        "inclusion proof does not lead to the root hash: the leaf or the path "
        "differs from the tree that root was computed over");
  }
  return absl::OkStatus();
}

absl::Status VerifyConsistency(uint64_t size1, uint64_t size2,
                               absl::string_view root1, absl::string_view root2,
                               const std::vector<std::string>& proof) {
  if (size1 == 0 || size1 > size2) {
    return absl::DataLossError(
        absl::StrCat("a consistency proof needs 0 < first size <= second size, "
                     "got ",
                     size1, " and ", size2));
  }
  RETURN_IF_ERROR(CheckHashSize("first root hash", root1));
  RETURN_IF_ERROR(CheckHashSize("second root hash", root2));
  RETURN_IF_ERROR(CheckProofHashes(proof));
  if (size1 == size2) {
    if (!proof.empty()) {
      return absl::DataLossError(
          "consistency proof between equal sizes is not empty");
    }
    if (root1 != root2) {
      return absl::DataLossError("equal tree sizes with different root hashes");
    }
    return absl::OkStatus();
  }
  if (proof.empty()) return absl::DataLossError("consistency proof is empty");
  std::vector<std::string> path;
  if (std::has_single_bit(size1)) path.emplace_back(root1);
  path.insert(path.end(), proof.begin(), proof.end());
  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  std::string fr = path[0];
  std::string sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const std::string& c = path[i];
    if (sn == 0) {
      return absl::DataLossError("consistency proof is longer than it can be");
    }
    if ((fn & 1) != 0 || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      ShiftWhileEven(fn, sn);
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) {
    return absl::DataLossError("consistency proof is shorter than it must be");
  }
  if (fr != root1) {
    return absl::DataLossError(
        "consistency proof does not lead to the first root: the first tree is "
        "not a prefix of the second");
  }
  if (sr != root2) {
    return absl::DataLossError(
        "consistency proof does not lead to the second root: the second tree "
        "does not extend the first");
  }
  return absl::OkStatus();
}

}  // namespace storeledger::merkle
