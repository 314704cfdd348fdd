// storeledger apply [FILE|-]: one JSON result per input line, in order.
#include <fstream>
#include <iostream>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "cli/line_reader.h"
#include "core/limits.h"
#include "ledger/json.h"
#include "ledger/ledger.h"

namespace storeledger {

// Lines `apply` hands to ExecuteBatch at once at most: several groups, so
// that one is decided while the one before it is written; and bytes of
// those lines at most, so that a file of long lines is not held whole.
inline constexpr size_t kApplyBatchLines = 4 * kGroupCommandsMax;
inline constexpr size_t kApplyBatchBytesMax = 16 << 20;

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

  // Lines are executed in batches (Ledger::ExecuteBatch: group commit, one
  // sync per group), each result printed only once its group is durable. A
  // batch closes at kApplyBatchLines lines or kApplyBatchBytesMax bytes, or
  // as soon as no more input is ready, so that a producer feeding lines one
  // at a time gets each answer without waiting for lines it has not sent.
  struct Line {
    int64_t number = 0;
    std::optional<v1::CommandResult> answered;  // else: the next command
  };
  std::vector<Line> lines;
  std::vector<v1::Command> commands;
  bool any_invalid = false;
  auto execute = [&]() -> absl::Status {
    std::vector<absl::StatusOr<v1::CommandResult>> executed =
        (*ledger)->ExecuteBatch(std::move(commands));
    commands.clear();
    size_t next = 0;
    for (Line& line : lines) {
      v1::CommandResult result;
      if (line.answered.has_value()) {
        result = *std::move(line.answered);
      } else {
        absl::StatusOr<v1::CommandResult>& done = executed[next++];
        if (!done.ok()) {
          // Nothing after an I/O or data error is trustworthy: stop here.
          ctx.out->flush();
          return absl::Status(done.status().code(),
                              absl::StrCat("line ", line.number, ": ",
                                           done.status().message()));
        }
        result = *std::move(done);
      }
      if (result.status() == v1::INVALID) any_invalid = true;
      result.set_line(line.number);
      *ctx.out << ToJson(result) << "\n";
    }
    lines.clear();
    ctx.out->flush();
    return absl::OkStatus();
  };

  LineReader reader(in, kInputLineBytesMax);
  std::string line;
  bool too_long = false;
  int64_t line_number = 0;
  size_t bytes = 0;  // of the lines waiting in `lines`
  while (true) {
    if (!lines.empty() &&
        (lines.size() >= kApplyBatchLines || bytes >= kApplyBatchBytesMax ||
         in->rdbuf()->in_avail() <= 0)) {
      bytes = 0;
      if (absl::Status s = execute(); !s.ok()) return ctx.Fail(s);
    }
    if (!reader.Next(&line, &too_long)) break;
    ++line_number;
    bytes += line.size();
    if (too_long) {
      lines.push_back({line_number,
                       InvalidResult("", absl::StrCat("line is longer than ",
                                                      kInputLineBytesMax,
                                                      " bytes"))});
    } else if (absl::StripAsciiWhitespace(line).empty()) {
      continue;  // blank lines are skipped but counted
    } else {
      absl::StatusOr<v1::Command> command = ParseCommandJson(line);
      if (!command.ok()) {
        lines.push_back(
            {line_number, InvalidResult("", command.status().message())});
      } else {
        lines.push_back({line_number, std::nullopt});
        commands.push_back(*std::move(command));
      }
    }
  }
  if (!lines.empty()) {
    if (absl::Status s = execute(); !s.ok()) return ctx.Fail(s);
  }
  ctx.out->flush();
  return any_invalid ? kExitUsage : kExitOk;
}

}  // namespace storeledger
