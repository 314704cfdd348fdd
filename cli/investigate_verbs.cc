// Placeholder verbs; replaced by their implementation.
#include "cli/cli.h"

namespace storeledger {
int RebuildVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
int ExplainVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
int DiffVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
}  // namespace storeledger
