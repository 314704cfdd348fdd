#include "storage/checkpoint.h"

#include <openssl/evp.h>

#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "storage/event_log.h"

namespace storeledger {
namespace {

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
constexpr size_t kKeyIdBytes = 4;
constexpr char kSignatureType = '\x01';  // Ed25519, in C2SP signed-note
constexpr char kPrivateKeyPrefix[] = "PRIVATE+KEY+";
constexpr char kSignaturePrefix[] = "\xe2\x80\x94 ";  // an em dash and a space
constexpr char kTimePrefix[] = "time ";

struct PkeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const unsigned char* Bytes(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

absl::Status CheckName(absl::string_view name) {
  if (name.empty() || name.size() > kKeyNameBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("key name must be 1 to ", kKeyNameBytesMax, " bytes, got ",
                     name.size()));
  }
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == '+') {
      return absl::InvalidArgumentError(
          absl::StrCat("key name '", absl::CHexEscape(name),
                       "' must be printable ASCII without '+' or spaces"));
    }
  }
  return absl::OkStatus();
}

std::string KeyId(absl::string_view name, absl::string_view public_key) {
  return Sha256(absl::StrCat(name, "\n", std::string(1, kSignatureType),
                             public_key))
      .substr(0, kKeyIdBytes);
}

absl::StatusOr<VerifierKey> MakeVerifier(absl::string_view name,
                                         std::string public_key) {
  RETURN_IF_ERROR(CheckName(name));
  if (public_key.size() != kEd25519KeyBytes) {
    return absl::InvalidArgumentError("an Ed25519 public key is 32 bytes");
  }
  VerifierKey key;
  key.name = std::string(name);
  key.key_id = KeyId(name, public_key);
  key.public_key = std::move(public_key);
  return key;
}

absl::StatusOr<SigningKey> FromSeed(absl::string_view name, std::string seed) {
  if (seed.size() != kEd25519KeyBytes) {
    return absl::InvalidArgumentError("an Ed25519 private key is 32 bytes");
  }
  Pkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, Bytes(seed),
                                         seed.size()));
  if (pkey == nullptr)
    return absl::InternalError("OpenSSL refused the Ed25519 key");
  std::string public_key(kEd25519KeyBytes, '\0');
  size_t length = public_key.size();
  if (EVP_PKEY_get_raw_public_key(
          pkey.get(), reinterpret_cast<unsigned char*>(public_key.data()),
          &length) != 1 ||
      length != kEd25519KeyBytes) {
    return absl::InternalError("OpenSSL could not derive the public key");
  }
  SigningKey key;
  ASSIGN_OR_RETURN(key.verifier, MakeVerifier(name, std::move(public_key)));
  key.seed = std::move(seed);
  return key;
}

// Base64 that decodes and is the canonical encoding of what it decodes to:
// the unused low bits of the last character and the padding may not vary,
// so that every changed byte of a note changes what it says.
bool CanonicalBase64Unescape(absl::string_view text, std::string* out) {
  return absl::Base64Unescape(text, out) && absl::Base64Escape(*out) == text;
}

std::string TypedBase64(absl::string_view raw) {
  return absl::Base64Escape(absl::StrCat(std::string(1, kSignatureType), raw));
}

// "<name>+<hex id>+<b64(0x01 raw)>" -> name and raw, the id checked.
absl::Status ParseKeyLine(absl::string_view text, absl::string_view what,
                          std::string* name, std::string* raw,
                          std::string* hex_id) {
  absl::string_view line = absl::StripTrailingAsciiWhitespace(text);
  std::vector<std::string> parts =
      absl::StrSplit(line, absl::MaxSplits('+', 2));
  std::string decoded;
  if (parts.size() != 3 || !CanonicalBase64Unescape(parts[2], &decoded) ||
      decoded.size() != 1 + kEd25519KeyBytes || decoded[0] != kSignatureType) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not '<name>+<key id>+<base64 Ed25519 key>'"));
  }
  *name = parts[0];
  *hex_id = parts[1];
  *raw = decoded.substr(1);
  return CheckName(*name);
}

absl::Status CheckHexId(absl::string_view hex_id, const VerifierKey& key,
                        absl::string_view what) {
  if (hex_id != ToHex(key.key_id)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": key id ", hex_id,
                                                   " does not match the key (",
                                                   ToHex(key.key_id), ")"));
  }
  return absl::OkStatus();
}

std::string Body(const Checkpoint& c) {
  return absl::StrCat(c.origin, "\n", c.tree_size, "\n",
                      absl::Base64Escape(c.root), "\n", kTimePrefix,
                      c.time_unix_seconds, "\n");
}

absl::StatusOr<Checkpoint> ParseBody(absl::string_view body) {
  // body ends with LF; split gives a last empty piece.
  std::vector<absl::string_view> lines = absl::StrSplit(body, '\n');
  Checkpoint c;
  std::string root;
  if (lines.size() != 5 || !lines[4].empty() ||
      !absl::SimpleAtoi(lines[1], &c.tree_size) ||
      !CanonicalBase64Unescape(lines[2], &root) || root.size() != 32 ||
      !absl::StartsWith(lines[3], kTimePrefix) ||
      !absl::SimpleAtoi(lines[3].substr(sizeof(kTimePrefix) - 1),
                        &c.time_unix_seconds)) {
    return absl::DataLossError(
        "checkpoint body is not 'origin / tree size / base64 root / time T'");
  }
  c.origin = std::string(lines[0]);
  c.root = std::move(root);
  return c;
}

}  // namespace

