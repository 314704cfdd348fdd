// storeledger apply [FILE|-]: one JSON result per input line, in order.
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "cli/line_reader.h"
#include "core/limits.h"
#include "json/json.h"
#include "ledger/ledger.h"

namespace storeledger {

// Lines `apply` hands to ExecuteBatch at once at most: several groups, so
// that one is decided while the one before it is written; and bytes of
// those lines at most, so that a file of long lines is not held whole.
inline constexpr size_t kApplyBatchLines = 4 * kGroupCommandsMax;
inline constexpr size_t kApplyBatchBytesMax = 16 << 20;

int ApplyVerb(CliContext& ctx) {
  if (absl::Status known = ctx.CheckFlags(); !known.ok()) {
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
      return ctx.Fail(
          absl::InvalidArgumentError(absl::StrCat("cannot read ", args[1])));
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
  // While a full batch executes (on a helper thread) the next one is read
  // and parsed; it starts only once the one before it is known to have no
  // error, and results are printed in line order.
  struct Line {
    int64_t number = 0;
    std::optional<v1::CommandResult> answered;  // else: the next command
  };
  struct Batch {
    std::vector<Line> lines;
    std::vector<v1::Command> commands;
    std::vector<absl::StatusOr<v1::CommandResult>> results;
    size_t bytes = 0;
    std::thread worker;
  };
  Ledger& l = **ledger;
  bool any_invalid = false;
  auto run = [&l](Batch& batch) {
    batch.results = l.ExecuteBatch(std::move(batch.commands));
  };
  // The first failed line of an executed batch, or nullptr.
  auto first_error = [](const Batch& batch) -> const Line* {
    size_t next = 0;
    for (const Line& line : batch.lines) {
      if (line.answered.has_value()) continue;
      if (!batch.results[next++].ok()) return &line;
    }
    return nullptr;
  };
  // Prints the results up to the first error; returns that error.
  auto print = [&](Batch& batch) -> absl::Status {
    size_t next = 0;
    for (Line& line : batch.lines) {
      v1::CommandResult result;
      if (line.answered.has_value()) {
        result = *std::move(line.answered);
      } else {
        absl::StatusOr<v1::CommandResult>& done = batch.results[next++];
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
    ctx.out->flush();
    return absl::OkStatus();
  };

  LineReader reader(in, kInputLineBytesMax);
  std::string text;
  bool too_long = false;
  int64_t line_number = 0;
  std::unique_ptr<Batch> running;  // executing on its worker thread
  bool eof = false;
  while (!eof) {
    auto batch = std::make_unique<Batch>();
    bool input_waits = false;
    while (batch->lines.size() < kApplyBatchLines &&
           batch->bytes < kApplyBatchBytesMax) {
      if (!batch->lines.empty() && in->rdbuf()->in_avail() <= 0) {
        input_waits = true;
        break;
      }
      if (!reader.Next(&text, &too_long)) {
        eof = true;
        break;
      }
      ++line_number;
      batch->bytes += text.size();
      if (too_long) {
        batch->lines.push_back(
            {line_number,
             InvalidResult("", absl::StrCat("line is longer than ",
                                            kInputLineBytesMax, " bytes"))});
      } else if (absl::StripAsciiWhitespace(text).empty()) {
        continue;  // blank lines are skipped but counted
      } else {
        absl::StatusOr<v1::Command> command = ParseCommandJson(text);
        if (!command.ok()) {
          batch->lines.push_back(
              {line_number, InvalidResult("", command.status().message())});
        } else {
          batch->lines.push_back({line_number, std::nullopt});
          batch->commands.push_back(*std::move(command));
        }
      }
    }
    if (running != nullptr) {
      running->worker.join();
      if (first_error(*running) != nullptr) {
        return ctx.Fail(print(*running));  // this batch is not executed
      }
    }
    if (batch->lines.empty()) break;
    if (input_waits || eof) {
      // The producer may be waiting for these answers: now, in order.
      if (running != nullptr) {
        if (absl::Status s = print(*running); !s.ok()) return ctx.Fail(s);
        running.reset();
      }
      run(*batch);
      if (absl::Status s = print(*batch); !s.ok()) return ctx.Fail(s);
      continue;
    }
    Batch& next = *batch;
    next.worker = std::thread([&run, &next] { run(next); });
    if (running != nullptr) {
      if (absl::Status s = print(*running); !s.ok()) {
        next.worker.join();  // (cannot happen: `running` had no error)
        return ctx.Fail(s);
      }
    }
    running = std::move(batch);
  }
  if (running != nullptr) {
    if (running->worker.joinable()) running->worker.join();
    if (absl::Status s = print(*running); !s.ok()) return ctx.Fail(s);
  }
  ctx.out->flush();
  return any_invalid ? kExitUsage : kExitOk;
}

}  // namespace storeledger
