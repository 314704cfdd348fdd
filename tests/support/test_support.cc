#include "tests/support/test_support.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "rocksdb/db.h"

namespace storeledger::testing {

TempDir::TempDir() {
  std::string pattern = ::testing::TempDir() + "storeledger-XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << pattern;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::Sub(absl::string_view name) const {
  return path_ + "/" + std::string(name);
}

absl::Time China(int month, int day, int hour, int minute, int second) {
  return absl::FromCivil(
      absl::CivilSecond(2024, month, day, hour, minute, second),
      absl::FixedTimeZone(8 * 3600));
}

std::string ChinaText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%S+08:00", t,
                          absl::FixedTimeZone(8 * 3600));
}

v1::Command CommandFromJson(const std::string& json) {
  absl::StatusOr<v1::Command> command = ParseCommandJson(json);
  EXPECT_TRUE(command.ok()) << command.status() << " in " << json;
  return command.ok() ? *command : v1::Command();
}

std::vector<std::string> CliRun::lines() const {
  std::vector<std::string> out =
      absl::StrSplit(this->out, '\n', absl::SkipEmpty());
  return out;
}

void CompactUntil(const EventLog& log, const std::atomic<bool>& stop) {
  rocksdb::CompactRangeOptions compact;
  compact.bottommost_level_compaction =
      rocksdb::BottommostLevelCompaction::kForce;
  while (!stop) {
    for (rocksdb::ColumnFamilyHandle* cf :
         {log.events_cf(), log.streams_cf(), log.commands_cf(),
          log.projections_cf()}) {
      EXPECT_TRUE(log.db()->CompactRange(compact, cf, nullptr, nullptr).ok());
    }
  }
}

void MakeForeignRocksDb(const std::string& dir,
                        const std::vector<std::string>& families, bool put) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& family : families) {
    descriptors.emplace_back(family, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(options, dir, descriptors, &handles, &raw);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::unique_ptr<rocksdb::DB> db(raw);
  if (put) {
    s = db->Put(rocksdb::WriteOptions(), handles[0], "foo", "bar");
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  for (rocksdb::ColumnFamilyHandle* handle : handles) {
    EXPECT_TRUE(db->DestroyColumnFamilyHandle(handle).ok());
  }
}

CliRun RunStoreledger(const std::vector<std::string>& args,
                      const std::string& stdin_text) {
  std::istringstream in(stdin_text);
  std::ostringstream out, err;
  const int code = RunCli(args, in, out, err);
  return CliRun{code, out.str(), err.str()};
}

uint64_t SeedFromEnvironment(const char* variable) {
  uint64_t seed = 0;
  const char* text = std::getenv(variable);
  if (text != nullptr && absl::SimpleAtoi(text, &seed)) return seed;
  // A run meant to be repeated must not quietly become a new one.
  if (text != nullptr) {
    ADD_FAILURE() << variable << "=\"" << text
                  << "\" is not a seed (a decimal number); running with a "
                     "fresh one";
  }
  std::random_device device;
  return (uint64_t{device()} << 32) | device();
}

void RunSimulatedPlan(Ledger& ledger, const std::vector<SimulatedStep>& steps) {
  SimulatedWithdrawals withdrawals;
  for (const SimulatedStep& step : steps) {
    int64_t available = 0;
    if (SimulatedWithdrawals::NeedsBalance(step)) {
      absl::StatusOr<v1::StoreState> state =
          ledger.State(step.command.request_withdrawal().store_id());
      available = state.ok() ? state->balances().available_fen() : 0;
    }
    std::optional<v1::Command> command = withdrawals.Next(step, available);
    if (!command.has_value()) continue;
    absl::StatusOr<v1::CommandResult> result = ledger.Execute(*command);
    ASSERT_TRUE(result.ok()) << result.status();
  }
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout,
             absl::Duration poll) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(poll);
  }
  return true;
}

}  // namespace storeledger::testing
