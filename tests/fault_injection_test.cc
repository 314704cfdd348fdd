// Power loss and I/O errors, through tests/support/fault_env.h's file system
// under a real RocksDB in a temporary directory.
//
// Power loss: the ledger runs commands while the file system counts down to
// a random operation at which the machine goes off (mid-append, mid-sync,
// mid-flush, mid-open ...); the database is closed, every byte not synced is
// dropped (and files and renames whose directory was not fsynced undone),
// and the ledger is reopened and checked (tests/support/ledger_check.h):
// every acknowledged command is there with its positions, the chain
// verifies, nothing is half there, the audit passes.
//
// I/O errors: chosen operations fail (a WAL append or sync, a table or
// MANIFEST write during a flush, a directory fsync, ...): the command in
// flight gets an error, never ACCEPTED; the ledger then refuses writes
// (kFailedPrecondition "read-only after a write error ... reopen") instead
// of going on from an unknown state; after reopening nothing is corrupted
// and every acknowledged command is there.
//
// Seeded: STORELEDGER_FAULT_SEED=S repeats a run.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/simulate.h"
#include "core/decide.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "storage/backup.h"
#include "tests/support/fault_env.h"
#include "tests/support/ledger_check.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::AcknowledgedResults;
using ::storeledger::testing::FaultFileSystem;
using ::storeledger::testing::FaultOp;
using ::storeledger::testing::FileKind;
using ::storeledger::testing::RecoveryCheckOptions;
using ::storeledger::testing::RecoveryCheckStats;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// Simulated power losses per run, and the wall-clock budget that may end a
// run sooner (a slow sanitizer build).
constexpr int kPowerLosses = 200;
// At least this many, even past the budget (a batch path's losses cost
// more: each is followed by a check of thousands of commands).
constexpr int kPowerLossesMin = 5;
// A run that acknowledged fewer commands than this over all its ledgers
// checked too little to pass.
constexpr size_t kPowerLossAcknowledgedMin = 100;
constexpr absl::Duration kPowerLossBudget = absl::Seconds(15);
// The machine goes off within this many file operations of a (re)start; a
// synced command costs about two (WAL append, WAL sync).
constexpr int64_t kCrashOpsMax = 240;
// One command in kFlushOneIn is followed by a memtable flush (new table
// file, MANIFEST edit, new WAL, directory fsync, old WAL deleted), one in
// kCompactOneIn by a full compaction.
constexpr int kFlushOneIn = 40;
constexpr int kCompactOneIn = 150;
// Rounds of the randomized I/O error test.
constexpr int kErrorRounds = 40;

uint64_t Seed() {
  static const uint64_t seed = SeedFromEnvironment("STORELEDGER_FAULT_SEED");
  return seed;
}

