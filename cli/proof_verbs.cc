// The proof verbs: keygen, checkpoint, prove, verify-proof. The
// tree and its proofs are storage/merkle_store.h, the signed notes
// storage/checkpoint.h; this file parses flags, reads and writes files, and
// formats. verify-proof trusts nothing but the public key it is given: the
// root comes from a checkpoint whose signature it checks.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "cli/cli.h"
#include "google/protobuf/util/json_util.h"
#include "json/json.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"
#include "storage/merkle_store.h"

namespace storeledger {
namespace {

// A proof file or a key file read whole is at most so large (an inclusion
// proof holds one envelope, at most kEnvelopeBytesMax, base64-encoded).
constexpr size_t kProofFileBytesMax = 8 << 20;

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view what) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": cannot read the file"));
  }
  std::stringstream text;
  text << file.rdbuf();
  if (text.str().size() > kProofFileBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, " is over ", kProofFileBytesMax, " bytes"));
  }
  return text.str();
}

// Creates `path` (mode `mode`) holding `text`; refuses to replace a file.
absl::Status WriteNewFile(const std::string& path, const std::string& text,
                          mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot create the file (", strerror(errno),
                     "); keygen never overwrites a key"));
  }
  const bool written = write(fd, text.data(), text.size()) ==
                           static_cast<ssize_t>(text.size()) &&
                       fsync(fd) == 0;
  close(fd);
  if (!written)
    return absl::UnavailableError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequiredFlag(const CliContext& ctx,
                                         absl::string_view name) {
  std::optional<std::string> value = ctx.flags.Get(name);
  if (!value.has_value() || value->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  }
  return *value;
}

absl::StatusOr<VerifierKey> ReadVerifierKey(const CliContext& ctx) {
  ASSIGN_OR_RETURN(std::string path, RequiredFlag(ctx, "key"));
  ASSIGN_OR_RETURN(std::string text, ReadFile(path, "--key"));
  absl::StatusOr<VerifierKey> key = ParseVerifierKey(text);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--key ", path, ": ", key.status().message()));
  }
  return key;
}

}  // namespace

int KeygenVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<std::string> name = RequiredFlag(ctx, "name");
  if (!name.ok()) return ctx.Fail(name.status());
  absl::StatusOr<std::string> out = RequiredFlag(ctx, "out");
  if (!out.ok()) return ctx.Fail(out.status());
  absl::StatusOr<SigningKey> key = GenerateSigningKey(*name);
  if (!key.ok()) return ctx.Fail(key.status());
  if (absl::Status s =
          WriteNewFile(*out + ".key", FormatSigningKey(*key), 0600);
      !s.ok()) {
    return ctx.Fail(s);
  }
  if (absl::Status s =
          WriteNewFile(*out + ".pub", FormatVerifierKey(key->verifier), 0644);
      !s.ok()) {
    return ctx.Fail(s);
  }
  *ctx.out << FormatVerifierKey(key->verifier);
  return kExitOk;
}

int CheckpointVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  absl::StatusOr<std::string> path = RequiredFlag(ctx, "key");
  if (!path.ok()) return ctx.Fail(path.status());
  absl::StatusOr<std::string> text = ReadFile(*path, "--key");
  if (!text.ok()) return ctx.Fail(text.status());
  absl::StatusOr<SigningKey> key = ParseSigningKey(*text);
  if (!key.ok()) {
    return ctx.Fail(absl::InvalidArgumentError(
        absl::StrCat("--key ", *path, ": ", key.status().message())));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(false);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const absl::Time now =
      (ctx.clock != nullptr ? *ctx.clock : SystemClock()).Now();
  absl::StatusOr<v1::SignedCheckpoint> checkpoint = WriteCheckpoint(
      *(*ledger)->mutable_log(), *key, absl::ToUnixSeconds(now));
  if (!checkpoint.ok()) return ctx.Fail(checkpoint.status());
  *ctx.out << checkpoint->note();
  return kExitOk;
}

int ProveVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.flags.GetUint("position");
  if (!position.ok()) return ctx.Fail(position.status());
  absl::StatusOr<std::optional<uint64_t>> tree_size =
      ctx.flags.GetUint("tree-size");
  if (!tree_size.ok()) return ctx.Fail(tree_size.status());
  absl::StatusOr<std::optional<uint64_t>> first =
      ctx.flags.GetUint("consistency");
  if (!first.ok()) return ctx.Fail(first.status());
  if (position->has_value() == first->has_value()) {
    return ctx.Fail(absl::InvalidArgumentError(
        "give --position N [--tree-size M] or --consistency A [B]"));
  }
  uint64_t second = 0;  // the latest checkpoint's size
  if (first->has_value() && ctx.flags.positional().size() > 1 &&
      !absl::SimpleAtoi(ctx.flags.positional()[1], &second)) {
    return ctx.Fail(absl::InvalidArgumentError(
        absl::StrCat("--consistency A B: B must be a tree size, got '",
                     ctx.flags.positional()[1], "'")));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  if (position->has_value()) {
    absl::StatusOr<v1::InclusionProof> proof =
        InclusionProofMessage(log, **position, tree_size->value_or(0));
    if (!proof.ok()) return ctx.Fail(proof.status());
    *ctx.out << ToJson(*proof) << "\n";
  } else {
    absl::StatusOr<v1::ConsistencyProof> proof =
        ConsistencyProofMessage(log, **first, second);
    if (!proof.ok()) return ctx.Fail(proof.status());
    *ctx.out << ToJson(*proof) << "\n";
  }
  return kExitOk;
}

