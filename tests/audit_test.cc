// `audit` and `verify` against a real RocksDB that the tests damage on
// purpose, through the RocksDB API: a changed byte in an event, a garbage
// envelope, a deleted event, a damaged projection, index entry, command
// outcome or snapshot. Each must be reported by check and position (or key),
// and audit must go on past the damage.
#include "replay/audit.h"

#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/simulate.h"
#include "core/postings.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "storage/event_log.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::CliRun;
using ::storeledger::testing::RunSimulatedPlan;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kStores = 30;
constexpr uint64_t kSeed = 7;
// Small, so that the simulated stores get snapshots and audit checks them.
constexpr uint64_t kSnapshotEvery = 10;

v1::AuditReport ParseReport(const std::string& json) {
  v1::AuditReport report;
  auto status = google::protobuf::util::JsonStringToMessage(json, &report);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return report;
}

// Whether `report` has a violation of `check` at `position`.
bool HasViolation(const v1::AuditReport& report, absl::string_view check,
                  uint64_t position) {
  for (const v1::AuditViolation& v : report.violations()) {
    if (v.check() == check && v.position() == position) return true;
  }
  return false;
}

bool HasViolationForKey(const v1::AuditReport& report, absl::string_view check,
                        absl::string_view escaped_key) {
  for (const v1::AuditViolation& v : report.violations()) {
    if (v.check() == check && v.key() == escaped_key) return true;
  }
  return false;
}

uint64_t ViolationsOf(const v1::AuditReport& report, absl::string_view check) {
  for (const v1::AuditCheck& c : report.checks()) {
    if (c.name() == check) return c.violations();
  }
  ADD_FAILURE() << "no check named " << check;
  return 0;
}

std::string Describe(const v1::AuditReport& report) {
  std::vector<std::string> lines;
  for (const v1::AuditViolation& v : report.violations()) {
    lines.push_back(absl::StrCat("[", v.check(), "] ", v.code(), " @",
                                 v.position(), " key=", v.key(), ": ",
                                 v.message()));
  }
  return absl::StrJoin(lines, "\n");
}

// One simulated ledger per test binary; each test audits a fresh copy of it.
class AuditTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pristine_dir_ = new TempDir();
    LedgerOptions options;
    options.sync = false;
    options.snapshot_every_events = kSnapshotEvery;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(pristine_dir_->Sub("db"), options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    std::cout << "simulated ledger: " << kStores << " stores, seed " << kSeed
              << "\n";
    RunSimulatedPlan(**ledger, PlanMigration(kStores, kSeed));
  }
  static void TearDownTestSuite() {
    delete pristine_dir_;
    pristine_dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(pristine_dir_, nullptr);
    std::filesystem::copy(pristine_dir_->Sub("db"), db_,
                          std::filesystem::copy_options::recursive);
  }

  std::unique_ptr<EventLog> OpenLog() {
    absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(db_);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  CliRun RunAudit() { return RunStoreledger({"--db", db_, "audit"}); }

  // The first position > `after` holding an event for which `pick` is true.
  uint64_t FindPosition(uint64_t after,
                        const std::function<bool(const v1::Envelope&)>& pick) {
    std::unique_ptr<EventLog> log = OpenLog();
    uint64_t found = 0;
    EXPECT_TRUE(log->Scan(after,
                          [&](const v1::Envelope& e, absl::string_view) {
                            if (!pick(e)) return true;
                            found = e.position();
                            return false;
                          })
                    .ok());
    EXPECT_NE(found, 0u) << "no such event after " << after;
    return found;
  }

  uint64_t PaymentPosition(uint64_t after = 100) {
    return FindPosition(after, [](const v1::Envelope& e) {
      return e.payload().has_order_paid();
    });
  }

  std::string RawEvent(EventLog& log, uint64_t position) {
    std::string raw;
    EXPECT_TRUE(log.db()
                    ->Get(rocksdb::ReadOptions(), log.events_cf(),
                          PositionKey(position), &raw)
                    .ok());
    return raw;
  }

  void PutEvent(uint64_t position, const std::string& bytes) {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->events_cf(),
                          PositionKey(position), bytes)
                    .ok());
  }

  // Flips bits of the byte at `offset` (from the start; negative: from the
  // end) of the stored event at `position`.
  void ChangeEventByte(uint64_t position, int offset) {
    std::unique_ptr<EventLog> log = OpenLog();
    std::string raw = RawEvent(*log, position);
    ASSERT_FALSE(raw.empty());
    const size_t at = offset >= 0 ? static_cast<size_t>(offset)
                                  : raw.size() - static_cast<size_t>(-offset);
    ASSERT_LT(at, raw.size());
    raw[at] = static_cast<char>(raw[at] ^ 0x01);
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->events_cf(),
                          PositionKey(position), raw)
                    .ok());
  }

  void PutProjection(const std::string& key, const std::string& value) {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_TRUE(
        log->db()
            ->Put(rocksdb::WriteOptions(), log->projections_cf(), key, value)
            .ok());
  }

  std::string GetProjection(const std::string& key) {
    std::unique_ptr<EventLog> log = OpenLog();
    absl::StatusOr<std::optional<std::string>> value = log->GetProjection(key);
    EXPECT_TRUE(value.ok() && value->has_value()) << key;
    return value.ok() && value->has_value() ? **value : "";
  }

  Head LogHead() { return OpenLog()->head(); }

  static TempDir* pristine_dir_;
  TempDir dir_;
  std::string db_ = dir_.Sub("db");
};