// The migration plan's commands, with the balance-dependent withdrawals
// given fixed amounts.
std::vector<v1::Command> Plan(int stores, uint64_t seed) {
  std::vector<v1::Command> commands;
  for (SimulatedStep& step : PlanMigration(stores, seed)) {
    if (step.command.has_request_withdrawal() &&
        step.amount != SimulatedStep::Amount::kAsWritten) {
      step.command.mutable_request_withdrawal()->set_amount_fen(
          step.amount == SimulatedStep::Amount::kAll ? 100 : 1'000'000'000'000);
    }
    commands.push_back(std::move(step.command));
  }
  return commands;
}

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::cout << "fault_injection_test seed " << Seed()
              << " (re-run with STORELEDGER_FAULT_SEED=" << Seed() << ")\n";
  }

  absl::StatusOr<std::unique_ptr<Ledger>> Open(bool sync = true) {
    LedgerOptions options;
    options.env = fs_.env();
    options.sync = sync;
    return Ledger::Open(db_, options);
  }

  // Reopens through the (working) fault file system and checks everything.
  RecoveryCheckStats Check(const AcknowledgedResults& acknowledged,
                           absl::string_view when, bool audit = true) {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
    EXPECT_TRUE(ledger.ok()) << when << ": reopen failed: " << ledger.status();
    if (!ledger.ok()) return {};
    RecoveryCheckOptions options;
    options.audit = audit;
    options.seed = Seed();
    absl::StatusOr<RecoveryCheckStats> stats =
        testing::CheckRecoveredLog((*ledger)->log(), acknowledged, options);
    EXPECT_TRUE(stats.ok())
        << when << " (seed " << Seed() << "): " << stats.status();
    return stats.ok() ? *stats : RecoveryCheckStats{};
  }

  static void Flush(Ledger& ledger) {
    const EventLog& log = ledger.log();
    std::vector<rocksdb::ColumnFamilyHandle*> families = {
        log.events_cf(), log.streams_cf(), log.commands_cf(), log.meta_cf(),
        log.projections_cf()};
    // Errors are the point of some tests; the ledger reports them itself.
    log.RunBetweenWrites([&] {
         log.db()
             ->Flush(rocksdb::FlushOptions(), families)
             .PermitUncheckedError();
         return absl::OkStatus();
       })
        .IgnoreError();
  }
  static void Compact(Ledger& ledger) {
    const EventLog& log = ledger.log();
    // A compaction flushes the memtable first: between writes, as Flush.
    for (rocksdb::ColumnFamilyHandle* family :
         {log.events_cf(), log.commands_cf(), log.projections_cf()}) {
      log.RunBetweenWrites([&] {
           log.db()
               ->CompactRange(rocksdb::CompactRangeOptions(), family, nullptr,
                              nullptr)
               .PermitUncheckedError();
           return absl::OkStatus();
         })
          .IgnoreError();
    }
  }

  FaultFileSystem fs_;
  TempDir dir_;
  std::string db_ = dir_.Sub("db");
};

// ------------------------------------------------------------- power loss

// How the commands of a power-loss run reach the ledger: each path the
// service and the CLI use, since each writes and syncs its groups its own
// way (ledger/ledger.h, "Durability").
enum class WritePath {
  // One caller, Execute per command: groups written by their leader and
  // synced apart (RunSyncs).
  kExecute,
  // One caller, ExecuteBatch of up to kBatchCommandsMax (apply): chunks of
  // kGroupCommandsMax written, each with its sync, by the writer thread.
  kExecuteBatch,
  // kPowerLossThreads callers, Execute each: groups of several callers'
  // commands.
  kConcurrentExecute,
  // kPowerLossThreads callers, ExecuteBatch of up to kStreamBatchCommands each:
  // storeledgerd's ExecuteStream, one worker per stream (server/service.cc).
  kStreams,
};

constexpr int kPowerLossThreads = 3;
constexpr size_t kBatchCommandsMax = 2500;
// server/service.h's kStreamBatchCommandsMax (this test does not link the
// server).
constexpr size_t kStreamBatchCommands = 256;

struct PowerLossRun {
  int losses = 0;
  int losses_while_opening = 0;
  int flushes = 0;
  uint64_t in_flight = 0;  // commands whose call failed when the power went
  size_t acknowledged = 0;
  int ledgers = 0;      // a fresh one each time the plan is done
  uint64_t events = 0;  // in the last ledger
};

