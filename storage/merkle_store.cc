#include "storage/merkle_store.h"

#include <array>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/write_batch.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace {

constexpr char kCheckpointPrefix[] = "checkpoint";  // then %x00 u64be size

std::string CheckpointKey(uint64_t tree_size) {
  std::string key(kCheckpointPrefix);
  key.push_back('\0');
  key.append(PositionKey(tree_size));
  return key;
}

absl::StatusOr<std::optional<std::string>> GetRaw(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
    absl::string_view what) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), cf,
                              rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("read ", what)));
  return std::optional<std::string>(std::move(value));
}

absl::StatusOr<std::string> ReadNode(rocksdb::DB* db,
                                     rocksdb::ColumnFamilyHandle* nodes,
                                     merkle::NodeId id) {
  const std::string what =
      absl::StrCat("merkle node (", id.level, ", ", id.index, ")");
  ASSIGN_OR_RETURN(std::optional<std::string> hash,
                   GetRaw(db, nodes, merkle::NodeKey(id), what));
  if (!hash.has_value())
    return absl::DataLossError(absl::StrCat(what, " is missing"));
  if (hash->size() != merkle::kHashBytes) {
    return absl::DataLossError(absl::StrCat(
        what, " has ", hash->size(), " bytes, expected ", merkle::kHashBytes));
  }
  return *std::move(hash);
}

// The nodes below kMerkleStoredLevelMin of one aligned block of
// kBlockLeaves leaves, hashed from its envelopes: hashes[l][j] is node
// (l, (first_leaf >> l) + j). A block at the log's end holds what exists.
constexpr uint64_t kBlockLeaves = uint64_t{1} << kMerkleStoredLevelMin;
struct LowBlock {
  uint64_t first_leaf = ~uint64_t{0};  // none yet
  std::array<std::vector<std::string>, kMerkleStoredLevelMin> hashes;
};

absl::Status HashBlock(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
                       uint64_t first_leaf, LowBlock* block) {
  block->first_leaf = ~uint64_t{0};
  for (std::vector<std::string>& level : block->hashes) level.clear();
  rocksdb::ReadOptions read_options;
  const std::string upper = PositionKey(first_leaf + kBlockLeaves + 1);
  rocksdb::Slice upper_slice(upper);
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, events));
  std::vector<std::string>& leaves = block->hashes[0];
  for (it->Seek(PositionKey(first_leaf + 1)); it->Valid(); it->Next()) {
    const uint64_t expected = first_leaf + leaves.size() + 1;
    if (it->key().size() != 8 ||
        DecodeBigEndian64(View(it->key())) != expected) {
      return absl::DataLossError(absl::StrCat(
          "hashing Merkle leaves: expected the event at position ", expected));
    }
    leaves.push_back(merkle::LeafHash(View(it->value())));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "read events for Merkle leaves"));
  for (int level = 1; level < kMerkleStoredLevelMin; ++level) {
    const std::vector<std::string>& below = block->hashes[level - 1];
    for (size_t j = 0; j + 1 < below.size(); j += 2) {
      block->hashes[level].push_back(merkle::NodeHash(below[j], below[j + 1]));
    }
  }
  block->first_leaf = first_leaf;
  return absl::OkStatus();
}

// Reads stored nodes, and hashes the ones below kMerkleStoredLevelMin from
// the envelopes, one block at a time (kept for the next node asked).
merkle::NodeReader NodeReaderOf(rocksdb::DB* db,
                                rocksdb::ColumnFamilyHandle* events,
                                rocksdb::ColumnFamilyHandle* nodes) {
  auto block = std::make_shared<LowBlock>();
  return [db, events, nodes,
          block](merkle::NodeId id) -> absl::StatusOr<std::string> {
    if (MerkleNodeStored(id)) return ReadNode(db, nodes, id);
    const uint64_t first_leaf =
        ((id.index << id.level) / kBlockLeaves) * kBlockLeaves;
    if (block->first_leaf != first_leaf) {
      RETURN_IF_ERROR(HashBlock(db, events, first_leaf, block.get()));
    }
    const std::vector<std::string>& level = block->hashes[id.level];
    const uint64_t j = id.index - (first_leaf >> id.level);
    if (j >= level.size()) {
      return absl::DataLossError(
          absl::StrCat("merkle node (", id.level, ", ", id.index,
                       "): the log lacks the events it covers"));
    }
    return level[j];
  };
}

