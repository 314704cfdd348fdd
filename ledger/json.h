// The one JSON codec: protobuf's JSON mapping (lowerCamel names, enum names as
// written in DESIGN.md, int64 as strings on output, RFC 3339 timestamps).
#ifndef STORELEDGER_LEDGER_JSON_H_
#define STORELEDGER_LEDGER_JSON_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "google/protobuf/message.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Parses one `apply` line into a Command. kInvalidArgument, with a message
// naming what is wrong, when the line is not JSON of a Command (unknown
// fields and enum values included) or lacks commandId, occurredAt or a body.
absl::StatusOr<v1::Command> ParseCommandJson(absl::string_view line);

// One-line JSON of `message`, every field printed (zeros included).
std::string ToJson(const google::protobuf::Message& message);

// RFC 3339 parse for flags (--as-of); the message names the flag.
absl::StatusOr<absl::Time> ParseTimeFlag(absl::string_view flag,
                                         absl::string_view value);

}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_JSON_H_
