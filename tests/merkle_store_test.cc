// The Merkle tree of a real EventLog (storage/merkle_store.h) and signed
// checkpoints (storage/checkpoint.h), on RocksDB in a fresh directory:
// the appends keep the tree, an open completes it, proofs verify against an
// earlier root and fail once a stored byte changes, a rewritten log fails
// consistency, and a changed byte of a checkpoint fails its signature.
#include "storage/merkle_store.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "storage/checkpoint.h"
#include "storage/event_log.h"
#include "storage/merkle.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

NewEvent MakeEvent(const std::string& stream_id, const std::string& event_id) {
  NewEvent event;
  Envelope& envelope = event.envelope;
  envelope.set_stream_id(stream_id);
  envelope.set_event_id(event_id);
  envelope.set_command_id("cmd-" + event_id);
  envelope.set_event_type("StoreOpened");
  envelope.mutable_occurred_at()->set_seconds(100);
  envelope.mutable_recorded_at()->set_seconds(101);
  envelope.set_policy_version("2024-test");
  v1::StoreOpened* opened = envelope.mutable_payload()->mutable_store_opened();
  opened->set_store_id(stream_id);
  opened->set_merchant_id("merchant-" + event_id);
  return event;
}

std::unique_ptr<EventLog> MustOpen(const std::string& dir,
                                   const EventLogOptions& options = {}) {
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir, options);
  EXPECT_TRUE(log.ok()) << log.status();
  if (!log.ok()) std::abort();
  return *std::move(log);
}

// Appends `count` events in requests of 1..4 events over a few streams;
// `rename` changes the id of one event (to rewrite history in a copy).
void AppendEvents(EventLog& log, int first, int count, int rename = -1) {
  int i = first;
  while (i < first + count) {
    AppendRequest request;
    const int batch = std::min(1 + i % 4, first + count - i);
    for (int j = 0; j < batch; ++j, ++i) {
      request.events.push_back(
          MakeEvent(absl::StrCat("s-", i % 5),
                    absl::StrCat("e", i, i == rename ? "-x" : "")));
    }
    absl::StatusOr<AppendResult> result = log.Append(std::move(request));
    ASSERT_TRUE(result.ok()) << result.status();
  }
}

// The root recomputed from the stored bytes with a fresh compact range.
std::string RootFromScan(const EventLog& log) {
  merkle::CompactRange range;
  absl::Status status =
      log.Scan(0, [&](const Envelope&, absl::string_view raw) {
        range.Append(merkle::LeafHash(raw), nullptr);
        return true;
      });
  EXPECT_TRUE(status.ok()) << status;
  return range.Root();
}

absl::Status VerifyProof(const InclusionProof& proof, absl::string_view root) {
  return merkle::VerifyInclusion(proof.position - 1, proof.tree_size,
                                 merkle::LeafHash(proof.envelope), proof.path,
                                 root);
}

TEST(MerkleStoreTest, AppendsKeepTheTreeAndEveryProofVerifies) {
  testing::TempDir dir;
  auto log = MustOpen(dir.path());
  AppendEvents(*log, 0, 70);
  // Concurrent appends share groups: the tree is still every leaf in order.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] { AppendEvents(*log, 100 + 100 * t, 25); });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(log->head().position, 170u);
  absl::StatusOr<uint64_t> size = MerkleTreeSize(*log);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(*size, 170u);
  absl::StatusOr<std::string> root = MerkleRoot(*log, 170);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(ToHex(*root), ToHex(RootFromScan(*log)));
  for (uint64_t position = 1; position <= 170; position += 7) {
    absl::StatusOr<InclusionProof> proof = ProveInclusion(*log, position, 170);
    ASSERT_TRUE(proof.ok()) << proof.status();
    EXPECT_TRUE(VerifyProof(*proof, *root).ok()) << position;
  }
  absl::StatusOr<MerkleCheck> check = CheckMerkleTree(*log);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->problems_total, 0u) << check->problems.front();
  EXPECT_EQ(check->leaves_checked, 170u);
  // Past the head, and position 0, are bad arguments.
  EXPECT_TRUE(absl::IsInvalidArgument(ProveInclusion(*log, 1, 171).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ProveInclusion(*log, 0, 10).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ProveConsistency(*log, 5, 171).status()));
}

