// storage/merkle.h against a plain recursive RFC 9162 §2.1 definition
// written here, over the same leaves: roots, stored nodes, inclusion and
// consistency proofs for every size and pair up to 64, and their checks.
#include "storage/merkle.h"

#include <openssl/sha.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace storeledger::merkle {
namespace {

constexpr uint64_t kSizesMax = 64;

// ---- The reference: RFC 9162 §2.1.1-2.1.4 read literally, over leaf data.

std::string RefSha256(const std::string& bytes) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
         out);
  return std::string(reinterpret_cast<char*>(out), sizeof(out));
}

using Leaves = std::vector<std::string>;

Leaves Slice(const Leaves& d, uint64_t begin, uint64_t end) {
  return Leaves(d.begin() + begin, d.begin() + end);
}

uint64_t RefSplit(uint64_t n) {
  uint64_t k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

std::string RefMth(const Leaves& d) {
  if (d.empty()) return RefSha256("");
  if (d.size() == 1) return RefSha256(std::string(1, '\x00') + d[0]);
  const uint64_t k = RefSplit(d.size());
  return RefSha256(std::string(1, '\x01') + RefMth(Slice(d, 0, k)) +
                   RefMth(Slice(d, k, d.size())));
}

std::vector<std::string> RefPath(uint64_t m, const Leaves& d) {
  if (d.size() == 1) return {};
  const uint64_t k = RefSplit(d.size());
  std::vector<std::string> path;
  if (m < k) {
    path = RefPath(m, Slice(d, 0, k));
    path.push_back(RefMth(Slice(d, k, d.size())));
  } else {
    path = RefPath(m - k, Slice(d, k, d.size()));
    path.push_back(RefMth(Slice(d, 0, k)));
  }
  return path;
}

std::vector<std::string> RefSubProof(uint64_t m, const Leaves& d, bool b) {
  const uint64_t n = d.size();
  if (m == n) {
    if (b) return {};
    return {RefMth(d)};
  }
  const uint64_t k = RefSplit(n);
  std::vector<std::string> proof;
  if (m <= k) {
    proof = RefSubProof(m, Slice(d, 0, k), b);
    proof.push_back(RefMth(Slice(d, k, n)));
  } else {
    proof = RefSubProof(m - k, Slice(d, k, n), false);
    proof.push_back(RefMth(Slice(d, 0, k)));
  }
  return proof;
}

// ---- The code under test, fed from a map of the nodes it emitted.

Leaves MakeLeaves(uint64_t n) {
  Leaves leaves;
  for (uint64_t i = 0; i < n; ++i) leaves.push_back(absl::StrCat("event-", i));
  return leaves;
}

struct Tree {
  CompactRange range;
  std::map<std::pair<int, uint64_t>, std::string> nodes;

  void Append(const std::string& leaf) {
    range.Append(LeafHash(leaf), [&](NodeId id, const std::string& hash) {
      const bool inserted =
          nodes.emplace(std::make_pair(id.level, id.index), hash).second;
      EXPECT_TRUE(inserted)
          << "node (" << id.level << ", " << id.index << ") emitted twice";
    });
  }
  NodeReader Reader() const {
    return [this](NodeId id) -> absl::StatusOr<std::string> {
      auto it = nodes.find({id.level, id.index});
      if (it == nodes.end()) {
        return absl::NotFoundError(
            absl::StrCat("node ", id.level, "/", id.index));
      }
      return it->second;
    };
  }
};

std::string Hex(const std::string& bytes) {
  return absl::BytesToHexString(bytes);
}

TEST(MerkleTest, KnownAnswersOfRfc6962TestLeaves) {
  // The eight leaves of the Certificate Transparency reference tests; the
  // size-1 root is SHA-256(0x00), the size-8 root the published one.
  const Leaves leaves = {
      "",
      absl::HexStringToBytes("00"),
      absl::HexStringToBytes("10"),
      absl::HexStringToBytes("2021"),
      absl::HexStringToBytes("3031"),
      absl::HexStringToBytes("40414243"),
      absl::HexStringToBytes("5051525354555657"),
      absl::HexStringToBytes("606162636465666768696a6b6c6d6e6f"),
  };
  Tree tree;
  for (const std::string& leaf : leaves) tree.Append(leaf);
  EXPECT_EQ(Hex(RefMth(Slice(leaves, 0, 1))),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  EXPECT_EQ(Hex(tree.range.Root()),
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
  EXPECT_EQ(Hex(RefMth(leaves)), Hex(tree.range.Root()));
  EXPECT_EQ(Hex(EmptyRootHash()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(MerkleTest, RootsAndStoredNodesMatchTheReferenceForSizes1To64) {
  const Leaves leaves = MakeLeaves(kSizesMax);
  Tree tree;
  for (uint64_t n = 1; n <= kSizesMax; ++n) {
    tree.Append(leaves[n - 1]);
    const std::string expected = RefMth(Slice(leaves, 0, n));
    EXPECT_EQ(Hex(tree.range.Root()), Hex(expected)) << "size " << n;
    absl::StatusOr<std::string> root = RootHash(n, tree.Reader());
    ASSERT_TRUE(root.ok()) << root.status();
    EXPECT_EQ(Hex(*root), Hex(expected)) << "size " << n;
    // The compact range is what RightEdge names, read back from the nodes.
    std::vector<std::string> edge;
    for (NodeId id : RightEdge(n))
      edge.push_back(tree.nodes.at({id.level, id.index}));
    EXPECT_EQ(edge, tree.range.hashes()) << "size " << n;
    absl::StatusOr<CompactRange> loaded = CompactRange::FromHashes(n, edge);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(Hex(loaded->Root()), Hex(expected));
  }
  // Exactly the perfect aligned subtrees are stored, each with its MTH.
  size_t perfect = 0;
  for (int level = 0; (uint64_t{1} << level) <= kSizesMax; ++level) {
    const uint64_t width = uint64_t{1} << level;
    for (uint64_t index = 0; (index + 1) * width <= kSizesMax; ++index) {
      ++perfect;
      auto it = tree.nodes.find({level, index});
      ASSERT_NE(it, tree.nodes.end()) << level << "/" << index;
      EXPECT_EQ(Hex(it->second),
                Hex(RefMth(Slice(leaves, index * width, (index + 1) * width))));
    }
  }
  EXPECT_EQ(tree.nodes.size(), perfect);
  EXPECT_EQ(perfect, 2 * kSizesMax - 1);
}

TEST(MerkleTest, InclusionProofsForEveryLeafOfEverySizeUpTo64) {
  const Leaves leaves = MakeLeaves(kSizesMax);
  Tree tree;
  for (const std::string& leaf : leaves) tree.Append(leaf);
  for (uint64_t n = 1; n <= kSizesMax; ++n) {
    const Leaves d = Slice(leaves, 0, n);
    const std::string root = RefMth(d);
    for (uint64_t m = 0; m < n; ++m) {
      SCOPED_TRACE(absl::StrCat("leaf ", m, " of ", n));
      absl::StatusOr<std::vector<std::string>> proof =
          InclusionProof(m, n, tree.Reader());
      ASSERT_TRUE(proof.ok()) << proof.status();
      EXPECT_EQ(*proof, RefPath(m, d));
      const std::string leaf_hash = LeafHash(d[m]);
      EXPECT_TRUE(VerifyInclusion(m, n, leaf_hash, *proof, root).ok());
      // Every changed byte, index, size or leaf fails.
      for (size_t i = 0; i < proof->size(); ++i) {
        std::vector<std::string> bad = *proof;
        bad[i][7] ^= 0x01;
        EXPECT_FALSE(VerifyInclusion(m, n, leaf_hash, bad, root).ok());
      }
      EXPECT_FALSE(
          VerifyInclusion(m, n, LeafHash(d[m] + "x"), *proof, root).ok());
      if (n > 1) {
        EXPECT_FALSE(
            VerifyInclusion((m + 1) % n, n, leaf_hash, *proof, root).ok());
      }
      // (Not checked: the same path for a tree of another size. A proof
      // of leaf m can verify for n and n + 1 alike when the paths have the
      // same shape; the size a root belongs to is what the signed
      // checkpoint binds, and a verifier takes both from it.)
      if (!proof->empty()) {
        std::vector<std::string> shorter(proof->begin(), proof->end() - 1);
        EXPECT_FALSE(VerifyInclusion(m, n, leaf_hash, shorter, root).ok());
      }
      std::vector<std::string> longer = *proof;
      longer.push_back(root);
      EXPECT_FALSE(VerifyInclusion(m, n, leaf_hash, longer, root).ok());
    }
  }
}

TEST(MerkleTest, ConsistencyProofsForEveryPairUpTo64) {
  const Leaves leaves = MakeLeaves(kSizesMax);
  Tree tree;
  for (const std::string& leaf : leaves) tree.Append(leaf);
  for (uint64_t n = 1; n <= kSizesMax; ++n) {
    const std::string root2 = RefMth(Slice(leaves, 0, n));
    for (uint64_t m = 1; m <= n; ++m) {
      SCOPED_TRACE(absl::StrCat("sizes ", m, " and ", n));
      const std::string root1 = RefMth(Slice(leaves, 0, m));
      absl::StatusOr<std::vector<std::string>> proof =
          ConsistencyProof(m, n, tree.Reader());
      ASSERT_TRUE(proof.ok()) << proof.status();
      EXPECT_EQ(*proof, m == n ? std::vector<std::string>()
                               : RefSubProof(m, Slice(leaves, 0, n), true));
      EXPECT_TRUE(VerifyConsistency(m, n, root1, root2, *proof).ok());
      for (size_t i = 0; i < proof->size(); ++i) {
        std::vector<std::string> bad = *proof;
        bad[i][0] ^= 0x80;
        EXPECT_FALSE(VerifyConsistency(m, n, root1, root2, bad).ok());
      }
      std::string other_root1 = root1;
      other_root1[31] ^= 0x01;
      EXPECT_FALSE(VerifyConsistency(m, n, other_root1, root2, *proof).ok());
      std::string other_root2 = root2;
      other_root2[0] ^= 0x01;
      EXPECT_FALSE(VerifyConsistency(m, n, root1, other_root2, *proof).ok());
      if (m < n) {
        EXPECT_FALSE(VerifyConsistency(m, n, root1, root2, {}).ok());
      }
    }
  }
}

TEST(MerkleTest, ARewrittenPrefixFailsConsistency) {
  // The same 40 leaves but leaf 3 changed: the old root of 10 leaves is not
  // a prefix of the new tree, whatever proof the new tree offers.
  const Leaves leaves = MakeLeaves(40);
  Leaves rewritten = leaves;
  rewritten[3] = "event-3-rewritten";
  Tree tree;
  for (const std::string& leaf : rewritten) tree.Append(leaf);
  const std::string old_root = RefMth(Slice(leaves, 0, 10));
  absl::StatusOr<std::vector<std::string>> proof =
      ConsistencyProof(10, 40, tree.Reader());
  ASSERT_TRUE(proof.ok());
  absl::Status verified =
      VerifyConsistency(10, 40, old_root, tree.range.Root(), *proof);
  EXPECT_TRUE(absl::IsDataLoss(verified)) << verified;
}

TEST(MerkleTest, BadArgumentsAndKeys) {
  Tree tree;
  for (const std::string& leaf : MakeLeaves(5)) tree.Append(leaf);
  EXPECT_TRUE(
      absl::IsInvalidArgument(InclusionProof(5, 5, tree.Reader()).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ConsistencyProof(0, 5, tree.Reader()).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ConsistencyProof(4, 3, tree.Reader()).status()));
  // A missing node is the reader's error, passed on.
  EXPECT_TRUE(absl::IsNotFound(InclusionProof(0, 6, tree.Reader()).status()));
  const NodeId id{3, 0x0102030405060708};
  absl::StatusOr<NodeId> parsed = ParseNodeKey(NodeKey(id));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(*parsed, id);
  EXPECT_TRUE(absl::IsDataLoss(ParseNodeKey("short").status()));
  std::string bad_level = NodeKey(id);
  bad_level[0] = 64;
  EXPECT_TRUE(absl::IsDataLoss(ParseNodeKey(bad_level).status()));
  EXPECT_TRUE(absl::IsDataLoss(CompactRange::FromHashes(3, {}).status()));
}

}  // namespace
}  // namespace storeledger::merkle
