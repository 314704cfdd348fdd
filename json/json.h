// The one JSON codec: protobuf's JSON mapping (lowerCamel names, enum names as
// written in DESIGN.md, int64 as strings on output, RFC 3339 timestamps).
//
// Both directions have a fast path (json/parse.cc and json/print.cc say
// what each covers) that gives exactly protobuf's answer and hands
// everything it is not certain of to protobuf itself. Thread-safe: any
// thread may call any function here.
#ifndef STORELEDGER_JSON_JSON_H_
#define STORELEDGER_JSON_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Parses one `apply` line into a Command. kInvalidArgument, with a message
// naming what is wrong, when the line is not JSON of a Command (unknown
// fields and enum values included, and a key given twice in one object,
// which protobuf alone would let the last one win) or lacks commandId,
// occurredAt or a body.
absl::StatusOr<v1::Command> ParseCommandJson(absl::string_view line);

// One-line JSON of `message`, every field printed (zeros included).
std::string ToJson(const google::protobuf::Message& message);

// The two halves of the codec, exposed so that tests, the fuzzer and the
// benchmark can hold the fast paths against protobuf. Not for other callers:
// ParseCommandJson and ToJson are the codec.
namespace json_internal {

// ParseCommandJson and ToJson through protobuf's JsonStringToMessage and
// MessageToJsonString only (the parse after the duplicate-key check): the
// reference the fast paths must equal, and what they fall back to.
absl::StatusOr<v1::Command> ProtobufParseCommandJson(absl::string_view line);
std::string ProtobufToJson(const google::protobuf::Message& message);

// The fast parser alone. True when it parsed `json` into `message` (cleared
// first) and is certain protobuf would have parsed it to an equal message;
// false when it is not certain (protobuf may accept or reject the input),
// leaving `message` in an unspecified state.
bool FastJsonToMessage(absl::string_view json,
                       google::protobuf::Message* message);

// The fast printer alone. True when it appended to `out` exactly what
// MessageToJsonString prints for `message` with ToJson's options; false when
// it is not certain, leaving `out` in an unspecified state.
bool FastMessageToJson(const google::protobuf::Message& message,
                       std::string* out);

}  // namespace json_internal
}  // namespace storeledger

#endif  // STORELEDGER_JSON_JSON_H_