TempDir* AuditTest::pristine_dir_ = nullptr;

TEST_F(AuditTest, SoundLogPassesEveryCheck) {
  const Head head = LogHead();
  CliRun run = RunAudit();
  ASSERT_EQ(run.exit_code, 0) << run.err << run.out;
  v1::AuditReport report = ParseReport(run.out);
  EXPECT_TRUE(report.ok()) << Describe(report);
  EXPECT_EQ(report.violations_total(), 0u);
  EXPECT_EQ(report.head_position(), head.position);
  EXPECT_EQ(report.head_hash(), ToHex(head.hash));
  EXPECT_EQ(report.events_checked(), head.position);
  EXPECT_GT(report.postings_checked(), 0u);
  EXPECT_GE(report.stores_checked(), static_cast<uint64_t>(kStores));
  EXPECT_GT(report.merchants_checked(), 0u);
  EXPECT_GT(report.commands_checked(), 0u);
  EXPECT_GT(report.projection_keys_checked(), 0u);
  ASSERT_EQ(report.checks_size(), 9);
  for (const v1::AuditCheck& check : report.checks()) {
    EXPECT_TRUE(check.ok()) << check.name();
  }
}

TEST_F(AuditTest, SoundLogNeedsNoSecondLook) {
  std::unique_ptr<EventLog> log = OpenLog();
  AuditOptions options;
  options.progress_every = 1;
  std::set<std::string> passes;
  options.progress = [&](absl::string_view pass, uint64_t, uint64_t) {
    passes.insert(std::string(pass));
  };
  absl::StatusOr<v1::AuditReport> report = Audit(*log, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << Describe(*report);
  EXPECT_EQ(passes, (std::set<std::string>{"events", "streams", "commands",
                                           "projections", "merkle tree"}));
}

TEST_F(AuditTest, FixtureHasSnapshotsSoTheirCheckRuns) {
  std::unique_ptr<EventLog> log = OpenLog();
  int snapshots = 0;
  ASSERT_TRUE(log->ScanProjections(kSnapshotPrefix,
                                   [&](absl::string_view, absl::string_view) {
                                     ++snapshots;
                                     return true;
                                   })
                  .ok());
  EXPECT_GT(snapshots, 0);
}

// The issue's first test: one changed byte in one stored event.
class ChangedByteTest : public AuditTest,
                        public ::testing::WithParamInterface<int> {};

TEST_P(ChangedByteTest, AuditAndVerifyNameThePosition) {
  const Head before = LogHead();
  const uint64_t position = PaymentPosition();
  ASSERT_LT(position, before.position);
  ASSERT_NO_FATAL_FAILURE(ChangeEventByte(position, GetParam()));

  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1) << audit.out;
  v1::AuditReport report = ParseReport(audit.out);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(HasViolation(report, kCheckHashChain, position))
      << Describe(report);
  for (const v1::AuditViolation& v : report.violations()) {
    if (v.position() == position) {
      EXPECT_EQ(v.code(), "DATA_LOSS");
    }
  }
  // Nothing before the damage is blamed.
  for (const v1::AuditViolation& v : report.violations()) {
    EXPECT_TRUE(v.position() == 0 || v.position() >= position)
        << Describe(report);
  }
  EXPECT_THAT(audit.err, HasSubstr(absl::StrCat("position ", position)));

  // verify: the head digest taken before the change fails, naming it...
  CliRun verify =
      RunStoreledger({"--db", db_, "verify", "--digest",
                      absl::StrCat(before.position, ":", ToHex(before.hash))});
  EXPECT_EQ(verify.exit_code, 1) << verify.out;
  EXPECT_THAT(verify.err, HasSubstr(absl::StrCat("position ", position)));
}

