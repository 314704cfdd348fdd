// Fuzz target: the JSON codec (`apply`'s input, json/json.h), its fast
// paths held against protobuf's own.
//
// Any bytes as a line: ParseCommandJson never crashes, and says exactly what
// protobuf's JsonStringToMessage path (ProtobufParseCommandJson) says: the
// same error, or an equal Command. When the fast parser takes the line, its
// message equals protobuf's parse of it. A parsed command has a command id,
// an occurredAt and a body; ToJson prints it byte for byte as protobuf does,
// and it parses back to itself; Decide judges it against empty state without
// error (a rule may reject it).
//
// The same bytes read as a binary CommandResult, Envelope, StoreState and
// Explanation (when they parse): ToJson prints each as MessageToJsonString
// does. Binary input reaches what JSON cannot: unknown fields, unknown enum
// numbers, map entries, timestamps out of range.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "core/decide.h"
#include "core/limits.h"
#include "core/policy.h"
#include "core/state.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "json/json.h"

namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::storeledger::ToJson;
using ::storeledger::json_internal::ProtobufToJson;

void CheckPrintsAsProtobuf(const google::protobuf::Message& message) {
  const std::string ours = ToJson(message);
  const std::string reference = ProtobufToJson(message);
  FUZZ_CHECK(ours == reference, "ToJson printed\n"
                                    << ours << "\nprotobuf printed\n"
                                    << reference << "\nfor "
                                    << message.ShortDebugString());
}

void CheckBinary(absl::string_view bytes, google::protobuf::Message* message) {
  if (message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    CheckPrintsAsProtobuf(*message);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // `apply` hands the parser lines of at most kInputLineBytesMax bytes.
  if (size > storeledger::kInputLineBytesMax) return 0;
  // protobuf logs every string that is not UTF-8 it meets; the checks say
  // what matters.
  // An object, not a leaked pointer: LeakSanitizer reports the latter once
  // the optimizer drops the pointer.
  static google::protobuf::LogSilencer quiet;
  const absl::string_view line(reinterpret_cast<const char*>(data), size);

  // The fast parser alone: when it takes the line, protobuf parses it to the
  // same message.
  storeledger::v1::Command fast;
  if (storeledger::json_internal::FastJsonToMessage(line, &fast)) {
    storeledger::v1::Command reference;
    google::protobuf::util::JsonParseOptions options;
    const auto status = google::protobuf::util::JsonStringToMessage(
        std::string(line), &reference, options);
    FUZZ_CHECK(status.ok(), "the fast path took a line protobuf refuses ("
                                << status.message().ToString()
                                << "): " << line);
    FUZZ_CHECK(MessageDifferencer::Equals(fast, reference),
               "fast " << fast.ShortDebugString() << " protobuf "
                       << reference.ShortDebugString() << " for " << line);
    CheckPrintsAsProtobuf(fast);
  }

  // The whole codec against protobuf's path.
  absl::StatusOr<storeledger::v1::Command> command =
      storeledger::ParseCommandJson(line);
  const absl::StatusOr<storeledger::v1::Command> reference =
      storeledger::json_internal::ProtobufParseCommandJson(line);
  FUZZ_CHECK(command.status() == reference.status(),
             "ParseCommandJson said " << command.status() << ", protobuf "
                                      << reference.status() << " for " << line);

  storeledger::v1::CommandResult result;
  CheckBinary(line, &result);
  storeledger::v1::Envelope envelope;
  CheckBinary(line, &envelope);
  storeledger::v1::StoreState state;
  CheckBinary(line, &state);
  storeledger::v1::Explanation explanation;
  CheckBinary(line, &explanation);

  if (!command.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(command.status()), command.status());
    FUZZ_CHECK(!command.status().message().empty(), "an error says what");
    return 0;
  }
  FUZZ_CHECK(MessageDifferencer::Equals(*command, *reference),
             "ParseCommandJson gave "
                 << command->ShortDebugString() << ", protobuf "
                 << reference->ShortDebugString() << " for " << line);
  FUZZ_CHECK(!command->command_id().empty(), "parsed without commandId");
  FUZZ_CHECK(command->has_occurred_at(), "parsed without occurredAt");
  FUZZ_CHECK(command->body_case() != storeledger::v1::Command::BODY_NOT_SET,
             "parsed without a body");

  CheckPrintsAsProtobuf(*command);
  const std::string printed = ToJson(*command);
  absl::StatusOr<storeledger::v1::Command> again =
      storeledger::ParseCommandJson(printed);
  FUZZ_CHECK(again.ok(), again.status() << " parsing our own " << printed);
  FUZZ_CHECK(MessageDifferencer::Equals(*again, *command),
             "round trip changed " << printed);

  static const storeledger::Policy* const policy =
      new storeledger::Policy(storeledger::DefaultPolicy());
  absl::StatusOr<storeledger::Decision> decision =
      storeledger::Decide(*command, storeledger::EmptyState(), *policy);
  FUZZ_CHECK(decision.ok(), decision.status());
  if (!decision->accepted) {
    FUZZ_CHECK(!decision->rule.empty() && !decision->message.empty() &&
                   decision->events.empty(),
               "a rejection names its rule and says why: " << printed);
  }
  return 0;
}
