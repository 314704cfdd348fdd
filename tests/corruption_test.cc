// Corruption: bits flipped in a copy of a ledger's table (SST) files and in
// its write-ahead log. Whatever is damaged, opening, reading an event,
// scanning the log, auditing, reading a store or a command's outcome either
// answers exactly what the undamaged ledger answers or reports DATA_LOSS; it
// never crashes and never returns a wrong balance. A flip that silently
// shortens the log (acknowledged events gone without a DATA_LOSS anywhere)
// is a failure too.
//
// The pristine ledger: a migration plan's commands, flushed and compacted
// into table files, then more commands that stay in the WAL only.
//
// Seeded: STORELEDGER_CORRUPTION_SEED=S repeats a run.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/simulate.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "replay/audit.h"
#include "replay/projection_store.h"
#include "replay/store_view.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::storeledger::testing::FileKind;
using ::storeledger::testing::KindOfFile;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// Damaged copies per kind of file.
constexpr int kTrialsPerKind = 40;
// Bits flipped in one copy: 1..kFlipsMax, in one file.
constexpr int kFlipsMax = 3;
// Stores whose commands go to table files, and whose commands stay in the
// WAL.
constexpr int kFlushedStores = 25;
constexpr int kWalStores = 4;

uint64_t Seed() {
  static const uint64_t seed =
      SeedFromEnvironment("STORELEDGER_CORRUPTION_SEED");
  return seed;
}

