// Shared by the tests: a temporary directory per test (a real RocksDB goes
// there), a fixed clock, and helpers to write commands as DESIGN.md's JSON.
#ifndef STORELEDGER_TESTS_SUPPORT_TEST_SUPPORT_H_
#define STORELEDGER_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "cli/simulate.h"
#include "ledger/ledger.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger::testing {

// A fresh directory under the test temp dir, removed with everything in it
// when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(absl::string_view name) const;

 private:
  std::string path_;
};

class FixedClock : public Clock {
 public:
  explicit FixedClock(absl::Time now) : now_(now) {}
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_;
};

// 2024-MM-DD HH:MM:SS at +08:00 (China time), as the article's calendar.
absl::Time China(int month, int day, int hour = 0, int minute = 0,
                 int second = 0);
// The same instant as RFC 3339 with +08:00.
std::string ChinaText(absl::Time t);

// Parses a Command from DESIGN.md's JSON; fails the test on a parse error.
v1::Command CommandFromJson(const std::string& json);

// A RocksDB database made by someone else (as `ldb --create_if_missing put
// foo bar` makes one) in `dir`, with the column families given (the first
// is "default"), holding foo=bar in "default" when `put` is set. Fails the
// test if RocksDB does.
void MakeForeignRocksDb(const std::string& dir,
                        const std::vector<std::string>& families = {"default"},
                        bool put = true);

// Full compactions of the log's column families one after another until
// `stop`: every table file is rewritten and deleted again and again (a
// reader of those files beside the live ledger must not notice). Each
// compaction must succeed.
void CompactUntil(const EventLog& log, const std::atomic<bool>& stop);

// Runs the CLI in-process: exit status, stdout and stderr.
struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
  std::vector<std::string> lines() const;  // stdout split on '\n'
};
CliRun RunStoreledger(const std::vector<std::string>& args,
                      const std::string& stdin_text = "");

// Runs a simulated plan through Ledger::Execute, one command at a time, as
// `simulate` runs it (cli/simulate.h SimulatedWithdrawals); fails the test
// when the ledger fails a command.
void RunSimulatedPlan(Ledger& ledger, const std::vector<SimulatedStep>& steps);

// The seed of a randomized test: the number in the environment variable
// `variable` when it holds one (to repeat a run), else a fresh one -- and a
// test failure when the variable is set to something else. The caller
// prints it with the variable's name.
uint64_t SeedFromEnvironment(const char* variable = "STORELEDGER_SEED");

// Asks `done` every `poll` until it answers true (then true) or `timeout`
// has passed (then false).
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout,
             absl::Duration poll = absl::Milliseconds(20));

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_TEST_SUPPORT_H_