TEST(MerkleStoreTest, AnOpenBuildsTheTreeALogWroteWithout) {
  testing::TempDir dir;
  std::string root;
  {
    EventLogOptions options;
    options.merkle_tree = false;
    auto log = MustOpen(dir.path(), options);
    AppendEvents(*log, 0, 37);
    root = RootFromScan(*log);
    EXPECT_TRUE(absl::IsFailedPrecondition(MerkleTreeSize(*log).status()));
  }
  {
    EventLogOptions read_only;
    read_only.read_only = true;
    auto log = MustOpen(dir.path(), read_only);
    EXPECT_TRUE(absl::IsFailedPrecondition(MerkleRoot(*log, 37).status()));
  }
  auto log = MustOpen(dir.path());
  absl::StatusOr<std::string> built = MerkleRoot(*log, 37);
  ASSERT_TRUE(built.ok()) << built.status();
  EXPECT_EQ(ToHex(*built), ToHex(root));
  AppendEvents(*log, 37, 20);  // and the appends go on from the loaded edge
  absl::StatusOr<MerkleCheck> check = CheckMerkleTree(*log);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->problems_total, 0u) << check->problems.front();
}

TEST(MerkleStoreTest, ADatabaseFromBeforeTheTreeGetsItAtItsFirstWritableOpen) {
  testing::TempDir dir;
  std::string root;
  {
    auto log = MustOpen(dir.path());
    AppendEvents(*log, 0, 25);
    root = RootFromScan(*log);
    // What a database written before the tree looks like: no "merkle".
    ASSERT_TRUE(log->db()->DropColumnFamily(log->merkle_cf()).ok());
  }
  EventLogOptions read_only;
  read_only.read_only = true;
  absl::StatusOr<std::unique_ptr<EventLog>> refused =
      EventLog::Open(dir.path(), read_only);
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("open it for writing once"),
            std::string::npos);
  {
    auto log = MustOpen(dir.path());
    absl::StatusOr<std::string> built = MerkleRoot(*log, 25);
    ASSERT_TRUE(built.ok()) << built.status();
    EXPECT_EQ(ToHex(*built), ToHex(root));
  }
  auto log = MustOpen(dir.path(), read_only);
  absl::StatusOr<std::string> reread = MerkleRoot(*log, 25);
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(ToHex(*reread), ToHex(root));
}

