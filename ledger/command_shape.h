// A command's shape, before anything is decided: whether it can be recorded
// at all (size, command id, occurredAt, body), its fingerprint (the body of
// its idempotency key) and the results that name it. Pure functions;
// thread-safe.
#ifndef STORELEDGER_LEDGER_COMMAND_SHAPE_H_
#define STORELEDGER_LEDGER_COMMAND_SHAPE_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// SHA-256 of the command's deterministic serialization (idempotency key body).
std::string CommandFingerprint(const v1::Command& command);

// The INVALID result for a command that failed shape parsing.
v1::CommandResult InvalidResult(absl::string_view command_id,
                                absl::string_view message);

namespace ledger_internal {

// Why `id` cannot be a command id (R0), or nullopt.
std::optional<std::string> CommandIdProblem(absl::string_view id);

// The INVALID answer for a command that cannot be recorded at all (over
// kCommandBytesMax, or no valid commandId, occurredAt or body); nullopt when
// it can be decided.
std::optional<v1::CommandResult> ShapeProblem(const v1::Command& command);

// A result naming the command.
v1::CommandResult ResultOf(const v1::Command& command);

}  // namespace ledger_internal
}  // namespace storeledger

#endif  // STORELEDGER_LEDGER_COMMAND_SHAPE_H_
