// Process crashes: the real writer, in a child process, is killed with SIGKILL
// at random moments, many times over one ledger. After each kill the ledger
// is reopened and checked (tests/support/ledger_check.h): the chain verifies
// from position 1, every command whose result line was printed is there with
// the printed positions, no command is half there (an upgrade is in both
// streams or neither), the audit passes and projections equal folds. Then the
// writer is started again on the commands not yet acknowledged (retries of
// commands that landed unacknowledged are replays: idempotency).
//
// Two writers: `storeledger apply FILE` (the CLI, one command at a time), and
// tests/tools/crash_child (several threads on one Ledger, so that appends
// meet in the group commit).
//
// Seeded and bounded in time. STORELEDGER_CRASH_SEED=S repeats a run's
// command stream and kill schedule (kill moments are wall-clock, so the exact
// interleaving differs); STORELEDGER_CRASH_SECONDS=N changes the time budget.
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/simulate.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "tests/support/child_process.h"
#include "tests/support/ledger_check.h"
#include "tests/support/test_support.h"

#ifndef STORELEDGER_CRASH_CHILD
#error "CMake defines STORELEDGER_CRASH_CHILD (the crash_child binary)"
#endif

namespace storeledger {
namespace {

// The last 16 KiB of a child's stderr (a sanitizer's report, say), for the
// failure message: the test's temporary directory is gone afterwards.
std::string StderrTail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  constexpr size_t kTailBytes = 16 * 1024;
  if (text.size() > kTailBytes) text = text.substr(text.size() - kTailBytes);
  return text;
}

using ::storeledger::testing::AcknowledgedResults;
using ::storeledger::testing::ChildOptions;
using ::storeledger::testing::ChildProcess;
using ::storeledger::testing::RecoveryCheckOptions;
using ::storeledger::testing::RecoveryCheckStats;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// Stores in one ledger's planned stream (~60 commands each).
constexpr int kPlannedStores = 100;
// Lines handed to one start of the writer: more than it gets through before
// most kills, few enough that it starts quickly.
constexpr size_t kLinesPerStart = 2500;
// Kill moments: uniform in [0, D] after the start, except that one start in
// kEarlyKillOneIn is killed within kEarlyKillMaxMs, while the database is
// still opening or recovering. D starts at kKillDelayStartMs and adapts to
// the writer's speed (a sanitizer build is several times slower): it grows
// when a start is killed before its first result and shrinks when the
// writer gets through all its input first, so that kills land across the
// writer's whole run on any build.
constexpr int kKillDelayStartMs = 500;
constexpr int kKillDelayMinMs = 50;
constexpr int kKillDelayMaxMs = 20'000;
constexpr int kEarlyKillOneIn = 5;
constexpr int kEarlyKillMaxMs = 25;
// The full audit runs after one kill in kAuditEvery (and after the last);
// the other checks after every kill.
constexpr int kAuditEvery = 4;

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  uint64_t out = 0;
  if (value != nullptr && absl::SimpleAtoi(value, &out)) return out;
  return fallback;
}

uint64_t Seed() {
  static const uint64_t seed = SeedFromEnvironment("STORELEDGER_CRASH_SEED");
  return seed;
}

// The planned stream as JSON lines, with the balance-dependent withdrawals
// given fixed amounts (cli/simulate.h PlanWrittenAhead: some are refused,
// which is as good a test), and the command ids.
void PlanLines(uint64_t seed, std::vector<std::string>* lines,
               std::vector<std::string>* ids) {
  for (const v1::Command& command : PlanWrittenAhead(kPlannedStores, seed)) {
    lines->push_back(ToJson(command));
    ids->push_back(command.command_id());
  }
}