absl::StatusOr<SigningKey> GenerateSigningKey(absl::string_view name) {
  RETURN_IF_ERROR(CheckName(name));
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr), EVP_PKEY_CTX_free);
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return absl::InternalError("OpenSSL could not generate an Ed25519 key");
  }
  Pkey pkey(raw);
  std::string seed(kEd25519KeyBytes, '\0');
  size_t length = seed.size();
  if (EVP_PKEY_get_raw_private_key(
          pkey.get(), reinterpret_cast<unsigned char*>(seed.data()), &length) !=
          1 ||
      length != kEd25519KeyBytes) {
    return absl::InternalError("OpenSSL could not export the Ed25519 key");
  }
  return FromSeed(name, std::move(seed));
}

std::string FormatSigningKey(const SigningKey& key) {
  return absl::StrCat(kPrivateKeyPrefix, key.verifier.name, "+",
                      ToHex(key.verifier.key_id), "+", TypedBase64(key.seed),
                      "\n");
}

absl::StatusOr<SigningKey> ParseSigningKey(absl::string_view text) {
  if (!absl::StartsWith(text, kPrivateKeyPrefix)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a private key file starts with ", kPrivateKeyPrefix));
  }
  text.remove_prefix(sizeof(kPrivateKeyPrefix) - 1);
  std::string name, seed, hex_id;
  RETURN_IF_ERROR(ParseKeyLine(text, "private key", &name, &seed, &hex_id));
  ASSIGN_OR_RETURN(SigningKey key, FromSeed(name, std::move(seed)));
  RETURN_IF_ERROR(CheckHexId(hex_id, key.verifier, "private key"));
  return key;
}

std::string FormatVerifierKey(const VerifierKey& key) {
  return absl::StrCat(key.name, "+", ToHex(key.key_id), "+",
                      TypedBase64(key.public_key), "\n");
}

absl::StatusOr<VerifierKey> ParseVerifierKey(absl::string_view text) {
  std::string name, public_key, hex_id;
  RETURN_IF_ERROR(
      ParseKeyLine(text, "public key", &name, &public_key, &hex_id));
  ASSIGN_OR_RETURN(VerifierKey key, MakeVerifier(name, std::move(public_key)));
  RETURN_IF_ERROR(CheckHexId(hex_id, key, "public key"));
  return key;
}

absl::StatusOr<std::string> SignCheckpoint(const Checkpoint& checkpoint,
                                           const SigningKey& key) {
  if (checkpoint.origin != key.verifier.name) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint origin '", checkpoint.origin,
                     "' is not the key's name '", key.verifier.name, "'"));
  }
  if (checkpoint.root.size() != 32) {
    return absl::InvalidArgumentError("checkpoint root is not 32 bytes");
  }
  const std::string body = Body(checkpoint);
  Pkey pkey(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr,
                                         Bytes(key.seed), key.seed.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  std::string signature(kEd25519SignatureBytes, '\0');
  size_t length = signature.size();
  if (pkey == nullptr || ctx == nullptr ||
      EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) !=
          1 ||
      EVP_DigestSign(ctx.get(),
                     reinterpret_cast<unsigned char*>(signature.data()),
                     &length, Bytes(body), body.size()) != 1 ||
      length != kEd25519SignatureBytes) {
    return absl::InternalError("OpenSSL could not sign the checkpoint");
  }
  return absl::StrCat(body, "\n", kSignaturePrefix, key.verifier.name, " ",
                      absl::Base64Escape(key.verifier.key_id + signature),
                      "\n");
}

absl::StatusOr<Checkpoint> VerifyCheckpoint(absl::string_view note,
                                            const VerifierKey& key) {
  if (note.size() > kNoteBytesMax) {
    return absl::DataLossError(absl::StrCat("checkpoint is ", note.size(),
                                            " bytes, over ", kNoteBytesMax));
  }
  const size_t blank = note.find("\n\n");
  if (blank == absl::string_view::npos) {
    return absl::DataLossError(
        "checkpoint has no blank line before its signatures");
  }
  const absl::string_view body = note.substr(0, blank + 1);
  const std::string wanted = absl::StrCat(kSignaturePrefix, key.name, " ");
  bool signed_by_key = false;
  for (absl::string_view line :
       absl::StrSplit(note.substr(blank + 2), '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, wanted)) continue;
    std::string decoded;
    if (!CanonicalBase64Unescape(line.substr(wanted.size()), &decoded) ||
        decoded.size() != kKeyIdBytes + kEd25519SignatureBytes ||
        decoded.substr(0, kKeyIdBytes) != key.key_id) {
      continue;
    }
    const std::string signature = decoded.substr(kKeyIdBytes);
    Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                          Bytes(key.public_key),
                                          key.public_key.size()));
    MdCtx ctx(EVP_MD_CTX_new());
    if (pkey == nullptr || ctx == nullptr ||
        EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr,
                             pkey.get()) != 1) {
      return absl::InternalError("OpenSSL could not load the public key");
    }
    if (EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(),
                         Bytes(body), body.size()) == 1) {
      signed_by_key = true;
      break;
    }
  }
  if (!signed_by_key) {
    return absl::DataLossError(
        absl::StrCat("checkpoint carries no valid signature of key ", key.name,
                     "+", ToHex(key.key_id)));
  }
  ASSIGN_OR_RETURN(Checkpoint checkpoint, ParseBody(body));
  if (checkpoint.origin != key.name) {
    return absl::DataLossError(
        absl::StrCat("checkpoint origin '", checkpoint.origin,
                     "' is not the key's name '", key.name, "'"));
  }
  return checkpoint;
}

}  // namespace storeledger