// One caller's share of the plan (lane `lane` of `lanes`: every lanes-th
// command), run through `path` until the plan is done or a call fails.
// `next` is the lane's first command not acknowledged yet.
void RunLane(Ledger& ledger, WritePath path,
             const std::vector<v1::Command>& plan, size_t lane, size_t lanes,
             uint64_t seed, size_t* next, std::mutex* mu,
             AcknowledgedResults* acknowledged, PowerLossRun* run,
             FaultFileSystem* fs, const std::function<void(Ledger&)>& flush,
             const std::function<void(Ledger&)>& compact) {
  std::mt19937_64 rng(seed);
  const bool batches =
      path == WritePath::kExecuteBatch || path == WritePath::kStreams;
  while (*next < plan.size() && fs->active()) {
    std::vector<v1::Command> commands;
    const size_t size_max = !batches                      ? 1
                            : path == WritePath::kStreams ? kStreamBatchCommands
                                                          : kBatchCommandsMax;
    const size_t size = 1 + rng() % size_max;
    for (size_t i = *next; i < plan.size() && commands.size() < size;
         i += lanes) {
      commands.push_back(plan[i]);
    }
    std::vector<absl::StatusOr<v1::CommandResult>> results;
    if (batches) {
      results = ledger.ExecuteBatch(std::move(commands));
    } else {
      results.push_back(ledger.Execute(commands.front()));
    }
    std::lock_guard<std::mutex> lock(*mu);
    for (const absl::StatusOr<v1::CommandResult>& result : results) {
      if (!result.ok()) {
        ++run->in_flight;
        return;
      }
      ASSERT_NE(result->status(), v1::INVALID) << result->message();
      ASSERT_TRUE(testing::Acknowledge(*result, acknowledged).ok());
      *next += lanes;
    }
    if (lane == 0 && rng() % kFlushOneIn == 0) {
      flush(ledger);
      ++run->flushes;
    }
    if (lane == 0 && rng() % kCompactOneIn == 0) compact(ledger);
  }
}

class PowerLossTest : public FaultTest,
                      public ::testing::WithParamInterface<WritePath> {
 protected:
  // Power losses at random file operations while the plan runs through
  // GetParam(); after each: every acknowledged command survives, the chain
  // verifies, nothing is half there (CheckRecoveredLog).
  PowerLossRun Run(int stores, absl::Duration budget) {
    const uint64_t seed = Seed() + static_cast<uint64_t>(GetParam()) * 100;
    std::mt19937_64 rng(seed);
    const std::vector<v1::Command> plan = Plan(stores, seed);
    const size_t lanes = GetParam() == WritePath::kConcurrentExecute ||
                                 GetParam() == WritePath::kStreams
                             ? kPowerLossThreads
                             : 1;
    const bool batches = GetParam() == WritePath::kExecuteBatch ||
                         GetParam() == WritePath::kStreams;
    std::vector<size_t> next(lanes);
    AcknowledgedResults acknowledged;
    std::mutex mu;
    PowerLossRun run;
    int generation = 0;
    // A fresh ledger: the plan from its start.
    auto start_over = [&] {
      run.acknowledged += acknowledged.size();
      db_ = dir_.Sub(absl::StrCat("db-", ++generation));
      for (size_t lane = 0; lane < lanes; ++lane) next[lane] = lane;
      acknowledged.clear();
    };
    start_over();
    auto done = [&] {
      for (size_t lane = 0; lane < lanes; ++lane) {
        if (next[lane] < plan.size()) return false;
      }
      return true;
    };
    // The budget, stretched (at most threefold, for a slow sanitizer
    // build) until kPowerLossesMin losses have been checked and
    // kPowerLossAcknowledgedMin commands acknowledged.
    const absl::Time end = absl::Now() + budget;
    const absl::Time hard_end = end + 2 * budget;
    auto enough = [&] {
      return run.losses >= kPowerLossesMin &&
             run.acknowledged + acknowledged.size() > kPowerLossAcknowledgedMin;
    };
    while (run.losses < kPowerLosses && (absl::Now() < end || !enough()) &&
           absl::Now() < hard_end && !HasFailure()) {
      if (done()) start_over();  // the batch paths get through a plan fast
      // A batch path gets through thousands of commands in kCrashOpsMax
      // operations: its countdown starts once the ledger is open (the
      // Execute path covers losses while opening) and is shorter, which
      // keeps the ledgers (and the checks after each loss) small.
      const int64_t crash_after = static_cast<int64_t>(
          rng() % (batches ? kCrashOpsMax / 4 : kCrashOpsMax));
      if (!batches) fs_.CrashAfterOps(crash_after);
      {
        absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
        if (batches) fs_.CrashAfterOps(crash_after);
        if (!ledger.ok()) {
          ++run.losses_while_opening;
        } else {
          std::vector<std::thread> threads;
          for (size_t lane = 0; lane < lanes; ++lane) {
            threads.emplace_back([&, lane, lane_seed = rng()] {
              RunLane(**ledger, GetParam(), plan, lane, lanes, lane_seed,
                      &next[lane], &mu, &acknowledged, &run, &fs_, Flush,
                      Compact);
            });
          }
          for (std::thread& thread : threads) thread.join();
        }
        fs_.SetActive(false);  // if the countdown has not run out yet
      }                        // the ledger closes with the power off
      ++run.losses;
      if (HasFailure()) break;
      EXPECT_TRUE(fs_.DropUnsyncedData().ok());
      fs_.SetActive(true);
      Check(acknowledged, absl::StrCat("after power loss ", run.losses),
            /*audit=*/run.losses % 5 == 0);
    }
    const RecoveryCheckStats stats = Check(acknowledged, "at the end");
    EXPECT_EQ(stats.acknowledged, acknowledged.size())
        << "acknowledged commands missing after the last power loss";
    run.acknowledged += acknowledged.size();
    run.ledgers = generation;
    run.events = stats.events;
    return run;
  }
};