absl::StatusOr<merkle::CompactRange> ReadRightEdge(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
    rocksdb::ColumnFamilyHandle* nodes, uint64_t size) {
  const merkle::NodeReader read = NodeReaderOf(db, events, nodes);
  std::vector<std::string> hashes;
  for (merkle::NodeId id : merkle::RightEdge(size)) {
    ASSIGN_OR_RETURN(std::string hash, read(id));
    hashes.push_back(std::move(hash));
  }
  return merkle::CompactRange::FromHashes(size, std::move(hashes));
}

// The last stored node of the lowest stored level that a tree of `size`
// leaves has; nullopt when it has none (fewer than kBlockLeaves leaves).
std::optional<merkle::NodeId> LastStoredMarker(uint64_t size) {
  const uint64_t blocks = size >> kMerkleStoredLevelMin;
  if (blocks == 0) return std::nullopt;
  return merkle::NodeId{kMerkleStoredLevelMin, blocks - 1};
}

// A database written before kMerkleStoredLevelMin stored every level: the
// ones below it go (one range deletion, only when there are any).
absl::Status DropUnstoredLevels(rocksdb::DB* db,
                                rocksdb::ColumnFamilyHandle* nodes) {
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions(), nodes));
  it->SeekToFirst();
  RETURN_IF_ERROR(FromRocks(it->status(), "scan merkle nodes"));
  if (!it->Valid() || it->key().size() == 0 ||
      static_cast<uint8_t>(it->key()[0]) >= kMerkleStoredLevelMin) {
    return absl::OkStatus();
  }
  it.reset();
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  return FromRocks(
      db->DeleteRange(write_options, nodes, std::string(1, '\0'),
                      std::string(1, static_cast<char>(kMerkleStoredLevelMin))),
      "drop unstored merkle levels");
}

// Appends the leaves of the events at positions (range->size(), last] to
// `range`, in order, handing every node to `sink`; `batch_done` is called
// after every kMerkleBackfillLeaves leaves and at the end. The events are
// hashed as stored (not parsed: a damaged envelope is the chain check's to
// name; here it just makes a different leaf).
absl::Status FoldEvents(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
                        uint64_t last, merkle::CompactRange* range,
                        const merkle::NodeSink& sink,
                        const std::function<absl::Status()>& batch_done) {
  if (range->size() >= last) return batch_done();
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;
  const std::string upper = PositionKey(last + 1);
  rocksdb::Slice upper_slice(upper);
  read_options.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(read_options, events));
  uint64_t in_batch = 0;
  for (it->Seek(PositionKey(range->size() + 1)); it->Valid(); it->Next()) {
    const uint64_t expected = range->size() + 1;
    if (it->key().size() != 8 ||
        DecodeBigEndian64(View(it->key())) != expected) {
      return absl::DataLossError(absl::StrCat(
          "building the Merkle tree: expected the event at position ", expected,
          ", found key of ", it->key().size(), " bytes"));
    }
    range->Append(merkle::LeafHash(View(it->value())), sink);
    if (++in_batch == kMerkleBackfillLeaves) {
      RETURN_IF_ERROR(batch_done());
      in_batch = 0;
    }
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan events for the Merkle tree"));
  if (range->size() != last) {
    return absl::DataLossError(
        absl::StrCat("building the Merkle tree: the events end at position ",
                     range->size(), ", the head is ", last));
  }
  return batch_done();
}

// Writes the nodes of leaves (range->size(), last] in synced batches.
absl::Status WriteTree(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
                       rocksdb::ColumnFamilyHandle* nodes, uint64_t last,
                       merkle::CompactRange* range) {
  rocksdb::WriteBatch batch;
  absl::Status put_status;
  auto sink = [&](merkle::NodeId id, const std::string& hash) {
    if (!MerkleNodeStored(id)) return;
    rocksdb::Status s = batch.Put(nodes, merkle::NodeKey(id), hash);
    if (!s.ok() && put_status.ok()) put_status = FromRocks(s, "merkle batch");
  };
  auto flush = [&]() -> absl::Status {
    RETURN_IF_ERROR(put_status);
    if (batch.Count() == 0) return absl::OkStatus();
    rocksdb::WriteOptions write_options;
    write_options.sync = true;
    RETURN_IF_ERROR(
        FromRocks(db->Write(write_options, &batch), "write merkle nodes"));
    batch.Clear();
    return absl::OkStatus();
  };
  return FoldEvents(db, events, last, range, sink, flush);
}

uint64_t NodesOfTree(uint64_t size) {
  // Every perfect aligned subtree of a stored level: size / 2^l at level l.
  uint64_t nodes = 0;
  for (uint64_t width = size >> kMerkleStoredLevelMin; width > 0; width >>= 1) {
    nodes += width;
  }
  return nodes;
}

}  // namespace

