// SHA-256 (OpenSSL EVP), the envelope hash of the chain, and hex.
#include <openssl/evp.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "storage/event_log.h"
#include "storage/hash_internal.h"

namespace storeledger {
namespace {

constexpr size_t kSha256Bytes = 32;

// The SHA-256 implementation, fetched once: with EVP_sha256(), OpenSSL 3
// looks the algorithm up in its provider tables (under a lock) on every
// EVP_DigestInit_ex, which cost more than hashing a 200-byte envelope.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) std::abort();
    return fetched;
  }();
  return md;
}

}  // namespace

namespace storage_internal {

// With a context reused per thread. OpenSSL failures here mean a broken
// build or an out-of-memory condition, not bad input: a crash, as the house
// rules ask of broken invariants.
void Sha256ConcatTo(absl::string_view a, absl::string_view b,
                    unsigned char* out) {
  struct Context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~Context() { EVP_MD_CTX_free(ctx); }
  };
  thread_local Context context;
  EVP_MD_CTX* ctx = context.ctx;
  unsigned int digest_bytes = 0;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, Sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, a.data(), a.size()) != 1 ||
      EVP_DigestUpdate(ctx, b.data(), b.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out, &digest_bytes) != 1 ||
      digest_bytes != kSha256Bytes) {
    std::abort();
  }
}

std::string Sha256Concat(absl::string_view a, absl::string_view b) {
  unsigned char digest[kSha256Bytes];
  Sha256ConcatTo(a, b, digest);
  return std::string(reinterpret_cast<const char*>(digest), kSha256Bytes);
}

}  // namespace storage_internal

std::string Sha256(absl::string_view bytes) {
  return storage_internal::Sha256Concat(bytes, absl::string_view());
}

std::string SerializeDeterministic(
    const google::protobuf::MessageLite& message) {
  // Sized first and written into place: no growing of the string while
  // serializing (the append path serializes every envelope, outcome and
  // record it writes).
  const size_t size = message.ByteSizeLong();
  std::string out(size, '\0');
  google::protobuf::io::ArrayOutputStream array(out.data(),
                                                static_cast<int>(size));
  google::protobuf::io::CodedOutputStream coded(&array);
  coded.SetSerializationDeterministic(true);
  message.SerializeWithCachedSizes(&coded);
  return out;
}

std::string EnvelopeHash(const Envelope& envelope) {
  Envelope without_hash = envelope;
  without_hash.clear_hash();
  return storage_internal::Sha256Concat(envelope.prev_hash(),
                                        SerializeDeterministic(without_hash));
}

std::string ToHex(absl::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

std::string PositionKey(uint64_t position) {
  std::string key(8, '\0');
  for (int i = 7; i >= 0; --i) {
    key[i] = static_cast<char>(position & 0xff);
    position >>= 8;
  }
  return key;
}

}  // namespace storeledger