std::string PathName(const ::testing::TestParamInfo<WritePath>& info) {
  switch (info.param) {
    case WritePath::kExecute:
      return "Execute";
    case WritePath::kExecuteBatch:
      return "ExecuteBatch";
    case WritePath::kConcurrentExecute:
      return "ConcurrentExecute";
    case WritePath::kStreams:
      return "ConcurrentStreams";
  }
  return "?";
}

TEST_P(PowerLossTest, EveryAcknowledgedCommandSurvivesPowerLoss) {
  // The first path keeps the budget it had alone; the others get less.
  const PowerLossRun run =
      Run(150, GetParam() == WritePath::kExecute ? kPowerLossBudget
                                                 : absl::Seconds(8));
  if (HasFailure()) return;
  std::cout << "power loss (" << PathName({GetParam(), 0})
            << "): " << run.losses << " simulated power losses ("
            << run.losses_while_opening << " while opening), " << run.flushes
            << " flushes, " << fs_.dropped_bytes() << " unsynced bytes and "
            << fs_.dropped_files() << " files/renames dropped; "
            << run.acknowledged << " acknowledged commands in " << run.ledgers
            << " ledger(s), all present after every loss (" << run.in_flight
            << " in flight when the power went; " << run.events
            << " events in the last ledger)\n";
  RecordProperty("power_losses", run.losses);
  EXPECT_GE(run.losses, kPowerLossesMin);
  EXPECT_GT(run.acknowledged, kPowerLossAcknowledgedMin);
  EXPECT_GT(fs_.dropped_bytes(), 0u);  // the crashes did drop something
}

// Every path, kStreams (concurrent ExecuteBatch callers) included: with
// EventLog::Sync calling DB::SyncWAL it once aborted inside Debian's RocksDB
// 7.8 (docs/reliability.md, "A RocksDB assertion under concurrent batches").
INSTANTIATE_TEST_SUITE_P(WritePaths, PowerLossTest,
                         ::testing::Values(WritePath::kExecute,
                                           WritePath::kExecuteBatch,
                                           WritePath::kConcurrentExecute,
                                           WritePath::kStreams),
                         PathName);

// An ExecuteBatch of three chunks (the writer thread writes the first two,
// each with its sync; the caller the last): the first WAL sync fails, then
// the power goes. What the batch acknowledged must survive. A chunk
// acknowledged before its sync would be lost here every time, where the
// random power losses above catch it only when a loss lands between the
// chunk's write and a later sync.
TEST_F(FaultTest, EveryBatchChunkIsSyncedBeforeItIsAcknowledged) {
  const std::vector<v1::Command> plan = Plan(150, Seed() + 4);
  ASSERT_GE(plan.size(), 3 * kGroupCommandsMax);
  std::vector<v1::Command> batch(
      plan.begin(),
      plan.begin() + static_cast<std::ptrdiff_t>(3 * kGroupCommandsMax));
  AcknowledgedResults acknowledged;
  size_t failed = 0;
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    fs_.InjectError(FileKind::kWal, FaultOp::kSync);
    for (const absl::StatusOr<v1::CommandResult>& result :
         (*ledger)->ExecuteBatch(std::move(batch))) {
      if (!result.ok()) {
        ++failed;
        continue;
      }
      ASSERT_TRUE(testing::Acknowledge(*result, &acknowledged).ok());
    }
    fs_.SetActive(false);
  }
  fs_.ClearErrors();
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  fs_.SetActive(true);
  EXPECT_EQ(fs_.injected_errors(), 1);
  EXPECT_GT(failed, 0u) << "the failed sync failed no command";
  const RecoveryCheckStats stats =
      Check(acknowledged, "after a failed batch sync and a power loss");
  EXPECT_EQ(stats.acknowledged, acknowledged.size());
}

