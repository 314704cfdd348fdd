#include "storage/format.h"

#include "storage/event_log.h"

namespace storeledger::format {

std::string StreamIndexPrefix(absl::string_view stream_id) {
  std::string key(stream_id);
  key.push_back(kStreamIndexSeparator);
  return key;
}

std::string StreamIndexKey(absl::string_view stream_id, uint64_t version) {
  return StreamIndexPrefix(stream_id) + PositionKey(version);
}

absl::string_view HashOfStoredEnvelope(absl::string_view stored_envelope) {
  if (stored_envelope.size() < kHashBytes) return absl::string_view();
  return stored_envelope.substr(stored_envelope.size() - kHashBytes);
}

}  // namespace storeledger::format