const absl::Time kNow = absl::FromUnixSeconds(1'735'660'800);  // 2025-01-01

// What the undamaged ledger answers.
struct Pristine {
  std::string dir;
  uint64_t head = 0;
  std::vector<v1::Envelope> envelopes;  // [position - 1]
  std::map<std::string, v1::StoreState> stores;
  std::map<std::string, v1::StoredOutcome> outcomes;
};

std::vector<v1::Command> Plan(int stores, uint64_t seed) {
  std::vector<v1::Command> commands;
  for (SimulatedStep& step : PlanMigration(stores, seed)) {
    if (step.command.has_request_withdrawal() &&
        step.amount != SimulatedStep::Amount::kAsWritten) {
      step.command.mutable_request_withdrawal()->set_amount_fen(100);
    }
    commands.push_back(std::move(step.command));
  }
  return commands;
}

// Every answer one damaged copy gave, classified.
struct Trial {
  bool open_failed = false;
  int data_loss = 0;                   // reads that reported kDataLoss
  int data_loss_reading_position = 0;  // ... reading one position
  int data_loss_with_position = 0;     // ... naming that position
  int wrong_answers = 0;               // reads that answered something else
  int other_errors = 0;                // reads that failed with another code
  bool audit_failed = false;           // the audit reported violations
  bool shorter = false;                // the head is before the pristine head
  std::vector<std::string> problems;
  bool detected() const { return open_failed || data_loss > 0 || audit_failed; }
};

void Classify(const absl::Status& status, Trial* trial, absl::string_view what,
              uint64_t position = 0) {
  if (absl::IsDataLoss(status)) {
    ++trial->data_loss;
    if (position > 0) {
      ++trial->data_loss_reading_position;
      if (absl::StrContains(status.message(),
                            absl::StrCat("position ", position))) {
        ++trial->data_loss_with_position;
      } else {
        trial->problems.push_back(absl::StrCat(
            what, "(", position,
            ") DATA_LOSS without its position: ", status.ToString()));
      }
    }
    return;
  }
  ++trial->other_errors;
  trial->problems.push_back(absl::StrCat(what, ": ", status.ToString()));
}

void Wrong(Trial* trial, std::string what) {
  ++trial->wrong_answers;
  trial->problems.push_back(std::move(what));
}

// Asks the damaged copy at `dir` everything the pristine ledger answered.
Trial Examine(const std::string& dir, const Pristine& pristine) {
  Trial trial;
  LedgerOptions options;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir, options);
  if (!ledger.ok()) {
    trial.open_failed = true;
    Classify(ledger.status(), &trial, "open");
    if (!absl::IsDataLoss(ledger.status())) trial.open_failed = false;
    return trial;
  }
  const EventLog& log = (*ledger)->log();
  const uint64_t head = log.head().position;
  trial.shorter = head < pristine.head;
  if (head > pristine.head) {
    Wrong(&trial, absl::StrCat("head ", head, " is past the pristine head ",
                               pristine.head));
  }

  // Every event, one by one.
  for (uint64_t position = 1; position <= pristine.head; ++position) {
    absl::StatusOr<v1::Envelope> envelope = log.Read(position);
    if (!envelope.ok()) {
      if (absl::IsNotFound(envelope.status()) && position > head) continue;
      Classify(envelope.status(), &trial, "read", position);
      continue;
    }
    if (!MessageDifferencer::Equals(*envelope,
                                    pristine.envelopes[position - 1])) {
      Wrong(&trial,
            absl::StrCat("read(", position, ") returned another event"));
    }
  }
  // The whole chain.
  uint64_t scanned = 0;
  absl::Status scan =
      log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
        if (envelope.position() > pristine.head ||
            !MessageDifferencer::Equals(
                envelope, pristine.envelopes[envelope.position() - 1])) {
          Wrong(&trial, absl::StrCat("scan returned another event at position ",
                                     envelope.position()));
        }
        ++scanned;
        return true;
      });
  if (!scan.ok()) Classify(scan, &trial, "scan");
  // Every store's balances and records. When the log came back shorter
  // (and said so), each answer must be the pristine ledger's as of the
  // damaged head: a fold of the pristine copy's stream up to that position,
  // never something the shorter log does not support.
  std::unique_ptr<Ledger> pristine_ledger;
  if (trial.shorter) {
    LedgerOptions pristine_options;
    pristine_options.read_only = true;
    absl::StatusOr<std::unique_ptr<Ledger>> opened =
        Ledger::Open(pristine.dir, pristine_options);
    if (!opened.ok()) {
      Wrong(&trial, absl::StrCat("the pristine copy does not open: ",
                                 opened.status().ToString()));
      return trial;
    }
    pristine_ledger = std::move(*opened);
  }
  ProjectionReader reader(&log);
  for (const auto& [id, pristine_state] : pristine.stores) {
    absl::StatusOr<v1::StoreState> expected = pristine_state;
    if (trial.shorter) {
      AsOf at_head;
      at_head.position = head;
      expected = FoldStoreState(pristine_ledger->log(), id, at_head, kNow,
                                pristine_ledger->policy());
      if (!expected.ok() && !absl::IsNotFound(expected.status())) {
        Wrong(&trial, absl::StrCat("the pristine fold of ", id,
                                   " failed: ", expected.status().ToString()));
        continue;
      }
    }
    absl::StatusOr<v1::StoreState> state =
        BuildStoreState(reader, id, kNow, (*ledger)->policy());
    if (!state.ok()) {
      if (absl::IsNotFound(state.status()) && !expected.ok()) continue;
      Classify(state.status(), &trial, absl::StrCat("state ", id));
      continue;
    }
    if (!expected.ok()) {
      Wrong(&trial, absl::StrCat("store ", id,
                                 " answered although it opens "
                                 "after the damaged head ",
                                 head));
    } else if (!MessageDifferencer::Equals(*state, *expected)) {
      Wrong(&trial, absl::StrCat("store ", id, " answered ",
                                 state->balances().ShortDebugString(),
                                 ", pristine at position ", head, " ",
                                 expected->balances().ShortDebugString()));
    }
  }
  // The audit.
  absl::StatusOr<v1::AuditReport> report = Audit(log);
  if (!report.ok()) {
    Classify(report.status(), &trial, "audit");
  } else if (!report->ok()) {
    trial.audit_failed = true;
    for (const v1::AuditViolation& violation : report->violations()) {
      if (violation.code() != "DATA_LOSS" &&
          violation.code() != "FAILED_PRECONDITION") {
        trial.problems.push_back(
            absl::StrCat("audit violation code ", violation.code()));
        ++trial.other_errors;
      }
    }
  }
  return trial;
}

// Flips `flips` random bits of the file `path`.
void FlipBits(const std::string& path, int flips, std::mt19937_64& rng) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(file.good()) << path;
  const uint64_t size = std::filesystem::file_size(path);
  ASSERT_GT(size, 0u) << path;
  for (int i = 0; i < flips; ++i) {
    const uint64_t offset = rng() % size;
    file.seekg(static_cast<std::streamoff>(offset));
    char byte = 0;
    file.read(&byte, 1);
    byte = static_cast<char>(byte ^ (1 << (rng() % 8)));
    file.seekp(static_cast<std::streamoff>(offset));
    file.write(&byte, 1);
  }
  file.close();
  ASSERT_TRUE(file.good() || !file.fail()) << path;
}

class CorruptionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::cout << "corruption_test seed " << Seed()
              << " (re-run with STORELEDGER_CORRUPTION_SEED=" << Seed()
              << ")\n";
    temp_ = new TempDir();
    pristine_ = new Pristine();
    pristine_->dir = temp_->Sub("pristine");
    {
      LedgerOptions options;
      options.sync = false;  // durability is not what this test is about
      absl::StatusOr<std::unique_ptr<Ledger>> ledger =
          Ledger::Open(pristine_->dir, options);
      ASSERT_TRUE(ledger.ok()) << ledger.status();
      for (const v1::Command& command : Plan(kFlushedStores, Seed())) {
        ASSERT_TRUE((*ledger)->Execute(command).ok());
      }
      const EventLog& log = (*ledger)->log();
      std::vector<rocksdb::ColumnFamilyHandle*> families = {
          log.events_cf(), log.streams_cf(), log.commands_cf(), log.meta_cf(),
          log.projections_cf()};
      ASSERT_TRUE(log.db()->Flush(rocksdb::FlushOptions(), families).ok());
      for (rocksdb::ColumnFamilyHandle* family : families) {
        ASSERT_TRUE(log.db()
                        ->CompactRange(rocksdb::CompactRangeOptions(), family,
                                       nullptr, nullptr)
                        .ok());
      }
      // These stay in the WAL (and the memtable) only.
      std::vector<v1::Command> more = Plan(kWalStores, Seed() + 1);
      for (const v1::Command& command : more) {
        ASSERT_TRUE((*ledger)->Execute(command).ok());
      }
      ASSERT_TRUE(log.db()->FlushWAL(/*sync=*/true).ok());
    }
    LedgerOptions options;
    options.read_only = true;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(pristine_->dir, options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    const EventLog& log = (*ledger)->log();
    pristine_->head = log.head().position;
    ASSERT_TRUE(log.Scan(0,
                         [&](const v1::Envelope& envelope, absl::string_view) {
                           pristine_->envelopes.push_back(envelope);
                           return true;
                         })
                    .ok());
    ProjectionReader reader(&log);
    for (v1::StoreKind kind :
         {v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE}) {
      absl::StatusOr<std::vector<std::string>> ids = reader.StoreIds(kind);
      ASSERT_TRUE(ids.ok());
      for (const std::string& id : *ids) {
        absl::StatusOr<v1::StoreState> state =
            BuildStoreState(reader, id, kNow, (*ledger)->policy());
        ASSERT_TRUE(state.ok()) << state.status();
        pristine_->stores[id] = *state;
      }
    }
    for (const v1::Envelope& envelope : pristine_->envelopes) {
      absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
          log.GetOutcome(envelope.command_id());
      ASSERT_TRUE(outcome.ok() && outcome->has_value());
      pristine_->outcomes[envelope.command_id()] = **outcome;
    }
    absl::StatusOr<v1::AuditReport> report = Audit(log);
    ASSERT_TRUE(report.ok() && report->ok()) << "the pristine ledger audits";
  }
  static void TearDownTestSuite() {
    delete pristine_;
    delete temp_;
  }

  // Damages copies of the pristine ledger in files of `kind`, examines each.
  void Run(FileKind kind, absl::string_view name) {
    ASSERT_NE(pristine_, nullptr);
    ASSERT_FALSE(pristine_->envelopes.empty());
    std::vector<std::string> files;
    for (const auto& entry :
         std::filesystem::directory_iterator(pristine_->dir)) {
      if (KindOfFile(entry.path().string()) == kind &&
          std::filesystem::file_size(entry.path()) > 0) {
        files.push_back(entry.path().filename().string());
      }
    }
    std::sort(files.begin(), files.end());
    ASSERT_FALSE(files.empty()) << "no " << name << " files in the ledger";

    std::mt19937_64 rng(Seed() + static_cast<uint64_t>(kind));
    int detected = 0, harmless = 0, open_failed = 0, silently_shorter = 0;
    int data_loss_answers = 0, data_loss_reads = 0, with_position = 0,
        wrong_answers = 0;
    for (int trial_number = 0; trial_number < kTrialsPerKind; ++trial_number) {
      const std::string copy =
          temp_->Sub(absl::StrCat(name, "-", trial_number));
      std::filesystem::copy(pristine_->dir, copy,
                            std::filesystem::copy_options::recursive);
      const std::string file = files[rng() % files.size()];
      const int flips = 1 + static_cast<int>(rng() % kFlipsMax);
      FlipBits(copy + "/" + file, flips, rng);
      const Trial trial = Examine(copy, *pristine_);
      std::filesystem::remove_all(copy);

      const std::string where =
          absl::StrCat(name, " trial ", trial_number, " (", flips, " bits in ",
                       file, ", seed ", Seed(), ")");
      EXPECT_EQ(trial.wrong_answers, 0)
          << where << ": " << absl::StrJoin(trial.problems, "; ");
      EXPECT_EQ(trial.other_errors, 0)
          << where << ": " << absl::StrJoin(trial.problems, "; ");
      if (trial.shorter && !trial.detected()) {
        ++silently_shorter;
        ADD_FAILURE() << where
                      << ": the log came back shorter with no DATA_LOSS: "
                         "acknowledged events vanished silently";
      }
      if (trial.detected()) {
        ++detected;
      } else if (!trial.shorter) {
        ++harmless;
      }
      if (trial.open_failed) ++open_failed;
      data_loss_answers += trial.data_loss;
      data_loss_reads += trial.data_loss_reading_position;
      with_position += trial.data_loss_with_position;
      wrong_answers += trial.wrong_answers;
      // A read of one position that fails says which position it was.
      EXPECT_EQ(trial.data_loss_with_position, trial.data_loss_reading_position)
          << where << ": " << absl::StrJoin(trial.problems, "; ");
    }
    std::cout << name << " corruption: " << kTrialsPerKind
              << " damaged copies: " << detected << " detected as DATA_LOSS ("
              << open_failed << " at open, the rest by reads/scan/audit), "
              << harmless
              << " flips in bytes no answer depends on (every answer equal to "
                 "the undamaged ledger's), "
              << silently_shorter << " silently shorter; " << wrong_answers
              << " wrong answers; " << data_loss_answers
              << " DATA_LOSS answers, " << data_loss_reads
              << " of them to a read of one position, " << with_position
              << " of those naming it\n";
    RecordProperty(absl::StrCat(name, "_detected"), detected);
    EXPECT_GT(detected, kTrialsPerKind / 2);
  }

  // The WAL recovery mode the event log opened the pristine ledger with, from
  // RocksDB's OPTIONS file ("kPointInTimeRecovery", ...).
  static std::string WalRecoveryMode() {
    std::string latest;
    for (const auto& entry :
         std::filesystem::directory_iterator(pristine_->dir)) {
      const std::string name = entry.path().filename().string();
      if (absl::StartsWith(name, "OPTIONS-") && name > latest) latest = name;
    }
    std::ifstream in(pristine_->dir + "/" + latest);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find("wal_recovery_mode=");
      if (at != std::string::npos) {
        return line.substr(at + std::string("wal_recovery_mode=").size());
      }
    }
    return "";
  }

  static TempDir* temp_;
  static Pristine* pristine_;
};

TempDir* CorruptionTest::temp_ = nullptr;
Pristine* CorruptionTest::pristine_ = nullptr;

TEST_F(CorruptionTest, FlippedBitsInTableFilesAreDataLossNeverWrongMoney) {
  Run(FileKind::kTable, "table");
}

// The event log opens with kTolerateCorruptedTailRecords: a torn last WAL
// record (a crash mid-write, never acknowledged) is dropped, a damaged record
// anywhere else is Corruption. Under kPointInTimeRecovery RocksDB would
// recover up to the damaged record and silently drop the acknowledged
// commands after it; this test requires detection, so it fails under that
// mode. What no mode can tell from a torn tail: a flip in the length field of
// a record in the WAL's last, partly written block that makes it reach past
// the end of the file (12 seeds x 40 copies: never hit; it would fail here).
TEST_F(CorruptionTest, FlippedBitsInTheWalAreDataLossNeverWrongMoney) {
  const std::string mode = WalRecoveryMode();
  std::cout << "WAL recovery mode: " << mode << "\n";
  EXPECT_EQ(mode, "kTolerateCorruptedTailRecords");
  Run(FileKind::kWal, "WAL");
}

}  // namespace
}  // namespace storeledger