struct Totals {
  int starts = 0;
  int kills = 0;
  int kills_while_opening = 0;   // killed before printing anything
  int kills_while_creating = 0;  // ... even before the database existed
  int finished = 0;              // the writer ran to the end of its input
  int ledgers_completed = 0;     // ledgers whose whole plan was acknowledged
  uint64_t acknowledged = 0;
  uint64_t events = 0;
  uint64_t upgrades = 0;
  uint64_t stores_folded = 0;
  int audits = 0;
};

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::cout << "crash_test seed " << Seed()
              << " (re-run with STORELEDGER_CRASH_SEED=" << Seed() << ")\n";
  }

  // Writes `indexes` of plan_ to a file, one line each.
  std::string WriteInput(const std::vector<size_t>& indexes, int start) {
    const std::string path = dir_.Sub(absl::StrCat("input-", start, ".jsonl"));
    std::ofstream out(path);
    for (size_t index : indexes) out << plan_[index] << "\n";
    return path;
  }

  // Parses the child's complete result lines into acknowledgements;
  // `indexes[line - 1]` is the plan index of input line `line`. Returns the
  // plan indexes acknowledged.
  std::vector<size_t> TakeAcknowledgements(
      const std::vector<std::string>& lines,
      const std::vector<size_t>& indexes) {
    std::vector<size_t> acked;
    for (const std::string& line : lines) {
      v1::CommandResult result;
      auto status = google::protobuf::util::JsonStringToMessage(line, &result);
      EXPECT_TRUE(status.ok()) << status.ToString() << " in " << line;
      if (!status.ok()) continue;
      EXPECT_GE(result.line(), 1);
      EXPECT_LE(result.line(), static_cast<int64_t>(indexes.size()));
      if (result.line() < 1 ||
          result.line() > static_cast<int64_t>(indexes.size())) {
        continue;
      }
      const size_t index = indexes[static_cast<size_t>(result.line() - 1)];
      EXPECT_EQ(result.command_id(), ids_[index]) << line;
      EXPECT_NE(result.status(), v1::INVALID) << line;
      absl::Status ok = testing::Acknowledge(result, &acknowledged_);
      EXPECT_TRUE(ok.ok()) << ok;
      acked.push_back(index);
    }
    return acked;
  }

  void CheckLedger(int kill_number, bool audit, Totals* totals) {
    LedgerOptions ledger_options;
    ledger_options.read_only = true;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(db_, ledger_options);
    if (!ledger.ok() && acknowledged_.empty()) {
      // Killed while the database was being created: RocksDB had not written
      // CURRENT yet, or the column families were not all created. Nothing
      // was promised; a read-only open cannot finish the creation, but the
      // next writer must.
      ++totals->kills_while_creating;
      if (!std::filesystem::exists(db_ + "/CURRENT")) return;
      ledger = Ledger::Open(db_);
      ASSERT_TRUE(ledger.ok())
          << "kill " << kill_number
          << ": a half-created database does not open: " << ledger.status();
    }
    ASSERT_TRUE(ledger.ok())
        << "kill " << kill_number << ": " << ledger.status();
    RecoveryCheckOptions options;
    options.audit = audit;
    options.seed = Seed() + static_cast<uint64_t>(kill_number);
    options.fold_stores_max = audit ? 16 : 4;
    absl::StatusOr<RecoveryCheckStats> stats =
        CheckRecoveredLog((*ledger)->log(), acknowledged_, options);
    ASSERT_TRUE(stats.ok()) << "after kill " << kill_number << " (seed "
                            << Seed() << "): " << stats.status();
    EXPECT_EQ(stats->acknowledged, acknowledged_.size());
    totals->events = stats->events;
    totals->upgrades = stats->upgrades;
    totals->stores_folded += stats->stores_folded;
    if (audit) ++totals->audits;
  }

  // Starts the writer on the next commands not yet acknowledged, kills it at
  // a random moment, checks, and again; when a ledger's plan is all
  // acknowledged, goes on with a fresh ledger (so that checks stay cheap and
  // the kills many), until the budget is spent.
  void Run(absl::Duration budget,
           const std::function<std::vector<std::string>(const std::string&)>&
               argv_for_input,
           Totals* totals) {
    std::mt19937_64 rng(Seed());
    const absl::Time end = absl::Now() + budget;
    for (int generation = 1; absl::Now() < end && !HasFatalFailure();
         ++generation) {
      db_ = dir_.Sub(absl::StrCat("db-", generation));
      plan_.clear();
      ids_.clear();
      acknowledged_.clear();
      PlanLines(Seed() + static_cast<uint64_t>(generation), &plan_, &ids_);
      std::vector<size_t> remaining(plan_.size());
      for (size_t i = 0; i < plan_.size(); ++i) remaining[i] = i;
      while (absl::Now() < end && !remaining.empty() && !HasFatalFailure()) {
        RunOnce(rng, argv_for_input, end, &remaining, totals);
      }
      totals->acknowledged += acknowledged_.size();
      if (remaining.empty()) ++totals->ledgers_completed;
    }
  }

  void RunOnce(
      std::mt19937_64& rng,
      const std::function<std::vector<std::string>(const std::string&)>&
          argv_for_input,
      absl::Time end, std::vector<size_t>* remaining, Totals* totals) {
    const int start = ++totals->starts;
    const std::vector<size_t> input_indexes(
        remaining->begin(),
        remaining->begin() + static_cast<std::ptrdiff_t>(
                                 std::min(remaining->size(), kLinesPerStart)));
    const std::string input = WriteInput(input_indexes, start);
    ChildOptions child_options;
    child_options.argv = argv_for_input(input);
    child_options.stderr_path = dir_.Sub("stderr.txt");
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Start(child_options);
    ASSERT_TRUE(child.ok()) << child.status();

    const bool early = rng() % kEarlyKillOneIn == 0;
    const int delay_ms = static_cast<int>(
        rng() %
        static_cast<uint64_t>((early ? kEarlyKillMaxMs : kill_delay_ms_) + 1));
    const bool ended =
        (*child)->ReadUntil(absl::Now() + absl::Milliseconds(delay_ms));
    if (!ended) (*child)->Kill(SIGKILL);
    const int status = (*child)->Wait();
    const bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (killed) {
      ++totals->kills;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "the writer " << testing::DescribeWaitStatus(status)
          << "; its stderr:\n"
          << StderrTail(child_options.stderr_path);
      ++totals->finished;
    }

    const std::vector<size_t> acked =
        TakeAcknowledgements((*child)->CompleteLines(), input_indexes);
    if (killed && acked.empty()) ++totals->kills_while_opening;
    if (killed && acked.empty() && !early) {
      kill_delay_ms_ = std::min(kKillDelayMaxMs, kill_delay_ms_ * 3 / 2);
    } else if (!killed) {
      kill_delay_ms_ = std::max(kKillDelayMinMs, kill_delay_ms_ * 7 / 10);
    }
    if (!killed) {
      EXPECT_EQ(acked.size(), input_indexes.size())
          << "the writer exited 0 without answering every line";
    }
    std::vector<bool> done(plan_.size(), false);
    for (size_t index : acked) done[index] = true;
    std::vector<size_t> next;
    for (size_t index : *remaining) {
      if (!done[index]) next.push_back(index);
    }
    *remaining = std::move(next);
    const bool last = absl::Now() >= end || remaining->empty();
    CheckLedger(start, last || start % kAuditEvery == 0, totals);
  }

  TempDir dir_;
  std::string db_ = dir_.Sub("db");
  std::vector<std::string> plan_;
  std::vector<std::string> ids_;
  AcknowledgedResults acknowledged_;
  int kill_delay_ms_ = kKillDelayStartMs;
};