// Without sync nothing is promised durable, but what survives must be a
// prefix of what was done, consistent, with no gap and nothing half there.
TEST_F(FaultTest, WithoutSyncPowerLossLeavesAConsistentPrefix) {
  std::mt19937_64 rng(Seed() + 1);
  const std::vector<v1::Command> plan = Plan(40, Seed() + 1);
  size_t next = 0;
  int losses = 0;
  const absl::Time end = absl::Now() + absl::Seconds(8);
  while (losses < 20 && absl::Now() < end && next < plan.size() &&
         !HasFailure()) {
    fs_.CrashAfterOps(static_cast<int64_t>(rng() % kCrashOpsMax));
    std::vector<std::string> done;  // in order
    {
      absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open(/*sync=*/false);
      if (ledger.ok()) {
        for (size_t i = next; i < plan.size(); ++i) {
          absl::StatusOr<v1::CommandResult> result =
              (*ledger)->Execute(plan[i]);
          if (!result.ok()) break;
          if (!result->replayed()) done.push_back(plan[i].command_id());
          if (rng() % kFlushOneIn == 0) Flush(**ledger);
          if (!fs_.active()) break;
        }
      }
      fs_.SetActive(false);
    }
    ++losses;
    ASSERT_TRUE(fs_.DropUnsyncedData().ok());
    fs_.SetActive(true);
    Check({}, absl::StrCat("after power loss ", losses), /*audit=*/true);
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    // The survivors of this round are a prefix of what it did.
    size_t survived = 0;
    while (survived < done.size()) {
      absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
          (*ledger)->log().GetOutcome(done[survived]);
      ASSERT_TRUE(outcome.ok()) << outcome.status();
      if (!outcome->has_value()) break;
      ++survived;
    }
    for (size_t i = survived; i < done.size(); ++i) {
      absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
          (*ledger)->log().GetOutcome(done[i]);
      ASSERT_TRUE(outcome.ok()) << outcome.status();
      EXPECT_FALSE(outcome->has_value())
          << "command " << done[i] << " survived but " << done[survived]
          << ", done before it, did not";
    }
    next += survived;
  }
  std::cout << "power loss without sync: " << losses
            << " simulated power losses, each leaving a consistent prefix\n";
}

// ------------------------------------------------------------- I/O errors

struct FaultCase {
  const char* name;
  FileKind kind;
  FaultOp op;
  bool needs_flush;  // the operation only happens during a flush
};

const FaultCase kFaultCases[] = {
    {"WAL append", FileKind::kWal, FaultOp::kAppend, false},
    {"WAL sync", FileKind::kWal, FaultOp::kSync, false},
    {"table file write", FileKind::kTable, FaultOp::kAppend, true},
    {"table file sync", FileKind::kTable, FaultOp::kSync, true},
    {"table file create", FileKind::kTable, FaultOp::kCreate, true},
    {"MANIFEST write", FileKind::kManifest, FaultOp::kAppend, true},
    {"MANIFEST sync", FileKind::kManifest, FaultOp::kSync, true},
    {"new WAL create", FileKind::kWal, FaultOp::kCreate, true},
    {"directory fsync", FileKind::kAny, FaultOp::kDirSync, true},
};

