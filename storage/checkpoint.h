// Signed checkpoints of the Merkle tree (storage/FORMAT.md "The Merkle
// tree"): the C2SP signed-note text of (origin, tree size, root, time),
// signed with Ed25519 through OpenSSL, and the key files `storeledger
// keygen` writes. The origin is the key's name: it names the log.
// Thread-safe (no shared state).
#ifndef STORELEDGER_STORAGE_CHECKPOINT_H_
#define STORELEDGER_STORAGE_CHECKPOINT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace storeledger {

// A key name (the log's origin): 1..kKeyNameBytesMax printable ASCII bytes,
// no '+' and no space (C2SP signed-note).
inline constexpr size_t kKeyNameBytesMax = 128;
// A note read back is at most so long (a checkpoint is ~200 bytes).
inline constexpr size_t kNoteBytesMax = 4096;

struct VerifierKey {
  std::string name;
  std::string public_key;  // 32 bytes, Ed25519 (RFC 8032)
  std::string key_id;      // 4 bytes: SHA-256(name LF 0x01 public_key)[0:4]
};

struct SigningKey {
  VerifierKey verifier;
  std::string seed;  // 32 bytes, the Ed25519 private key
};

// A fresh key pair. kInvalidArgument for a bad name.
absl::StatusOr<SigningKey> GenerateSigningKey(absl::string_view name);
// "PRIVATE+KEY+<name>+<hex id>+<b64(0x01 seed)>\n" and back.
std::string FormatSigningKey(const SigningKey& key);
absl::StatusOr<SigningKey> ParseSigningKey(absl::string_view text);
// "<name>+<hex id>+<b64(0x01 public key)>\n" and back.
std::string FormatVerifierKey(const VerifierKey& key);
absl::StatusOr<VerifierKey> ParseVerifierKey(absl::string_view text);

struct Checkpoint {
  std::string origin;  // the signing key's name
  uint64_t tree_size = 0;
  std::string root;  // 32 bytes, MTH(tree_size)
  int64_t time_unix_seconds = 0;
};

// The note: body ("origin\nsize\nb64 root\ntime T\n"), a blank line, and
// "— <name> <b64(id || signature)>\n". kInvalidArgument when the origin is
// not the key's name or the root is not 32 bytes.
absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint,
                                           const SigningKey& key);
// The checkpoint of `note` if it carries a valid signature of `key` (and
// its origin is the key's name); kDataLoss naming what is wrong otherwise.
absl::StatusOr<Checkpoint> VerifyCheckpoint(absl::string_view note,
                                            const VerifierKey& key);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_CHECKPOINT_H_
