// A RocksDB iterator with a sorted map of newer values over it: what a
// reader of a derived column family itself (the audit) sees of a log that
// writes behind (storage/FORMAT.md "Written behind the log"), and the merge
// EventLog's own prefix scans make. Forward only.
#ifndef STORELEDGER_STORAGE_OVERLAY_ITERATOR_H_
#define STORELEDGER_STORAGE_OVERLAY_ITERATOR_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "rocksdb/iterator.h"

namespace storeledger {

// Key -> its newer value, or nullopt for a delete (the key is hidden).
using KeyOverlay =
    std::map<std::string, std::optional<std::string>, std::less<>>;

// The keys of `base` and `overlay` in order, each once: an overlay entry
// wins over base's value for the same key, and a delete hides it. Seek,
// SeekToFirst and Next; SeekToLast, SeekForPrev and Prev leave it invalid
// with a NotSupported status. `overlay` may be shared by many iterators (it
// is read only).
std::unique_ptr<rocksdb::Iterator> NewOverlayIterator(
    std::shared_ptr<const KeyOverlay> overlay,
    std::unique_ptr<rocksdb::Iterator> base);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_OVERLAY_ITERATOR_H_
