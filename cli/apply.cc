// storeledger apply [FILE|-]: one JSON result per input line, in order.
#include <fstream>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "cli/line_reader.h"
#include "core/limits.h"
#include "ledger/json.h"

namespace storeledger {

int ApplyVerb(CliContext& ctx) {
  if (absl::Status known = ctx.flags.CheckKnown({}); !known.ok()) {
    return ctx.Fail(known);
  }
  const std::vector<std::string>& args = ctx.flags.positional();
  if (args.size() > 2) {
    return ctx.Fail(absl::InvalidArgumentError("apply takes at most one FILE"));
  }
  std::ifstream file;
  std::istream* in = ctx.in;
  if (args.size() == 2 && args[1] != "-") {
    file.open(args[1]);
    if (!file) {
      return ctx.Fail(absl::InvalidArgumentError(
          absl::StrCat("cannot read ", args[1])));
    }
    in = &file;
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(false);
  if (!ledger.ok()) return ctx.Fail(ledger.status());

  LineReader reader(in, kInputLineBytesMax);
  std::string line;
  bool too_long = false;
  int64_t line_number = 0;
  bool any_invalid = false;
  while (reader.Next(&line, &too_long)) {
    ++line_number;
    v1::CommandResult result;
    if (too_long) {
      result = InvalidResult(
          "", absl::StrCat("line is longer than ", kInputLineBytesMax,
                           " bytes"));
    } else if (absl::StripAsciiWhitespace(line).empty()) {
      continue;  // blank lines are skipped but counted
    } else {
      absl::StatusOr<v1::Command> command = ParseCommandJson(line);
      if (!command.ok()) {
        result = InvalidResult("", command.status().message());
      } else {
        absl::StatusOr<v1::CommandResult> executed = (*ledger)->Execute(*command);
        if (!executed.ok()) {
          // Nothing after an I/O or data error is trustworthy: stop here.
          ctx.out->flush();
          return ctx.Fail(absl::Status(
              executed.status().code(),
              absl::StrCat("line ", line_number, ": ",
                           executed.status().message())));
        }
        result = *std::move(executed);
      }
    }
    if (result.status() == v1::INVALID) any_invalid = true;
    result.set_line(line_number);
    *ctx.out << ToJson(result) << "\n";
  }
  ctx.out->flush();
  return any_invalid ? kExitUsage : kExitOk;
}

}  // namespace storeledger