absl::StatusOr<merkle::CompactRange> LoadMerkleTree(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events,
    rocksdb::ColumnFamilyHandle* nodes, uint64_t head, bool read_only) {
  if (!read_only) RETURN_IF_ERROR(DropUnstoredLevels(db, nodes));
  if (head == 0) return merkle::CompactRange();
  const std::optional<merkle::NodeId> marker = LastStoredMarker(head);
  if (!marker.has_value()) return ReadRightEdge(db, events, nodes, head);
  ASSIGN_OR_RETURN(std::optional<std::string> last,
                   GetRaw(db, nodes, merkle::NodeKey(*marker), "merkle node"));
  if (last.has_value()) return ReadRightEdge(db, events, nodes, head);
  if (read_only) return merkle::CompactRange();
  // The stored nodes are a prefix (the tree is only ever completed from
  // where it stops): find where, by the last node of the lowest level.
  uint64_t built = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db->NewIterator(rocksdb::ReadOptions(), nodes));
  it->SeekForPrev(merkle::NodeKey(*marker));
  RETURN_IF_ERROR(FromRocks(it->status(), "scan merkle nodes"));
  if (it->Valid()) {
    ASSIGN_OR_RETURN(merkle::NodeId id, merkle::ParseNodeKey(View(it->key())));
    if (id.level == kMerkleStoredLevelMin) {
      built = (id.index + 1) << kMerkleStoredLevelMin;
    }
  }
  it.reset();
  ASSIGN_OR_RETURN(merkle::CompactRange range,
                   ReadRightEdge(db, events, nodes, built));
  RETURN_IF_ERROR(WriteTree(db, events, nodes, head, &range));
  return range;
}

merkle::NodeReader MerkleNodeReader(const EventLog& log) {
  return NodeReaderOf(log.db(), log.events_cf(), log.merkle_cf());
}

absl::StatusOr<uint64_t> MerkleTreeSize(const EventLog& log) {
  const uint64_t head = log.head().position;
  // A tree of fewer than 2^kMerkleStoredLevelMin leaves is all hashed from
  // the envelopes: always there.
  const std::optional<merkle::NodeId> marker = LastStoredMarker(head);
  if (!marker.has_value()) return head;
  ASSIGN_OR_RETURN(std::optional<std::string> node,
                   GetRaw(log.db(), log.merkle_cf(), merkle::NodeKey(*marker),
                          "merkle node"));
  if (!node.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the Merkle tree does not reach the head (position ", head,
                     "); open the database for writing once to build it"));
  }
  return head;
}

namespace {

absl::Status CheckTreeSize(const EventLog& log, absl::string_view what,
                           uint64_t size) {
  ASSIGN_OR_RETURN(uint64_t tree_size, MerkleTreeSize(log));
  if (size > tree_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", size, " is past the log's tree size ", tree_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> MerkleRoot(const EventLog& log,
                                       uint64_t tree_size) {
  RETURN_IF_ERROR(CheckTreeSize(log, "tree size", tree_size));
  return merkle::RootHash(tree_size, MerkleNodeReader(log));
}

absl::StatusOr<InclusionProof> ProveInclusion(const EventLog& log,
                                              uint64_t position,
                                              uint64_t tree_size) {
  if (position == 0 || position > tree_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "position ", position, " is not in a tree of ", tree_size, " events"));
  }
  RETURN_IF_ERROR(CheckTreeSize(log, "tree size", tree_size));
  InclusionProof proof;
  proof.position = position;
  proof.tree_size = tree_size;
  ASSIGN_OR_RETURN(std::optional<std::string> envelope,
                   GetRaw(log.db(), log.events_cf(), PositionKey(position),
                          absl::StrCat("event ", position)));
  if (!envelope.has_value()) {
    return absl::DataLossError(absl::StrCat("event ", position, " is missing"));
  }
  proof.envelope = *std::move(envelope);
  const merkle::NodeReader read = MerkleNodeReader(log);
  ASSIGN_OR_RETURN(proof.root, merkle::RootHash(tree_size, read));
  ASSIGN_OR_RETURN(proof.path,
                   merkle::InclusionProof(position - 1, tree_size, read));
  return proof;
}

