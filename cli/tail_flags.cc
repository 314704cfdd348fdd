#include "cli/tail_flags.h"

#include <string>

#include "base/status_macros.h"
#include "google/protobuf/io/coded_stream.h"

namespace storeledger {

absl::StatusOr<TailFlags> TailFlags::Parse(const Flags& flags) {
  if (!flags.Has("from-position")) {
    return absl::InvalidArgumentError(
        "--from-position is required (0 for the whole log)");
  }
  const std::string format = flags.GetOr("format", "jsonl");
  if (format != "delimited" && format != "jsonl") {
    return absl::InvalidArgumentError(
        "--format must be jsonl or delimited, got '" + format + "'");
  }
  TailFlags tail;
  tail.delimited = format == "delimited";
  ASSIGN_OR_RETURN(std::optional<uint64_t> from,
                   flags.GetUint("from-position"));
  tail.from_position = from.value_or(0);
  ASSIGN_OR_RETURN(tail.max_events, flags.GetUint("max-events"));
  tail.follow = flags.Has("follow");
  return tail;
}

void WriteDelimited(std::ostream& out, absl::string_view raw) {
  uint8_t varint[5];  // a varint32 is at most 5 bytes
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(raw.size()), varint);
  out.write(reinterpret_cast<const char*>(varint), end - varint);
  out.write(raw.data(), static_cast<std::streamsize>(raw.size()));
}

}  // namespace storeledger