// Runs commands until one fails; checks the failure and the refusals after
// it. Returns the index of the first command not acknowledged.
size_t RunUntilFailure(Ledger& ledger, const std::vector<v1::Command>& plan,
                       size_t next, size_t max_commands,
                       AcknowledgedResults* acknowledged, bool* failed) {
  *failed = false;
  for (size_t done = 0; next < plan.size() && done < max_commands; ++done) {
    absl::StatusOr<v1::CommandResult> result = ledger.Execute(plan[next]);
    if (!result.ok()) {
      *failed = true;
      EXPECT_FALSE(absl::IsFailedPrecondition(result.status()))
          << "the first failure should be the I/O error itself: "
          << result.status();
      // Refused from now on, with a message that says what to do.
      for (size_t later = next; later < std::min(plan.size(), next + 3);
           ++later) {
        absl::StatusOr<v1::CommandResult> refused = ledger.Execute(plan[later]);
        EXPECT_FALSE(refused.ok()) << "after a write error the ledger accepted "
                                   << plan[later].command_id();
        if (refused.ok()) break;
        EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()) ||
                    absl::IsUnavailable(refused.status()))
            << refused.status();
      }
      return next;
    }
    EXPECT_NE(result->status(), v1::INVALID);
    EXPECT_TRUE(testing::Acknowledge(*result, acknowledged).ok());
    ++next;
  }
  return next;
}

TEST_F(FaultTest, FailedWalWriteIsNeverAcknowledgedAndStopsWrites) {
  const std::vector<v1::Command> plan = Plan(5, Seed());
  AcknowledgedResults acknowledged;
  size_t next = 0;
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    bool failed = false;
    next = RunUntilFailure(**ledger, plan, 0, 20, &acknowledged, &failed);
    ASSERT_FALSE(failed);
    fs_.InjectError(FileKind::kWal, FaultOp::kSync);
    absl::StatusOr<v1::CommandResult> result = (*ledger)->Execute(plan[next]);
    ASSERT_FALSE(result.ok())
        << "ACCEPTED although its WAL sync failed: " << result->DebugString();
    EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
    absl::StatusOr<v1::CommandResult> refused =
        (*ledger)->Execute(plan[next + 1]);
    ASSERT_FALSE(refused.ok());
    EXPECT_TRUE(absl::IsFailedPrecondition(refused.status()))
        << refused.status();
    EXPECT_TRUE(absl::StrContains(refused.status().message(),
                                  "read-only after a write error"))
        << refused.status();
    EXPECT_TRUE(absl::StrContains(refused.status().message(), "reopen"))
        << refused.status();
    // Reads still answer.
    EXPECT_TRUE((*ledger)->log().GetOutcome(plan[0].command_id()).ok());
    // Nothing that would switch memtables reaches the failed WAL file (in
    // Debian's RocksDB 7.8 that is an abort): a flush is refused unrun, and
    // so is a backup, which leaves no directory behind.
    bool ran = false;
    absl::Status flush = (*ledger)->log().RunBetweenWrites([&] {
      ran = true;
      return absl::OkStatus();
    });
    EXPECT_TRUE(absl::IsFailedPrecondition(flush)) << flush;
    EXPECT_FALSE(ran);
    const std::string backup_dir = dir_.Sub("backup-after-failure");
    absl::StatusOr<Head> backup = BackupTo((*ledger)->log(), backup_dir);
    EXPECT_TRUE(absl::IsFailedPrecondition(backup.status())) << backup.status();
    EXPECT_FALSE(std::filesystem::exists(backup_dir));
  }
  fs_.ClearErrors();
  Check(acknowledged, "after reopening");
  // The command that failed may or may not have reached the disk; its retry
  // settles it either way, and then the ledger goes on.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  absl::StatusOr<v1::CommandResult> retry = (*ledger)->Execute(plan[next]);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_NE(retry->status(), v1::INVALID);
  EXPECT_EQ(fs_.injected_errors(), 1);
}

