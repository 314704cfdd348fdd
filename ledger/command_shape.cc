#include "ledger/command_shape.h"

#include "absl/strings/str_cat.h"
#include "core/limits.h"
#include "storage/event_log.h"

namespace storeledger {

std::string CommandFingerprint(const v1::Command& command) {
  return Sha256(SerializeDeterministic(command));
}

v1::CommandResult InvalidResult(absl::string_view command_id,
                                absl::string_view message) {
  v1::CommandResult result;
  result.set_command_id(std::string(command_id));
  result.set_status(v1::INVALID);
  result.set_message(std::string(message));
  return result;
}

namespace ledger_internal {

// The command id is the idempotency key, so a command whose id is not a valid
// id (R0: 1..kIdBytesMax bytes of printable ASCII, no spaces) cannot be
// recorded under it: it is INVALID, like a missing id.
std::optional<std::string> CommandIdProblem(absl::string_view id) {
  switch (CheckIdBytes(id).problem) {
    case IdCheck::kValid:
      return std::nullopt;
    case IdCheck::kEmpty:
      return "commandId is missing";
    case IdCheck::kTooLong:
      return absl::StrCat("commandId is ", id.size(), " bytes; the limit is ",
                          kIdBytesMax);
    case IdCheck::kBadByte:
      return "commandId must be printable ASCII without spaces";
  }
  return std::nullopt;
}

std::optional<v1::CommandResult> ShapeProblem(const v1::Command& command) {
  // First, so that nothing of an oversized command is decided or stored (its
  // id is not even echoed when it is not a valid one).
  if (const size_t bytes = command.ByteSizeLong(); bytes > kCommandBytesMax) {
    return InvalidResult(
        CommandIdProblem(command.command_id()) ? "" : command.command_id(),
        absl::StrCat("the command is ", bytes, " bytes; the limit is ",
                     kCommandBytesMax, " (core/limits.h kCommandBytesMax)"));
  }
  if (std::optional<std::string> problem =
          CommandIdProblem(command.command_id())) {
    return InvalidResult(command.command_id(), *problem);
  }
  if (!command.has_occurred_at()) {
    return InvalidResult(command.command_id(), "occurredAt is missing");
  }
  if (command.body_case() == v1::Command::BODY_NOT_SET) {
    return InvalidResult(command.command_id(), "command body is missing");
  }
  return std::nullopt;
}

v1::CommandResult ResultOf(const v1::Command& command) {
  v1::CommandResult result;
  result.set_command_id(command.command_id());
  return result;
}

}  // namespace ledger_internal
}  // namespace storeledger