// Offsets: the first byte (the position field's tag), one inside the
// payload, and one inside the stored hash (the tail).
INSTANTIATE_TEST_SUITE_P(Offsets, ChangedByteTest,
                         ::testing::Values(0, 40, -5));

TEST_F(AuditTest, DigestBeforeTheDamageStillVerifies) {
  const uint64_t position = PaymentPosition();
  std::unique_ptr<EventLog> log = OpenLog();
  absl::StatusOr<v1::Envelope> earlier = log->Read(position - 1);
  ASSERT_TRUE(earlier.ok());
  log.reset();
  ASSERT_NO_FATAL_FAILURE(ChangeEventByte(position, 40));
  CliRun verify =
      RunStoreledger({"--db", db_, "verify", "--digest",
                      absl::StrCat(position - 1, ":", ToHex(earlier->hash()))});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
}

TEST_F(AuditTest, GarbageEnvelopesAreReportedAndAuditGoesOn) {
  const uint64_t first = PaymentPosition(50);
  const uint64_t second = PaymentPosition(first + 20);
  ASSERT_NO_FATAL_FAILURE(PutEvent(first, "not an envelope at all"));
  ASSERT_NO_FATAL_FAILURE(PutEvent(second, std::string(3, '\xff')));
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  EXPECT_TRUE(HasViolation(report, kCheckHashChain, first)) << Describe(report);
  EXPECT_TRUE(HasViolation(report, kCheckHashChain, second))
      << Describe(report);
  // Both were read past: every event was looked at.
  EXPECT_EQ(report.events_checked(), report.head_position());
}

TEST_F(AuditTest, ForgedHashBreaksTheLinkOfTheNextEvent) {
  // Change an event and recompute its own hash: the event looks intact,
  // but the next event's prev_hash no longer links to it.
  const uint64_t position = PaymentPosition();
  {
    std::unique_ptr<EventLog> log = OpenLog();
    absl::StatusOr<v1::Envelope> envelope = log->Read(position);
    ASSERT_TRUE(envelope.ok());
    envelope->mutable_payload()->mutable_order_paid()->set_amount_fen(1);
    envelope->clear_hash();
    envelope->set_hash(EnvelopeHash(*envelope));
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->events_cf(),
                          PositionKey(position),
                          SerializeDeterministic(*envelope))
                    .ok());
  }
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  EXPECT_TRUE(HasViolation(report, kCheckHashChain, position + 1))
      << Describe(report);
  // The forged amount no longer matches the projections, and the store's
  // pending account goes below zero when the order settles.
  EXPECT_GT(ViolationsOf(report, kCheckProjections), 0u) << Describe(report);
  EXPECT_EQ(ViolationsOf(report, kCheckBalances), 1u) << Describe(report);
}

TEST_F(AuditTest, DeletedEventIsAGap) {
  const Head head = LogHead();
  const uint64_t position = PaymentPosition();
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_TRUE(log->db()
                    ->Delete(rocksdb::WriteOptions(), log->events_cf(),
                             PositionKey(position))
                    .ok());
  }
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  ASSERT_TRUE(HasViolation(report, kCheckPositions, position))
      << Describe(report);
  bool named_missing = false;
  for (const v1::AuditViolation& v : report.violations()) {
    if (v.check() == kCheckPositions && v.position() == position) {
      EXPECT_EQ(v.code(), "DATA_LOSS");
      named_missing = absl::StrContains(v.message(), "missing");
    }
  }
  EXPECT_TRUE(named_missing) << Describe(report);
  EXPECT_EQ(report.events_checked(), head.position - 1);

  CliRun verify =
      RunStoreledger({"--db", db_, "verify", "--digest",
                      absl::StrCat(head.position, ":", ToHex(head.hash))});
  EXPECT_EQ(verify.exit_code, 1);
  EXPECT_THAT(verify.err, HasSubstr(absl::StrCat("position ", position)));
}

TEST_F(AuditTest, DamagedHeadEventFailsWithItsPosition) {
  const Head head = LogHead();
  ASSERT_NO_FATAL_FAILURE(ChangeEventByte(head.position, 40));
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  EXPECT_FALSE(report.ok());
  ASSERT_GT(report.violations_size(), 0);
  EXPECT_EQ(report.violations(0).code(), "DATA_LOSS");
  EXPECT_THAT(report.violations(0).message(),
              HasSubstr(absl::StrCat("position ", head.position)));
}