// The merkle column family's keys, as node ids.
std::vector<merkle::NodeId> StoredNodes(const EventLog& log) {
  std::vector<merkle::NodeId> ids;
  std::unique_ptr<rocksdb::Iterator> it(
      log.db()->NewIterator(rocksdb::ReadOptions(), log.merkle_cf()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::StatusOr<merkle::NodeId> id = merkle::ParseNodeKey(
        absl::string_view(it->key().data(), it->key().size()));
    EXPECT_TRUE(id.ok()) << id.status();
    if (id.ok()) ids.push_back(*id);
  }
  return ids;
}

TEST(MerkleStoreTest, OnlyTheLevelsFromTheStoredMinimumAreWritten) {
  testing::TempDir dir;
  std::string root;
  {
    auto log = MustOpen(dir.path());
    AppendEvents(*log, 0, 170);
    root = RootFromScan(*log);
    // 170 leaves: 10 nodes at level 4, 5 at 5, 2 at 6, 1 at 7.
    std::vector<merkle::NodeId> ids = StoredNodes(*log);
    EXPECT_EQ(ids.size(), 10u + 5 + 2 + 1);
    for (const merkle::NodeId& id : ids) {
      EXPECT_GE(id.level, kMerkleStoredLevelMin) << id.index;
    }
    // A node below the stored levels (a database written when every level
    // was stored) is extra to the audit...
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->merkle_cf(),
                          merkle::NodeKey({0, 3}), std::string(32, 'x'))
                    .ok());
    absl::StatusOr<MerkleCheck> check = CheckMerkleTree(*log);
    ASSERT_TRUE(check.ok()) << check.status();
    EXPECT_EQ(check->problems_total, 1u);
  }
  // ... and goes at the next writable open; the proofs hash the low levels
  // from the envelopes and still verify.
  auto log = MustOpen(dir.path());
  EXPECT_EQ(StoredNodes(*log).size(), 18u);
  absl::StatusOr<MerkleCheck> check = CheckMerkleTree(*log);
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->problems_total, 0u) << check->problems.front();
  for (uint64_t size : {1u, 15u, 16u, 17u, 170u}) {
    absl::StatusOr<std::string> root_of = MerkleRoot(*log, size);
    ASSERT_TRUE(root_of.ok()) << root_of.status();
    for (uint64_t position = 1; position <= size; position += 5) {
      absl::StatusOr<InclusionProof> proof =
          ProveInclusion(*log, position, size);
      ASSERT_TRUE(proof.ok()) << proof.status();
      EXPECT_TRUE(VerifyProof(*proof, *root_of).ok())
          << position << "/" << size;
    }
  }
  absl::StatusOr<std::string> head_root = MerkleRoot(*log, 170);
  ASSERT_TRUE(head_root.ok());
  EXPECT_EQ(ToHex(*head_root), ToHex(root));
}

TEST(MerkleStoreTest, EverySingleByteChangeOfAnEnvelopeFailsItsInclusionProof) {
  testing::TempDir dir;
  auto log = MustOpen(dir.path());
  AppendEvents(*log, 0, 20);
  absl::StatusOr<std::string> checkpoint_root = MerkleRoot(*log, 20);
  ASSERT_TRUE(checkpoint_root.ok());
  AppendEvents(*log, 20, 11);
  constexpr uint64_t kPosition = 7;
  absl::StatusOr<InclusionProof> honest = ProveInclusion(*log, kPosition, 20);
  ASSERT_TRUE(honest.ok());
  ASSERT_TRUE(VerifyProof(*honest, *checkpoint_root).ok());
  const std::string original = honest->envelope;
  for (size_t i = 0; i < original.size(); ++i) {
    std::string changed = original;
    changed[i] ^= 0x20;
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->events_cf(),
                          PositionKey(kPosition), changed)
                    .ok());
    absl::StatusOr<InclusionProof> proof = ProveInclusion(*log, kPosition, 20);
    ASSERT_TRUE(proof.ok()) << proof.status();
    EXPECT_EQ(proof->envelope, changed);
    EXPECT_TRUE(absl::IsDataLoss(VerifyProof(*proof, *checkpoint_root)))
        << "byte " << i;
  }
  // The audit's check sees the leaf that no longer matches; rebuilding the
  // tree over the changed log does not help it against the earlier root.
  absl::StatusOr<MerkleCheck> check = CheckMerkleTree(*log);
  ASSERT_TRUE(check.ok());
  EXPECT_GE(check->problems_total, 1u);
  ASSERT_TRUE(RebuildMerkleTree(*log).ok());
  check = CheckMerkleTree(*log);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->problems_total, 0u);
  absl::StatusOr<InclusionProof> rebuilt = ProveInclusion(*log, kPosition, 20);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_TRUE(absl::IsDataLoss(VerifyProof(*rebuilt, *checkpoint_root)));
  absl::StatusOr<std::string> new_root = MerkleRoot(*log, 20);
  ASSERT_TRUE(new_root.ok());
  EXPECT_TRUE(VerifyProof(*rebuilt, *new_root).ok());
  EXPECT_NE(*new_root, *checkpoint_root);
}

