// Lookups in the user's terms: `find ID` says what an id names
// and where it lives; `position-at T` turns a time into the position the
// ledger had reached by then.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "base/time.h"
#include "cli/cli.h"
#include "json/json.h"
#include "replay/lookup.h"

namespace storeledger {

int FindVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 2 || args[1].empty()) {
    return ctx.Fail(absl::InvalidArgumentError("usage: storeledger find ID"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::FindResult> found = FindId((*ledger)->log(), args[1]);
  if (!found.ok()) return ctx.Fail(found.status());
  if (found->matches().empty()) {
    return ctx.Fail(absl::NotFoundError(absl::StrCat(
        "no store, merchant, product, order, withdrawal or command has id ",
        args[1])));
  }
  *ctx.out << ToJson(*found) << "\n";
  return kExitOk;
}

int PositionAtVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() != 2) {
    return ctx.Fail(
        absl::InvalidArgumentError("usage: storeledger position-at T"));
  }
  absl::StatusOr<absl::Time> at = ParseLedgerTime("T", args[1], ctx.zone.zone);
  if (!at.ok()) return ctx.Fail(at.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::PositionAt> answer =
      ResolvePosition((*ledger)->log(), *at, std::nullopt, args[1]);
  if (!answer.ok()) return ctx.Fail(answer.status());
  if (answer->position() == 0) {
    ctx.SayNothingMatched("nothing was recorded at or before that time");
  }
  *ctx.out << ToJson(*answer) << "\n";
  return kExitOk;
}

}  // namespace storeledger
