// Fuzz target: the JSON command parser (`apply`'s input, ledger/json.h).
//
// Any bytes: ParseCommandJson never crashes; it either returns a Command with
// a command id, an occurredAt and a body, or kInvalidArgument with a message.
// A parsed command prints (ToJson) and parses back to the same command, and
// Decide judges it against empty state without error (a rule may reject it).
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
#include "google/protobuf/util/message_differencer.h"
#include "ledger/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // `apply` hands the parser lines of at most kInputLineBytesMax bytes.
  if (size > storeledger::kInputLineBytesMax) return 0;
  const absl::string_view line(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<storeledger::v1::Command> command =
      storeledger::ParseCommandJson(line);
  if (!command.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(command.status()), command.status());
    FUZZ_CHECK(!command.status().message().empty(), "an error says what");
    return 0;
  }
  FUZZ_CHECK(!command->command_id().empty(), "parsed without commandId");
  FUZZ_CHECK(command->has_occurred_at(), "parsed without occurredAt");
  FUZZ_CHECK(command->body_case() != storeledger::v1::Command::BODY_NOT_SET,
             "parsed without a body");

  const std::string printed = storeledger::ToJson(*command);
  absl::StatusOr<storeledger::v1::Command> again =
      storeledger::ParseCommandJson(printed);
  FUZZ_CHECK(again.ok(), again.status() << " parsing our own " << printed);
  FUZZ_CHECK(google::protobuf::util::MessageDifferencer::Equals(*again,
                                                                *command),
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
