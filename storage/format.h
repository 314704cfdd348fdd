// The byte layout of the keys and values the EventLog writes, as
// storage/FORMAT.md specifies them, defined once: for the EventLog that
// writes them and for the readers that walk the column families directly
// (replay/audit.cc, replay/feed.cc), as LevelDB's dbformat.h is for its
// internal keys. Projection keys are replay/'s layout, not this one.
//
//   events:  PositionKey(position) (kPositionBytes, big-endian) -> envelope
//   streams: "<stream id>" -> StreamHead,
//            StreamIndexKey(stream id, version) -> PositionKey(position)
//   meta:    kMetaHeadKey -> PositionKey(head position) + head hash
//
// Pure functions and constants; thread-safe.
#ifndef STORELEDGER_STORAGE_FORMAT_H_
#define STORELEDGER_STORAGE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace storeledger::format {

// A position or a stream version as a key or value: 8 bytes, big-endian
// (PositionKey in storage/event_log.h).
inline constexpr size_t kPositionBytes = 8;
// Every hash of the log (an envelope's hash and prev_hash, the head's):
// SHA-256.
inline constexpr size_t kHashBytes = 32;
// Between a stream id and the version in a stream index key; a stream id
// never contains it.
inline constexpr char kStreamIndexSeparator = '\0';
// The key of the head in the meta column family; its value is
// kHeadValueBytes long.
inline constexpr char kMetaHeadKey[] = "head";
// How far "streams" and "projections" are written, with write-behind
// (storage/FORMAT.md "Written behind the log").
inline constexpr char kMetaDerivedKey[] = "derived";
inline constexpr size_t kHeadValueBytes = kPositionBytes + kHashBytes;

// "<stream id>\0": every index entry of the stream starts with it.
std::string StreamIndexPrefix(absl::string_view stream_id);
// "<stream id>\0<version, 8 bytes big-endian>".
std::string StreamIndexKey(absl::string_view stream_id, uint64_t version);

// The hash a stored envelope ends with: its last kHashBytes bytes, the hash
// field's value (storage/FORMAT.md "Envelope"), unchecked. Empty when
// `stored_envelope` is shorter than a hash (no checked envelope is).
absl::string_view HashOfStoredEnvelope(absl::string_view stored_envelope);

}  // namespace storeledger::format

#endif  // STORELEDGER_STORAGE_FORMAT_H_