TEST(MerkleStoreTest,
     AConsistencyProofFromALogRewrittenBelowTheCheckpointFails) {
  testing::TempDir honest_dir;
  testing::TempDir rewritten_dir;
  auto honest = MustOpen(honest_dir.path());
  auto rewritten = MustOpen(rewritten_dir.path());
  AppendEvents(*honest, 0, 30);
  AppendEvents(*rewritten, 0, 30, /*rename=*/5);
  absl::StatusOr<std::string> checkpoint_root = MerkleRoot(*honest, 12);
  ASSERT_TRUE(checkpoint_root.ok());

  absl::StatusOr<ConsistencyProof> good = ProveConsistency(*honest, 12, 30);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(merkle::VerifyConsistency(12, 30, *checkpoint_root,
                                        good->second_root, good->path)
                  .ok());
  absl::StatusOr<ConsistencyProof> bad = ProveConsistency(*rewritten, 12, 30);
  ASSERT_TRUE(bad.ok());
  EXPECT_TRUE(absl::IsDataLoss(merkle::VerifyConsistency(
      12, 30, *checkpoint_root, bad->second_root, bad->path)));
  // Against its own earlier root the rewritten log is consistent: only the
  // checkpoint someone kept reveals the rewrite.
  EXPECT_TRUE(merkle::VerifyConsistency(12, 30, bad->first_root,
                                        bad->second_root, bad->path)
                  .ok());
}

TEST(MerkleStoreTest, CheckpointsSignVerifyAndStore) {
  absl::StatusOr<SigningKey> key =
      GenerateSigningKey("example.com/storeledger");
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<SigningKey> reread = ParseSigningKey(FormatSigningKey(*key));
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(reread->seed, key->seed);
  absl::StatusOr<VerifierKey> verifier =
      ParseVerifierKey(FormatVerifierKey(key->verifier));
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  EXPECT_EQ(verifier->public_key, key->verifier.public_key);

  Checkpoint checkpoint{"example.com/storeledger", 12345, std::string(32, 'r'),
                        1733500000};
  absl::StatusOr<std::string> note = SignCheckpoint(checkpoint, *key);
  ASSERT_TRUE(note.ok()) << note.status();
  absl::StatusOr<Checkpoint> verified = VerifyCheckpoint(*note, *verifier);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->tree_size, 12345u);
  EXPECT_EQ(verified->root, checkpoint.root);
  EXPECT_EQ(verified->time_unix_seconds, 1733500000);

  for (size_t i = 0; i < note->size(); ++i) {
    for (unsigned char flip : {0x01, 0x20}) {
      std::string changed = *note;
      changed[i] = static_cast<char>(changed[i] ^ flip);
      EXPECT_FALSE(VerifyCheckpoint(changed, *verifier).ok())
          << "byte " << i << " ^ " << int{flip};
    }
  }
  absl::StatusOr<SigningKey> other =
      GenerateSigningKey("example.com/storeledger");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(
      absl::IsDataLoss(VerifyCheckpoint(*note, other->verifier).status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(GenerateSigningKey("has space").status()));
  EXPECT_TRUE(absl::IsInvalidArgument(GenerateSigningKey("a+b").status()));

  testing::TempDir dir;
  auto log = MustOpen(dir.path());
  absl::StatusOr<std::optional<v1::SignedCheckpoint>> none =
      LatestCheckpoint(*log);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(PutCheckpoint(*log, 5, "five").ok());
  ASSERT_TRUE(PutCheckpoint(*log, 300, "three hundred").ok());
  ASSERT_TRUE(PutCheckpoint(*log, 40, "forty").ok());
  absl::StatusOr<std::optional<v1::SignedCheckpoint>> latest =
      LatestCheckpoint(*log);
  ASSERT_TRUE(latest.ok());
  ASSERT_TRUE(latest->has_value());
  EXPECT_EQ((*latest)->note(), "three hundred");
  EXPECT_EQ((*latest)->tree_size(), 300u);
  absl::StatusOr<std::optional<v1::SignedCheckpoint>> forty =
      GetCheckpoint(*log, 40);
  ASSERT_TRUE(forty.ok());
  ASSERT_TRUE(forty->has_value());
  EXPECT_EQ((*forty)->note(), "forty");
}

}  // namespace
}  // namespace storeledger
