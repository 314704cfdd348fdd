// crash_child --db DIR --input FILE --threads N
//
// The concurrent writer that tests/crash_test.cc kills: it reads the JSON
// commands of FILE (one per line, as `apply` takes them), deals them to N
// threads by the first store each names (so one store's commands keep their
// order), and has every thread call Ledger::Execute on one shared Ledger, so
// that appends from several threads meet in the ledger's group commit. After
// Execute returns it prints the result as one JSON line (with "line" = the
// input line number) in a single write(2): a printed line is an
// acknowledgement. Exits 0 when every command is done, 1 on an error.
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/decide.h"
#include "json/json.h"
#include "ledger/ledger.h"

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "crash_child: " << message << "\n";
  std::_Exit(1);
}

void WriteAll(const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n =
        ::write(STDOUT_FILENO, text.data() + done, text.size() - done);
    if (n <= 0) Die("write to stdout failed");
    done += static_cast<size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string db, input;
  int threads = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--db") {
      db = argv[i + 1];
    } else if (flag == "--input") {
      input = argv[i + 1];
    } else if (flag == "--threads") {
      if (!absl::SimpleAtoi(argv[i + 1], &threads) || threads < 1) {
        Die("--threads must be a positive number");
      }
    } else {
      Die(absl::StrCat("unknown flag ", flag));
    }
  }
  if (db.empty() || input.empty()) {
    Die("usage: crash_child --db DIR --input FILE [--threads N]");
  }

  std::ifstream in(input);
  if (!in) Die(absl::StrCat("cannot read ", input));
  std::vector<std::vector<std::pair<int64_t, storeledger::v1::Command>>> work(
      static_cast<size_t>(threads));
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    absl::StatusOr<storeledger::v1::Command> command =
        storeledger::ParseCommandJson(line);
    if (!command.ok()) {
      Die(absl::StrCat("line ", line_number, ": ", command.status().message()));
    }
    const std::vector<std::string> stores = storeledger::StoreIdsOf(*command);
    const size_t slot = stores.empty()
                            ? 0
                            : std::hash<std::string>()(stores.front()) %
                                  static_cast<size_t>(threads);
    work[slot].emplace_back(line_number, *std::move(command));
  }

  absl::StatusOr<std::unique_ptr<storeledger::Ledger>> ledger =
      storeledger::Ledger::Open(db);
  if (!ledger.ok()) Die(ledger.status().ToString());

  std::mutex out_mu;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (const auto& [number, command] : work[static_cast<size_t>(t)]) {
        absl::StatusOr<storeledger::v1::CommandResult> result =
            (*ledger)->Execute(command);
        if (!result.ok()) {
          Die(absl::StrCat("line ", number, ": ", result.status().ToString()));
        }
        result->set_line(number);
        const std::string text = storeledger::ToJson(*result) + "\n";
        std::lock_guard<std::mutex> lock(out_mu);
        WriteAll(text);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  return 0;
}