// Prints a run's figures; "all present" only when nothing failed.
void Report(absl::string_view what, const Totals& t) {
  if (::testing::Test::HasFailure()) {
    std::cout << what << ": FAILED after " << t.kills << " SIGKILLs ("
              << t.starts << " starts); see the failures above\n";
    return;
  }
  std::cout << what << ": " << t.kills << " SIGKILLs survived (" << t.starts
            << " starts, " << t.kills_while_opening
            << " killed before their first result, " << t.kills_while_creating
            << " of them while the database was being created, " << t.finished
            << " ran to the end of their input); " << t.ledgers_completed
            << " ledgers completed; " << t.acknowledged
            << " acknowledged commands all present, " << t.events
            << " events and " << t.upgrades
            << " upgrades (each in both streams) in the last log, " << t.audits
            << " audits passed, " << t.stores_folded
            << " store projections equal to their fold\n";
}

TEST_F(CrashTest, ApplySurvivesSigkillAtRandomMoments) {
  const absl::Duration budget =
      absl::Seconds(EnvOr("STORELEDGER_CRASH_SECONDS", 60) * 6 / 10);
  Totals totals;
  Run(
      budget,
      [&](const std::string& input) {
        return std::vector<std::string>{STORELEDGER_BIN, "--db", db_, "apply",
                                        input};
      },
      &totals);
  Report("apply", totals);
  EXPECT_GT(totals.kills, 0);
  EXPECT_GT(totals.acknowledged, 0u);
  RecordProperty("kills", totals.kills);
  RecordProperty("acknowledged", static_cast<int>(totals.acknowledged));
}

TEST_F(CrashTest, ConcurrentWritersSurviveSigkillAtRandomMoments) {
  const absl::Duration budget =
      absl::Seconds(EnvOr("STORELEDGER_CRASH_SECONDS", 60) * 4 / 10);
  Totals totals;
  Run(
      budget,
      [&](const std::string& input) {
        return std::vector<std::string>{STORELEDGER_CRASH_CHILD,
                                        "--db",
                                        db_,
                                        "--input",
                                        input,
                                        "--threads",
                                        "4"};
      },
      &totals);
  Report("concurrent writers", totals);
  EXPECT_GT(totals.kills, 0);
  EXPECT_GT(totals.acknowledged, 0u);
  RecordProperty("kills", totals.kills);
  RecordProperty("acknowledged", static_cast<int>(totals.acknowledged));
}

}  // namespace
}  // namespace storeledger