TEST_F(AuditTest, GarbageProjectionIsAMismatch) {
  const std::string store_id = SimulatedStoreId(3);
  PutProjection(StoreKey(store_id), "garbage");
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections,
                                 absl::StrCat("s/", store_id)))
      << Describe(report);
}

TEST_F(AuditTest, DifferentStoreRecordIsAMismatch) {
  const std::string store_id = SimulatedStoreId(5);
  StoreRecord record;
  ASSERT_TRUE(record.ParseFromString(GetProjection(StoreKey(store_id))));
  record.mutable_balances()->set_available_fen(
      record.balances().available_fen() + 100);
  PutProjection(StoreKey(store_id), SerializeDeterministic(record));
  CliRun audit = RunAudit();
  EXPECT_EQ(audit.exit_code, 1);
  v1::AuditReport report = ParseReport(audit.out);
  ASSERT_TRUE(HasViolationForKey(report, kCheckProjections,
                                 absl::StrCat("s/", store_id)))
      << Describe(report);
  EXPECT_EQ(report.violations_total(), 1u) << Describe(report);
  EXPECT_THAT(report.violations(0).message(), HasSubstr("differs"));
}

TEST_F(AuditTest, ChangedOrderRecordIsAMismatch) {
  // The first order of the log, changed in place.
  const uint64_t position = FindPosition(
      0, [](const v1::Envelope& e) { return e.payload().has_order_placed(); });
  std::string order_id;
  {
    std::unique_ptr<EventLog> log = OpenLog();
    order_id = log->Read(position)->payload().order_placed().order_id();
  }
  OrderRecord order;
  ASSERT_TRUE(order.ParseFromString(GetProjection("o/" + order_id)));
  order.set_total_fen(order.total_fen() + 1);
  PutProjection("o/" + order_id, SerializeDeterministic(order));
  v1::AuditReport report = ParseReport(RunAudit().out);
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections, "o/" + order_id))
      << Describe(report);
}

TEST_F(AuditTest, StrayRecordsAreReported) {
  // A store record no event accounts for, and an order no store indexes.
  StoreRecord ghost;
  ghost.set_store_id("ghost");
  ghost.set_kind(v1::WECHAT_STORE);
  PutProjection(StoreKey("ghost"), SerializeDeterministic(ghost));
  OrderRecord order;
  order.set_store_id(SimulatedStoreId(1));
  order.set_order_id("o-ghost");
  PutProjection("o/o-ghost", SerializeDeterministic(order));
  v1::AuditReport report = ParseReport(RunAudit().out);
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections, "s/ghost"))
      << Describe(report);
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections, "o/o-ghost"))
      << Describe(report);
}

TEST_F(AuditTest, DeletedProjectionIsMissing) {
  const std::string store_id = SimulatedStoreId(2);
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_TRUE(log->db()
                    ->Delete(rocksdb::WriteOptions(), log->projections_cf(),
                             StoreKey(store_id))
                    .ok());
  }
  v1::AuditReport report = ParseReport(RunAudit().out);
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections,
                                 absl::StrCat("s/", store_id)))
      << Describe(report);
}

TEST_F(AuditTest, DamagedSnapshotIsAMismatch) {
  std::string key, value;
  {
    std::unique_ptr<EventLog> log = OpenLog();
    ASSERT_TRUE(
        log->ScanProjections(kSnapshotPrefix,
                             [&](absl::string_view k, absl::string_view v) {
                               key = std::string(k);
                               value = std::string(v);
                               return false;
                             })
            .ok());
  }
  ASSERT_FALSE(key.empty());
  v1::StoreSnapshot snapshot;
  ASSERT_TRUE(snapshot.ParseFromString(value));
  snapshot.mutable_store()->mutable_balances()->set_pending_fen(
      snapshot.store().balances().pending_fen() + 7);
  PutProjection(key, SerializeDeterministic(snapshot));
  v1::AuditReport report = ParseReport(RunAudit().out);
  EXPECT_FALSE(report.ok());
  EXPECT_TRUE(HasViolationForKey(report, kCheckProjections, absl::CEscape(key)))
      << Describe(report);
}

