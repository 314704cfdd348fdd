// Internal to ledger/: helpers shared by ledger.cc (deciding one command)
// and group_commit.cc (the queue, the leaders and the writer thread).
#ifndef STORELEDGER_LEDGER_GROUP_COMMIT_H_
#define STORELEDGER_LEDGER_GROUP_COMMIT_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger::ledger_internal {

// Why `id` cannot be a command id (R0), or nullopt.
std::optional<std::string> CommandIdProblem(absl::string_view id);

// The INVALID answer for a command that cannot be recorded at all (over
// kCommandBytesMax, or no valid commandId, occurredAt or body); nullopt when
// it can be decided.
std::optional<v1::CommandResult> ShapeProblem(const v1::Command& command);

// A result naming the command.
v1::CommandResult ResultOf(const v1::Command& command);

}  // namespace storeledger::ledger_internal

#endif  // STORELEDGER_LEDGER_GROUP_COMMIT_H_