absl::StatusOr<ConsistencyProof> ProveConsistency(const EventLog& log,
                                                  uint64_t first_size,
                                                  uint64_t second_size) {
  if (first_size == 0 || first_size > second_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a consistency proof needs 1 <= first size <= second size, got ",
        first_size, " and ", second_size));
  }
  RETURN_IF_ERROR(CheckTreeSize(log, "tree size", second_size));
  const merkle::NodeReader read = MerkleNodeReader(log);
  ConsistencyProof proof;
  proof.first_size = first_size;
  proof.second_size = second_size;
  ASSIGN_OR_RETURN(proof.first_root, merkle::RootHash(first_size, read));
  ASSIGN_OR_RETURN(proof.second_root, merkle::RootHash(second_size, read));
  ASSIGN_OR_RETURN(proof.path,
                   merkle::ConsistencyProof(first_size, second_size, read));
  return proof;
}

absl::StatusOr<MerkleCheck> CheckMerkleTree(const EventLog& log) {
  MerkleCheck check;
  auto problem = [&](std::string text) {
    ++check.problems_total;
    if (check.problems.size() < kMerkleProblemsMax) {
      check.problems.push_back(std::move(text));
    }
  };
  const uint64_t head = log.head().position;
  merkle::CompactRange range;
  absl::Status read_error;
  auto compare = [&](merkle::NodeId id, const std::string& hash) {
    if (!MerkleNodeStored(id)) return;
    ++check.nodes_checked;
    absl::StatusOr<std::optional<std::string>> stored =
        GetRaw(log.db(), log.merkle_cf(), merkle::NodeKey(id), "merkle node");
    if (!stored.ok()) {
      if (read_error.ok()) read_error = stored.status();
      return;
    }
    if (!stored->has_value()) {
      problem(absl::StrCat("node (", id.level, ", ", id.index, ") is missing"));
    } else if (**stored != hash) {
      problem(absl::StrCat("node (", id.level, ", ", id.index,
                           ") differs from the hash of leaves [",
                           id.index << id.level, ", ",
                           (id.index + 1) << id.level, ") of the log"));
    }
  };
  RETURN_IF_ERROR(FoldEvents(log.db(), log.events_cf(), head, &range, compare,
                             [] { return absl::OkStatus(); }));
  RETURN_IF_ERROR(read_error);
  check.leaves_checked = range.size();
  // Extra nodes: anything beyond the nodes of the tree of `head` leaves
  // (a later unsynced append's nodes are not extra: only count up to head).
  uint64_t stored_nodes = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      log.db()->NewIterator(rocksdb::ReadOptions(), log.merkle_cf()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    absl::StatusOr<merkle::NodeId> id = merkle::ParseNodeKey(View(it->key()));
    if (!id.ok()) {
      problem(std::string(id.status().message()));
      continue;
    }
    if (!MerkleNodeStored(*id)) {
      problem(absl::StrCat("node (", id->level, ", ", id->index,
                           ") is stored, below the stored levels (",
                           kMerkleStoredLevelMin, " and up)"));
      continue;
    }
    if (((id->index + 1) << id->level) <= head) ++stored_nodes;
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scan merkle nodes"));
  if (stored_nodes != NodesOfTree(head)) {
    problem(absl::StrCat(stored_nodes, " nodes stored for a tree of ", head,
                         " leaves, expected ", NodesOfTree(head)));
  }
  return check;
}

absl::Status RebuildMerkleTree(EventLog& log) {
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  // Every node key is kNodeKeyBytes long and starts with a level byte below
  // 64: [%x00, %xff) covers them all.
  RETURN_IF_ERROR(FromRocks(
      log.db()->DeleteRange(write_options, log.merkle_cf(),
                            std::string(1, '\0'), std::string(1, '\xff')),
      "clear merkle nodes"));
  merkle::CompactRange range;
  return WriteTree(log.db(), log.events_cf(), log.merkle_cf(),
                   log.appended_head().position, &range);
}

absl::Status PutCheckpoint(EventLog& log, uint64_t tree_size,
                           absl::string_view note) {
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  return FromRocks(
      log.db()->Put(write_options, log.meta_cf(), CheckpointKey(tree_size),
                    rocksdb::Slice(note.data(), note.size())),
      "store checkpoint");
}

absl::StatusOr<v1::SignedCheckpoint> WriteCheckpoint(EventLog& log,
                                                     const SigningKey& key,
                                                     int64_t unix_seconds) {
  Checkpoint checkpoint;
  checkpoint.origin = key.verifier.name;
  ASSIGN_OR_RETURN(checkpoint.tree_size, MerkleTreeSize(log));
  ASSIGN_OR_RETURN(checkpoint.root, MerkleRoot(log, checkpoint.tree_size));
  checkpoint.time_unix_seconds = unix_seconds;
  v1::SignedCheckpoint out;
  ASSIGN_OR_RETURN(*out.mutable_note(), SignCheckpoint(checkpoint, key));
  out.set_tree_size(checkpoint.tree_size);
  RETURN_IF_ERROR(PutCheckpoint(log, out.tree_size(), out.note()));
  return out;
}

absl::StatusOr<std::optional<v1::SignedCheckpoint>> LatestCheckpoint(
    const EventLog& log) {
  std::unique_ptr<rocksdb::Iterator> it(
      log.db()->NewIterator(rocksdb::ReadOptions(), log.meta_cf()));
  it->SeekForPrev(CheckpointKey(~uint64_t{0}));
  RETURN_IF_ERROR(FromRocks(it->status(), "read checkpoints"));
  const std::string prefix =
      CheckpointKey(0).substr(0, sizeof(kCheckpointPrefix));
  if (!it->Valid() || !absl::StartsWith(View(it->key()), prefix) ||
      it->key().size() != prefix.size() + 8) {
    return std::optional<v1::SignedCheckpoint>();
  }
  v1::SignedCheckpoint checkpoint;
  checkpoint.set_note(it->value().ToString());
  checkpoint.set_tree_size(
      DecodeBigEndian64(View(it->key()).substr(prefix.size())));
  return checkpoint;
}

absl::StatusOr<std::optional<v1::SignedCheckpoint>> GetCheckpoint(
    const EventLog& log, uint64_t tree_size) {
  ASSIGN_OR_RETURN(
      std::optional<std::string> note,
      GetRaw(log.db(), log.meta_cf(), CheckpointKey(tree_size), "checkpoint"));
  if (!note.has_value()) return std::optional<v1::SignedCheckpoint>();
  v1::SignedCheckpoint checkpoint;
  checkpoint.set_note(*std::move(note));
  checkpoint.set_tree_size(tree_size);
  return checkpoint;
}

namespace {

// 0: the latest checkpoint's size, or the tree's.
absl::StatusOr<uint64_t> ResolveTreeSize(const EventLog& log, uint64_t size) {
  if (size != 0) return size;
  ASSIGN_OR_RETURN(std::optional<v1::SignedCheckpoint> latest,
                   LatestCheckpoint(log));
  if (latest.has_value()) return latest->tree_size();
  return MerkleTreeSize(log);
}

absl::Status AttachCheckpoint(const EventLog& log, uint64_t tree_size,
                              v1::SignedCheckpoint* out) {
  ASSIGN_OR_RETURN(std::optional<v1::SignedCheckpoint> stored,
                   GetCheckpoint(log, tree_size));
  if (stored.has_value()) *out = *std::move(stored);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::InclusionProof> InclusionProofMessage(const EventLog& log,
                                                         uint64_t position,
                                                         uint64_t tree_size) {
  ASSIGN_OR_RETURN(tree_size, ResolveTreeSize(log, tree_size));
  ASSIGN_OR_RETURN(InclusionProof proof,
                   ProveInclusion(log, position, tree_size));
  v1::InclusionProof out;
  out.set_position(proof.position);
  out.set_leaf_index(proof.position - 1);
  out.set_tree_size(proof.tree_size);
  out.set_envelope(std::move(proof.envelope));
  out.set_root_hash(std::move(proof.root));
  for (std::string& hash : proof.path) out.add_audit_path(std::move(hash));
  if (out.tree_size() > 0) {
    RETURN_IF_ERROR(AttachCheckpoint(log, tree_size, out.mutable_checkpoint()));
  }
  return out;
}

absl::StatusOr<v1::ConsistencyProof> ConsistencyProofMessage(
    const EventLog& log, uint64_t first_size, uint64_t second_size) {
  ASSIGN_OR_RETURN(second_size, ResolveTreeSize(log, second_size));
  ASSIGN_OR_RETURN(ConsistencyProof proof,
                   ProveConsistency(log, first_size, second_size));
  v1::ConsistencyProof out;
  out.set_first_size(proof.first_size);
  out.set_second_size(proof.second_size);
  out.set_first_root(std::move(proof.first_root));
  out.set_second_root(std::move(proof.second_root));
  for (std::string& hash : proof.path) out.add_path(std::move(hash));
  RETURN_IF_ERROR(
      AttachCheckpoint(log, first_size, out.mutable_first_checkpoint()));
  RETURN_IF_ERROR(
      AttachCheckpoint(log, second_size, out.mutable_second_checkpoint()));
  return out;
}

}  // namespace storeledger
