// Placeholder verbs; replaced by their implementation.
#include "cli/cli.h"

namespace storeledger {
int PostingsVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
int BalancesVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
int StatementVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
int AuditVerb(CliContext& ctx) { return ctx.Fail(absl::UnimplementedError("not built yet")); }
}  // namespace storeledger
