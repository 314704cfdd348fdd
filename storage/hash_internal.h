// Internal to storage/: helpers shared by hash.cc and event_log.cc.
#ifndef STORELEDGER_STORAGE_HASH_INTERNAL_H_
#define STORELEDGER_STORAGE_HASH_INTERNAL_H_

#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace storeledger::storage_internal {

// SHA-256 of a || b (OpenSSL EVP), without building the concatenation.
std::string Sha256Concat(absl::string_view a, absl::string_view b);
// The same into out[0, 32): no string allocated (the log scan hashes every
// envelope it reads).
void Sha256ConcatTo(absl::string_view a, absl::string_view b,
                    unsigned char* out);

}  // namespace storeledger::storage_internal

#endif  // STORELEDGER_STORAGE_HASH_INTERNAL_H_