TEST_F(AuditTest, MissingIndexEntryIsReported) {
  const uint64_t position = PaymentPosition();
  v1::Envelope envelope;
  {
    std::unique_ptr<EventLog> log = OpenLog();
    envelope = *log->Read(position);
    std::string key = envelope.stream_id();
    key.push_back('\0');
    key += PositionKey(envelope.stream_version());
    ASSERT_TRUE(log->db()
                    ->Delete(rocksdb::WriteOptions(), log->streams_cf(), key)
                    .ok());
  }
  v1::AuditReport report = ParseReport(RunAudit().out);
  // Pass 1: the event is not indexed; pass 2: the stream has a gap.
  EXPECT_TRUE(HasViolation(report, kCheckStreamIndex, position))
      << Describe(report);
  int gaps = 0;
  for (const v1::AuditViolation& v : report.violations()) {
    if (v.check() == kCheckStreamIndex && v.stream_id() == envelope.stream_id())
      ++gaps;
  }
  EXPECT_GE(gaps, 2) << Describe(report);
}

TEST_F(AuditTest, DamagedOutcomeIsReported) {
  const uint64_t position = PaymentPosition();
  std::string command_id;
  {
    std::unique_ptr<EventLog> log = OpenLog();
    command_id = log->Read(position)->command_id();
    absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
        log->GetOutcome(command_id);
    ASSERT_TRUE(outcome.ok() && outcome->has_value());
    v1::StoredOutcome changed = **outcome;
    changed.mutable_result()->set_first_position(position + 1);
    changed.mutable_result()->set_last_position(position + 1);
    ASSERT_TRUE(log->db()
                    ->Put(rocksdb::WriteOptions(), log->commands_cf(),
                          command_id, SerializeDeterministic(changed))
                    .ok());
  }
  v1::AuditReport report = ParseReport(RunAudit().out);
  EXPECT_TRUE(HasViolation(report, kCheckOutcomes, position))
      << Describe(report);
  EXPECT_TRUE(HasViolation(report, kCheckOutcomes, position + 1))
      << Describe(report);
}

TEST_F(AuditTest, EngineReportsProgressAndCapsViolations) {
  // Five damaged events, a cap of three kept violations.
  std::vector<uint64_t> positions;
  uint64_t after = 10;
  for (int i = 0; i < 5; ++i) {
    positions.push_back(PaymentPosition(after));
    after = positions.back() + 1;
  }
  for (uint64_t position : positions) {
    ASSERT_NO_FATAL_FAILURE(PutEvent(position, "x"));
  }
  std::unique_ptr<EventLog> log = OpenLog();
  AuditOptions options;
  options.violations_max = 3;
  options.progress_every = 100;
  std::set<std::string> passes;
  uint64_t last_events_done = 0, events_total = 0;
  options.progress = [&](absl::string_view pass, uint64_t done,
                         uint64_t total) {
    passes.insert(std::string(pass));
    if (pass == "events") {
      EXPECT_GE(done, last_events_done);
      last_events_done = done;
      events_total = total;
    }
  };
  absl::StatusOr<v1::AuditReport> report = Audit(*log, options);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(report->violations_size(), 3);
  EXPECT_GE(report->violations_total(), 5u);
  // Damage makes the engine take a second look to name each problem.
  EXPECT_EQ(passes,
            (std::set<std::string>{"events", "streams", "commands",
                                   "projections", "events (second look)",
                                   "commands (second look)", "merkle tree"}));
  EXPECT_EQ(last_events_done, log->head().position);
  EXPECT_EQ(events_total, log->head().position);
}

TEST_F(AuditTest, AuditBesideAppendsSeesOneConsistentView) {
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db_, options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  std::atomic<bool> stop{false};
  std::atomic<int> appended{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load() && i < 5000; ++i) {
      absl::StatusOr<v1::CommandResult> result =
          (*ledger)->Execute(testing::CommandFromJson(absl::StrCat(
              R"({"commandId":"live-)", i, R"(","occurredAt":")",
              testing::ChinaText(China(12, 1)),
              R"(","openStore":{"storeId":"live-)", i,
              R"(","merchantId":"live-m)", i,
              R"(","kind":"WECHAT_STORE","subject":"ENTERPRISE"}})")));
      if (!result.ok() || result->status() != v1::ACCEPTED) break;
      ++appended;
    }
  });
  for (int round = 0; round < 3; ++round) {
    absl::StatusOr<v1::AuditReport> report = Audit((*ledger)->log());
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->ok()) << Describe(*report);
  }
  stop = true;
  writer.join();
  EXPECT_GT(appended.load(), 0);
}

TEST_F(AuditTest, UnknownFlagIsUsageError) {
  CliRun run = RunStoreledger({"--db", db_, "audit", "--fast"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("--fast"));
}

}  // namespace
}  // namespace storeledger