TEST_F(FaultTest, EveryKindOfWriteFailureLeavesASoundLedger) {
  std::mt19937_64 rng(Seed() + 2);
  const std::vector<v1::Command> plan = Plan(60, Seed() + 2);
  AcknowledgedResults acknowledged;
  size_t next = 0;
  int rounds = 0, failures_seen = 0;
  std::map<std::string, int> by_case;
  for (; rounds < kErrorRounds && next < plan.size() && !HasFailure();
       ++rounds) {
    const FaultCase& fault = kFaultCases[rng() % std::size(kFaultCases)];
    {
      absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
      ASSERT_TRUE(ledger.ok()) << "round " << rounds << ": " << ledger.status();
      bool failed = false;
      next = RunUntilFailure(**ledger, plan, next, 5, &acknowledged, &failed);
      ASSERT_FALSE(failed);
      fs_.InjectError(fault.kind, fault.op, static_cast<int64_t>(rng() % 3),
                      /*sticky=*/rng() % 2 == 0);
      for (int attempt = 0; attempt < 30 && !failed; ++attempt) {
        if (fault.needs_flush) Flush(**ledger);
        next = RunUntilFailure(**ledger, plan, next, 3, &acknowledged, &failed);
      }
      if (failed) ++failures_seen;
    }
    fs_.ClearErrors();
    by_case[fault.name]++;
    Check(acknowledged, absl::StrCat("round ", rounds, " (", fault.name, ")"),
          /*audit=*/rounds % 4 == 0);
  }
  const RecoveryCheckStats stats = Check(acknowledged, "at the end");
  EXPECT_EQ(stats.acknowledged, acknowledged.size())
      << "acknowledged commands missing at the end";
  if (HasFailure()) return;
  std::cout << "I/O errors: " << fs_.injected_errors() << " injected faults in "
            << rounds << " rounds (" << failures_seen
            << " stopped the ledger; the rest hit background work that the "
               "ledger rode out or that failed a later write);";
  for (const auto& [name, count] : by_case) {
    std::cout << " " << name << " x" << count;
  }
  std::cout << "; " << acknowledged.size()
            << " acknowledged commands all present\n";
  RecordProperty("injected_faults", static_cast<int>(fs_.injected_errors()));
  EXPECT_GT(fs_.injected_errors(), rounds / 2);
  EXPECT_GT(failures_seen, rounds / 4);
}

// Several threads share the group commit; a failed sync fails every command
// of its group, and none of them is acknowledged.
TEST_F(FaultTest, FailedGroupSyncFailsEveryWriterInTheGroup) {
  const std::vector<v1::Command> plan = Plan(40, Seed() + 3);
  constexpr int kThreads = 4;
  std::vector<std::vector<const v1::Command*>> work(kThreads);
  for (const v1::Command& command : plan) {
    const std::vector<std::string> stores = StoreIdsOf(command);
    const size_t slot =
        stores.empty() ? 0 : std::hash<std::string>()(stores[0]) % kThreads;
    work[slot].push_back(&command);
  }
  std::mutex mu;
  AcknowledgedResults acknowledged;
  std::atomic<int> errors{0};
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Open();
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    // The 60th WAL sync from now fails, and every one after it.
    fs_.InjectError(FileKind::kWal, FaultOp::kSync, 60, /*sticky=*/true);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (const v1::Command* command : work[t]) {
          absl::StatusOr<v1::CommandResult> result =
              (*ledger)->Execute(*command);
          if (!result.ok()) {
            ++errors;
            continue;  // keep trying: every later one must fail too
          }
          std::lock_guard<std::mutex> lock(mu);
          EXPECT_TRUE(testing::Acknowledge(*result, &acknowledged).ok());
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  fs_.ClearErrors();
  EXPECT_GT(errors.load(), 0);
  EXPECT_GT(acknowledged.size(), 0u);
  // Power goes too: whatever the failed syncs left unsynced is dropped.
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  const RecoveryCheckStats stats =
      Check(acknowledged, "after the failed group sync and a power loss");
  EXPECT_EQ(stats.acknowledged, acknowledged.size());
  if (HasFailure()) return;
  std::cout << "group commit: " << acknowledged.size()
            << " commands acknowledged by 4 threads, " << errors.load()
            << " failed after the injected sync error, none lost\n";
}

}  // namespace
}  // namespace storeledger