namespace {

// The checkpoint to trust: the note in the file `flag` names if given (one
// the auditor kept), else the one the proof carries; its signature checked.
absl::StatusOr<Checkpoint> TrustedCheckpoint(
    const CliContext& ctx, absl::string_view flag,
    const v1::SignedCheckpoint& carried, const VerifierKey& key,
    uint64_t tree_size) {
  std::string note = carried.note();
  if (std::optional<std::string> path = ctx.flags.Get(flag)) {
    ASSIGN_OR_RETURN(note, ReadFile(*path, absl::StrCat("--", flag)));
  }
  if (note.empty()) {
    return absl::DataLossError(
        absl::StrCat("no signed checkpoint of tree size ", tree_size,
                     ": the proof carries none; give --", flag, " FILE"));
  }
  ASSIGN_OR_RETURN(Checkpoint checkpoint, VerifyCheckpoint(note, key));
  if (checkpoint.tree_size != tree_size) {
    return absl::DataLossError(absl::StrCat("the checkpoint is of tree size ",
                                            checkpoint.tree_size,
                                            ", the proof of ", tree_size));
  }
  return checkpoint;
}

absl::Status VerifyInclusionFile(CliContext& ctx, const std::string& json,
                                 const VerifierKey& key) {
  v1::InclusionProof proof;
  if (!google::protobuf::util::JsonStringToMessage(json, &proof).ok()) {
    return absl::InvalidArgumentError(
        "the proof is not an InclusionProof in JSON");
  }
  ASSIGN_OR_RETURN(Checkpoint checkpoint,
                   TrustedCheckpoint(ctx, "checkpoint", proof.checkpoint(), key,
                                     proof.tree_size()));
  const std::vector<std::string> path(proof.audit_path().begin(),
                                      proof.audit_path().end());
  if (proof.position() == 0 || proof.leaf_index() != proof.position() - 1) {
    return absl::DataLossError(
        "the proof's leaf index is not its position - 1");
  }
  RETURN_IF_ERROR(merkle::VerifyInclusion(proof.leaf_index(), proof.tree_size(),
                                          merkle::LeafHash(proof.envelope()),
                                          path, checkpoint.root));
  Envelope envelope;
  if (!envelope.ParseFromString(proof.envelope()) ||
      envelope.position() != proof.position()) {
    return absl::DataLossError(
        "the proven bytes are not the Envelope at the proof's position");
  }
  *ctx.out << "{\"ok\":true,\"position\":" << proof.position()
           << ",\"treeSize\":" << proof.tree_size() << ",\"origin\":\""
           << checkpoint.origin << "\",\"envelope\":" << ToJson(envelope)
           << "}\n";
  return absl::OkStatus();
}

absl::Status VerifyConsistencyFile(CliContext& ctx, const std::string& json,
                                   const VerifierKey& key) {
  v1::ConsistencyProof proof;
  if (!google::protobuf::util::JsonStringToMessage(json, &proof).ok()) {
    return absl::InvalidArgumentError(
        "the proof is not a ConsistencyProof in JSON");
  }
  ASSIGN_OR_RETURN(Checkpoint first,
                   TrustedCheckpoint(ctx, "old", proof.first_checkpoint(), key,
                                     proof.first_size()));
  ASSIGN_OR_RETURN(Checkpoint second,
                   TrustedCheckpoint(ctx, "new", proof.second_checkpoint(), key,
                                     proof.second_size()));
  const std::vector<std::string> path(proof.path().begin(), proof.path().end());
  RETURN_IF_ERROR(merkle::VerifyConsistency(first.tree_size, second.tree_size,
                                            first.root, second.root, path));
  *ctx.out << "{\"ok\":true,\"firstSize\":" << first.tree_size
           << ",\"secondSize\":" << second.tree_size << "}\n";
  return absl::OkStatus();
}

}  // namespace

int VerifyProofVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  if (ctx.flags.positional().size() != 2) {
    return ctx.Fail(absl::InvalidArgumentError(
        "usage: verify-proof --key PUB [--checkpoint NOTE | --old NOTE "
        "[--new NOTE]] PROOF.json"));
  }
  absl::StatusOr<VerifierKey> key = ReadVerifierKey(ctx);
  if (!key.ok()) return ctx.Fail(key.status());
  absl::StatusOr<std::string> json =
      ReadFile(ctx.flags.positional()[1], "proof");
  if (!json.ok()) return ctx.Fail(json.status());
  const bool consistency = json->find("\"firstSize\"") != std::string::npos;
  absl::Status verified = consistency ? VerifyConsistencyFile(ctx, *json, *key)
                                      : VerifyInclusionFile(ctx, *json, *key);
  if (!verified.ok()) {
    // A proof that does not hold is a failed check (exit 1), never usage.
    *ctx.err << "storeledger verify-proof: " << verified << "\n";
    return absl::IsInvalidArgument(verified) ? kExitUsage : kExitCheckFailed;
  }
  return kExitOk;
}

}  // namespace storeledger
