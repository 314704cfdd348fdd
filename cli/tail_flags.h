// The flags `tail` reads, on the local ledger (cli/read_verbs.cc) and through
// --server (cli/client.cc), parsed in one place with the same errors, and
// the length-delimited form both print.
#ifndef STORELEDGER_CLI_TAIL_FLAGS_H_
#define STORELEDGER_CLI_TAIL_FLAGS_H_

#include <cstdint>
#include <optional>
#include <ostream>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/flags.h"

namespace storeledger {

struct TailFlags {
  // --from-position N (required: 0 for the whole log).
  uint64_t from_position = 0;
  // --format delimited (varint-length-prefixed envelopes) or jsonl.
  // Default: jsonl.
  bool delimited = false;
  // --max-events N: stop after N envelopes. Default: no limit.
  std::optional<uint64_t> max_events;
  // --follow: wait for new events until stopped.
  bool follow = false;

  // kInvalidArgument naming the flag that is missing or malformed.
  static absl::StatusOr<TailFlags> Parse(const Flags& flags);
};

// `raw` prefixed by its length as a varint32 (protobuf's delimited form).
void WriteDelimited(std::ostream& out, absl::string_view raw);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_TAIL_FLAGS_H_
