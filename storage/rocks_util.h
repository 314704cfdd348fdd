// Small pieces every reader of the RocksDB database needs (storage/ and the
// replay/ code that reads column families directly): one place for how a
// RocksDB status becomes an absl::Status, and for the byte views and
// big-endian numbers of storage/FORMAT.md.
#ifndef STORELEDGER_STORAGE_ROCKS_UTIL_H_
#define STORELEDGER_STORAGE_ROCKS_UTIL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/slice.h"
#include "rocksdb/status.h"

namespace storeledger {

inline absl::string_view View(const rocksdb::Slice& slice) {
  return absl::string_view(slice.data(), slice.size());
}

// The first 8 bytes of `bytes` (which must hold at least 8) as a big-endian
// u64: positions, versions (FORMAT.md).
uint64_t DecodeBigEndian64(absl::string_view bytes);

// RocksDB status -> the most specific canonical code, keeping RocksDB's text
// after `context`: Corruption is kDataLoss, NotFound kNotFound, I/O and
// busy conditions kUnavailable.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_ROCKS_UTIL_H_
