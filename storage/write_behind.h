// Internal to storage/: the write-behind window of EventLog (DESIGN.md §3
// "What one append writes", storage/FORMAT.md "Written behind the log").
//
// With EventLogOptions::write_behind on, an append's synced WriteBatch holds
// what cannot be recomputed from the log (the envelopes, meta "head", the
// outcomes, the Merkle nodes); its derived writes -- the stream index, the
// stream heads and the projections -- go to a DerivedTable in memory, each
// version tagged with the number of the append that wrote it (its write
// sequence), so that a read bounded by the durable head skips versions of
// appends not yet synced. Every so many events (the write-behind distance)
// the durable part of the table is frozen and written as one sorted SST
// file per column family, ingested in one call together with meta
// "derived", the position those files reach. A crash loses the table; the
// open after it folds the log from meta "derived" to the head into a new
// one before answering anything.
#ifndef STORELEDGER_STORAGE_WRITE_BEHIND_H_
#define STORELEDGER_STORAGE_WRITE_BEHIND_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/string_view.h"
#include "storage/overlay_iterator.h"

namespace storeledger::storage_internal {

// The column families written behind, as indexes into DerivedTable.
enum DerivedFamily : size_t {
  kDerivedStreams = 0,
  kDerivedProjections = 1,
  kDerivedFamilyCount
};

// One version of a key: its value, or nullopt for a delete (a tombstone,
// which hides older versions and what RocksDB holds).
struct DerivedVersion {
  uint64_t write_seq = 0;
  std::optional<std::string> value;
};

// What a merged read found in the tables: nothing (read RocksDB), a value,
// or a delete.
struct DerivedLookup {
  bool found = false;
  std::optional<std::string> value;  // nullopt with found: deleted
};

// Visible entries of a key range, newest table first: key -> value or
// nullopt (deleted). A scan lays it over RocksDB's iterator.
using DerivedEntries = KeyOverlay;

// The derived writes of one window. Not thread-safe: EventLog guards the
// active table with its window mutex; a frozen table is not changed once
// published.
class DerivedTable {
 public:
  // Adds a version of `key` written by append `write_seq` (not lower than
  // any added before). A second write of a key by the same append replaces
  // the first (a delete then a put of one key leaves the put).
  void Add(DerivedFamily family, std::string key,
           std::optional<std::string> value, uint64_t write_seq);

  // The newest version of `key` written by an append no later than
  // `max_write_seq`, or null.
  const DerivedVersion* Find(DerivedFamily family, absl::string_view key,
                             uint64_t max_write_seq) const;

  // Adds to *entries the newest visible version (<= max_write_seq) of each
  // key in [begin, end) (end empty: no upper bound) that *entries does not
  // hold yet: called newest table first, so a newer table's version wins.
  void Collect(DerivedFamily family, absl::string_view begin,
               absl::string_view end, uint64_t max_write_seq,
               DerivedEntries* entries) const;

  // Moves the versions written after `write_seq` to a new table, which it
  // returns: this one keeps what is durable at the cut.
  std::unique_ptr<DerivedTable> SplitAfter(uint64_t write_seq);

  // For the SST files: `fn(key, newest version)` in key order.
  template <typename Fn>
  void ForEachNewest(DerivedFamily family, Fn fn) const {
    for (const auto& [key, versions] : maps_[family]) {
      fn(key, versions.back());
    }
  }

  bool empty() const;
  bool empty(DerivedFamily family) const { return maps_[family].empty(); }
  // Keys and values of every version kept (the write-behind's memory).
  size_t bytes() const { return bytes_; }

 private:
  using Map =
      absl::btree_map<std::string, std::vector<DerivedVersion>, std::less<>>;
  Map maps_[kDerivedFamilyCount];
  size_t bytes_ = 0;
};

// A frozen table and where it is in its way to RocksDB.
struct FrozenTable {
  std::shared_ptr<const DerivedTable> table;
  // RocksDB's latest sequence number once its files were ingested: a
  // snapshot at or past it sees them, so a reader pinned there skips the
  // table. 0 while the ingestion is under way.
  uint64_t ingested_at = 0;
};

// What one read point reads before RocksDB: the tables, newest first, and
// the last append whose versions it sees (EventLog::ReadPoint).
struct DerivedView {
  std::vector<std::shared_ptr<const DerivedTable>> tables;
  uint64_t max_write_seq = 0;
};

}  // namespace storeledger::storage_internal

#endif  // STORELEDGER_STORAGE_WRITE_BEHIND_H_
