// The event log against the real RocksDB in a fresh directory per test.
// Damage is done on purpose through db() and, for write errors, through a
// file system that fails WAL syncs when armed (a fake for crashing, not a
// mock of RocksDB).
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "storage/event_log.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::FileKind;
using ::storeledger::testing::KindOfFile;
using ::storeledger::testing::ListWal;
using ::storeledger::testing::WaitFor;
using ::storeledger::testing::WalFiles;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr char kLockHelperDirVariable[] = "STORELEDGER_LOCK_HELPER_DIR";

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "storage_event_log_XXXXXX";
  char* made = mkdtemp(pattern.data());
  if (made == nullptr) std::abort();
  return pattern;
}

NewEvent MakeEvent(const std::string& stream_id, int64_t expected_version,
                   const std::string& event_id,
                   int64_t occurred_seconds = 100) {
  NewEvent event;
  event.expected_version = expected_version;
  Envelope& envelope = event.envelope;
  envelope.set_stream_id(stream_id);
  envelope.set_event_id(event_id);
  envelope.set_command_id("cmd-" + event_id);
  envelope.set_event_type("StoreOpened");
  envelope.mutable_occurred_at()->set_seconds(occurred_seconds);
  envelope.mutable_recorded_at()->set_seconds(occurred_seconds + 1);
  envelope.set_policy_version("2024-test");
  v1::StoreOpened* opened = envelope.mutable_payload()->mutable_store_opened();
  opened->set_store_id(stream_id);
  opened->set_merchant_id("merchant-" + event_id);
  opened->set_kind(v1::MINI_STORE);
  opened->set_subject(v1::ENTERPRISE);
  return event;
}

AppendRequest Request(std::vector<NewEvent> events) {
  AppendRequest request;
  request.events = std::move(events);
  return request;
}

StoredOutcome Outcome(const std::string& command_id) {
  StoredOutcome outcome;
  outcome.set_fingerprint(Sha256(command_id));
  outcome.mutable_result()->set_command_id(command_id);
  outcome.mutable_result()->set_status(v1::ACCEPTED);
  return outcome;
}

// Every envelope from after+1, or the scan's error.
absl::StatusOr<std::vector<Envelope>> ScanAll(const EventLog& log,
                                              uint64_t after = 0) {
  std::vector<Envelope> out;
  absl::Status status =
      log.Scan(after, [&out](const Envelope& envelope, absl::string_view) {
        out.push_back(envelope);
        return true;
      });
  if (!status.ok()) return status;
  return out;
}

std::vector<uint64_t> StreamVersions(const EventLog& log,
                                     const std::string& stream_id,
                                     uint64_t after = 0) {
  std::vector<uint64_t> versions;
  absl::Status status =
      log.ScanStream(stream_id, after, [&versions](const Envelope& envelope) {
        versions.push_back(envelope.stream_version());
        return true;
      });
  EXPECT_TRUE(status.ok()) << status;
  return versions;
}

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override {
    log_.reset();
    std::filesystem::remove_all(dir_);
  }

  EventLog& OpenLog(const EventLogOptions& options = {}) {
    log_.reset();
    absl::StatusOr<std::unique_ptr<EventLog>> opened =
        EventLog::Open(dir_, options);
    if (!opened.ok()) {
      ADD_FAILURE() << opened.status();
      std::abort();
    }
    log_ = std::move(opened).value();
    return *log_;
  }

  // Opens the log on `failing`'s file system and appends one event.
  template <typename FailingLog>
  EventLog& OpenFailingSync(FailingLog& failing) {
    EventLogOptions options;
    options.env = failing.env.get();
    EventLog& log = OpenLog(options);
    MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1")}));
    return log;
  }

  AppendResult MustAppend(AppendRequest request) {
    absl::StatusOr<AppendResult> result = log_->Append(std::move(request));
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : AppendResult();
  }

  // Stored entries of a column family, for "nothing was written" checks.
  int CountKeys(rocksdb::ColumnFamilyHandle* cf) {
    std::unique_ptr<rocksdb::Iterator> it(
        log_->db()->NewIterator(rocksdb::ReadOptions(), cf));
    int count = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++count;
    EXPECT_TRUE(it->status().ok()) << it->status().ToString();
    return count;
  }

  std::string dir_;
  std::unique_ptr<EventLog> log_;
};

TEST(HashTest, Sha256AndHexMatchKnownVectors) {
  EXPECT_EQ(ToHex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(ToHex(Sha256("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(ToHex(std::string("\x00\x0f\xab\xff", 4)), "000fabff");
  EXPECT_EQ(PositionKey(0x0102030405060708ULL),
            std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
}

TEST_F(EventLogTest, EmptyLogHasZeroHead) {
  EventLog& log = OpenLog();
  EXPECT_EQ(log.head().position, 0u);
  EXPECT_EQ(log.head().hash, std::string(32, '\0'));
  ASSERT_TRUE(ScanAll(log).ok());
  EXPECT_TRUE(ScanAll(log)->empty());
}

TEST_F(EventLogTest, PositionsAreContiguousFromOne) {
  EventLog& log = OpenLog();
  AppendResult first = MustAppend(Request(
      {MakeEvent("s-a", kExpectAny, "e1"), MakeEvent("s-b", kExpectAny, "e2"),
       MakeEvent("s-a", kExpectAny, "e3")}));
  EXPECT_EQ(first.first_position, 1u);
  EXPECT_EQ(first.last_position, 3u);
  AppendResult second =
      MustAppend(Request({MakeEvent("s-c", kExpectAny, "e4"),
                          MakeEvent("s-c", kExpectAny, "e5")}));
  EXPECT_EQ(second.first_position, 4u);
  EXPECT_EQ(second.last_position, 5u);
  EXPECT_EQ(log.head().position, 5u);
  for (uint64_t position = 1; position <= 5; ++position) {
    absl::StatusOr<Envelope> envelope = log.Read(position);
    ASSERT_TRUE(envelope.ok()) << envelope.status();
    EXPECT_EQ(envelope->position(), position);
    EXPECT_EQ(envelope->event_id(), absl::StrCat("e", position));
  }
}

TEST_F(EventLogTest, StreamVersionsAndHeads) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectNoStream, "e1", 10),
                      MakeEvent("s-b", kExpectNoStream, "e2", 20),
                      MakeEvent("s-a", 1, "e3", 30)}));
  MustAppend(Request({MakeEvent("s-a", 2, "e4", 40)}));

  absl::StatusOr<std::optional<StreamHead>> head_a = log.GetStreamHead("s-a");
  ASSERT_TRUE(head_a.ok()) << head_a.status();
  ASSERT_TRUE(head_a->has_value());
  EXPECT_EQ((*head_a)->version(), 3u);
  EXPECT_EQ((*head_a)->last_occurred_at().seconds(), 40);
  absl::StatusOr<std::optional<StreamHead>> head_b = log.GetStreamHead("s-b");
  ASSERT_TRUE(head_b.ok());
  ASSERT_TRUE(head_b->has_value());
  EXPECT_EQ((*head_b)->version(), 1u);
  EXPECT_EQ((*head_b)->last_occurred_at().seconds(), 20);
  absl::StatusOr<std::optional<StreamHead>> head_none =
      log.GetStreamHead("s-none");
  ASSERT_TRUE(head_none.ok());
  EXPECT_FALSE(head_none->has_value());

  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1, 2, 3));
  EXPECT_THAT(StreamVersions(log, "s-a", 1), ElementsAre(2, 3));
  EXPECT_THAT(StreamVersions(log, "s-a", 3), ElementsAre());
  EXPECT_THAT(StreamVersions(log, "s-b"), ElementsAre(1));
  EXPECT_THAT(StreamVersions(log, "s-none"), ElementsAre());
  // "s-a" must not pick up a stream whose id extends it.
  MustAppend(Request({MakeEvent("s-aa", kExpectAny, "e5")}));
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1, 2, 3));

  std::vector<uint64_t> positions;
  ASSERT_TRUE(log.ScanStream("s-a", 0,
                             [&positions](const Envelope& envelope) {
                               positions.push_back(envelope.position());
                               return envelope.stream_version() <
                                      2;  // stop after 2
                             })
                  .ok());
  EXPECT_THAT(positions, ElementsAre(1, 3));
}

TEST_F(EventLogTest, ExpectedVersionConflictIsAbortedAndWritesNothing) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectNoStream, "e1")}));
  const Head before = log.head();

  absl::StatusOr<AppendResult> again =
      log.Append(Request({MakeEvent("s-a", kExpectNoStream, "e2")}));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(again.status().message(),
              AllOf(HasSubstr("s-a"), HasSubstr("expected version 0"),
                    HasSubstr("actual 1")));

  absl::StatusOr<AppendResult> wrong =
      log.Append(Request({MakeEvent("s-a", 5, "e2")}));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(wrong.status().message(),
              AllOf(HasSubstr("s-a"), HasSubstr("expected version 5"),
                    HasSubstr("actual 1")));

  absl::StatusOr<AppendResult> missing =
      log.Append(Request({MakeEvent("s-new", 1, "e2")}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(missing.status().message(), HasSubstr("actual 0"));

  absl::StatusOr<AppendResult> below =
      log.Append(Request({MakeEvent("s-a", -2, "e2")}));
  EXPECT_EQ(below.status().code(), absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(log.head().position, before.position);
  EXPECT_EQ(log.head().hash, before.hash);
  EXPECT_EQ(CountKeys(log.events_cf()), 1);
  MustAppend(Request({MakeEvent("s-a", 1, "e2")}));
  EXPECT_EQ(log.head().position, 2u);
}

TEST_F(EventLogTest, EarlierEventsOfTheSameRequestCount) {
  EventLog& log = OpenLog();
  absl::StatusOr<AppendResult> twice_new =
      log.Append(Request({MakeEvent("s-a", kExpectNoStream, "e1"),
                          MakeEvent("s-a", kExpectNoStream, "e2")}));
  EXPECT_EQ(twice_new.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(log.head().position, 0u);
  MustAppend(Request({MakeEvent("s-a", kExpectNoStream, "e1"),
                      MakeEvent("s-a", 1, "e2"), MakeEvent("s-a", 2, "e3")}));
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1, 2, 3));
}

TEST_F(EventLogTest, MultiStreamAppendIsAtomic) {
  EventLog& log = OpenLog();
  AppendRequest request = Request({MakeEvent("s-source", kExpectNoStream, "e1"),
                                   MakeEvent("s-target", 3, "e2")});
  request.projection_puts = {{"store/s-source", "record"}};
  request.outcome = Outcome("cmd-upgrade");
  absl::StatusOr<AppendResult> result = log.Append(std::move(request));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(result.status().message(), HasSubstr("s-target"));

  EXPECT_EQ(log.head().position, 0u);
  EXPECT_EQ(CountKeys(log.events_cf()), 0);
  EXPECT_EQ(CountKeys(log.streams_cf()), 0);
  EXPECT_EQ(CountKeys(log.commands_cf()), 0);
  EXPECT_EQ(CountKeys(log.projections_cf()), 0);
  EXPECT_FALSE(log.GetStreamHead("s-source")->has_value());
  EXPECT_FALSE(log.GetOutcome("cmd-upgrade")->has_value());
  EXPECT_EQ(log.Read(1).status().code(), absl::StatusCode::kNotFound);

  // And the same upgrade with the right versions writes all of it.
  AppendRequest good = Request({MakeEvent("s-source", kExpectNoStream, "e1"),
                                MakeEvent("s-target", kExpectNoStream, "e2")});
  good.projection_puts = {{"store/s-source", "record"}};
  good.outcome = Outcome("cmd-upgrade");
  AppendResult appended = MustAppend(std::move(good));
  EXPECT_EQ(appended.first_position, 1u);
  EXPECT_EQ(appended.last_position, 2u);
  EXPECT_EQ(*log.GetProjection("store/s-source").value(), "record");
}

TEST_F(EventLogTest, StoresCommandOutcomes) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e0")}));
  AppendRequest request = Request(
      {MakeEvent("s-a", kExpectAny, "e1"), MakeEvent("s-b", kExpectAny, "e2")});
  StoredOutcome outcome = Outcome("cmd-1");
  outcome.mutable_result()->set_first_position(77);  // overwritten by the log
  request.outcome = outcome;
  MustAppend(std::move(request));

  absl::StatusOr<std::optional<StoredOutcome>> stored = log.GetOutcome("cmd-1");
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->fingerprint(), Sha256("cmd-1"));
  EXPECT_EQ((*stored)->result().status(), v1::ACCEPTED);
  EXPECT_EQ((*stored)->result().first_position(), 2u);
  EXPECT_EQ((*stored)->result().last_position(), 3u);

  // An outcome with no events: positions 0/0, head unchanged.
  const Head before = log.head();
  AppendRequest outcome_only;
  outcome_only.outcome = Outcome("cmd-2");
  outcome_only.outcome->mutable_result()->set_status(v1::REJECTED);
  AppendResult result = MustAppend(std::move(outcome_only));
  EXPECT_EQ(result.first_position, 0u);
  EXPECT_EQ(result.last_position, 0u);
  EXPECT_EQ(result.head_hash, before.hash);
  EXPECT_EQ(log.head().position, before.position);
  absl::StatusOr<std::optional<StoredOutcome>> rejected =
      log.GetOutcome("cmd-2");
  ASSERT_TRUE(rejected.ok());
  ASSERT_TRUE(rejected->has_value());
  EXPECT_EQ((*rejected)->result().status(), v1::REJECTED);
  EXPECT_EQ((*rejected)->result().first_position(), 0u);
  EXPECT_EQ((*rejected)->result().last_position(), 0u);

  EXPECT_FALSE(log.GetOutcome("cmd-unknown")->has_value());

  AppendRequest no_id;
  no_id.outcome = StoredOutcome();
  EXPECT_EQ(log.Append(std::move(no_id)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EventLogTest, HashChainLinksAndRecomputes) {
  EventLog& log = OpenLog();
  AppendResult first =
      MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1"),
                          MakeEvent("s-b", kExpectAny, "e2")}));
  EXPECT_EQ(first.head_hash, log.head().hash);
  AppendResult second =
      MustAppend(Request({MakeEvent("s-a", kExpectAny, "e3")}));
  EXPECT_EQ(second.head_hash, log.head().hash);

  std::vector<std::string> raws;
  ASSERT_TRUE(log.Scan(0,
                       [&raws](const Envelope&, absl::string_view raw) {
                         raws.emplace_back(raw);
                         return true;
                       })
                  .ok());
  absl::StatusOr<std::vector<Envelope>> all = ScanAll(log);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  std::string prev(32, '\0');
  for (size_t i = 0; i < all->size(); ++i) {
    const Envelope& envelope = (*all)[i];
    EXPECT_EQ(envelope.prev_hash(), prev) << "position " << i + 1;
    EXPECT_EQ(envelope.hash().size(), 32u);
    EXPECT_EQ(envelope.hash(), EnvelopeHash(envelope));
    // The hash is SHA-256(prev_hash || bytes without the hash field).
    Envelope without_hash = envelope;
    without_hash.clear_hash();
    EXPECT_EQ(envelope.hash(), Sha256(prev + without_hash.SerializeAsString()));
    // The raw bytes are the envelope's bytes.
    EXPECT_EQ(raws[i], envelope.SerializeAsString());
    prev = envelope.hash();
  }
  EXPECT_EQ(log.head().hash, prev);

  // A scan from the middle links to the envelope before it.
  absl::StatusOr<std::vector<Envelope>> tail = ScanAll(log, 2);
  ASSERT_TRUE(tail.ok()) << tail.status();
  ASSERT_EQ(tail->size(), 1u);
  EXPECT_EQ((*tail)[0].position(), 3u);
  absl::StatusOr<std::vector<Envelope>> none = ScanAll(log, 3);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// Scan parses onto an arena it frees every 1024 envelopes, ScanBatches hands
// out batches the caller may keep (by swapping): every envelope reads back
// whole and in order either way, each batch full but the last.
TEST_F(EventLogTest, ScanAndScanBatchesOverManyEnvelopes) {
  EventLog& log = OpenLog();
  constexpr uint64_t kEvents = 2500;
  for (uint64_t i = 1; i <= kEvents; i += 100) {
    std::vector<NewEvent> events;
    for (uint64_t j = i; j < i + 100; ++j) {
      events.push_back(MakeEvent(absl::StrCat("s-", j % 7), kExpectAny,
                                 absl::StrCat("event-with-a-long-id-", j)));
    }
    MustAppend(Request(std::move(events)));
  }
  ASSERT_EQ(log.head().position, kEvents);

  absl::StatusOr<std::vector<Envelope>> all = ScanAll(log);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), kEvents);
  for (uint64_t i = 0; i < kEvents; ++i) {
    EXPECT_EQ((*all)[i].position(), i + 1);
    EXPECT_EQ((*all)[i].event_id(),
              absl::StrCat("event-with-a-long-id-", i + 1));
    EXPECT_EQ((*all)[i].hash(), EnvelopeHash((*all)[i]));
  }

  std::vector<EnvelopeBatch> kept;
  ASSERT_TRUE(log.ScanBatches(300, 1000,
                              [&](EnvelopeBatch* batch) {
                                kept.emplace_back();
                                std::swap(kept.back(), *batch);
                                return true;
                              })
                  .ok());
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].size(), 1000u);
  EXPECT_EQ(kept[1].size(), 1000u);
  EXPECT_EQ(kept[2].size(), 200u);
  uint64_t position = 300;
  for (const EnvelopeBatch& batch : kept) {
    for (size_t i = 0; i < batch.size(); ++i) {
      ++position;
      EXPECT_EQ(batch[i].position(), position);
      EXPECT_EQ(batch[i].SerializeAsString(),
                (*all)[position - 1].SerializeAsString());
    }
  }
  EXPECT_EQ(position, kEvents);

  // Stopping early: fn returning false ends the scan without an error.
  int calls = 0;
  ASSERT_TRUE(log.ScanBatches(0, 1000,
                              [&](EnvelopeBatch*) {
                                ++calls;
                                return false;
                              })
                  .ok());
  EXPECT_EQ(calls, 1);

  // A batch size of 0 is taken as 1; a scan from the head hands out nothing.
  std::vector<uint64_t> positions;
  ASSERT_TRUE(log.ScanBatches(kEvents - 2, 0,
                              [&](EnvelopeBatch* batch) {
                                if (batch->size() != 1) {
                                  ADD_FAILURE()
                                      << "a batch of " << batch->size();
                                  return false;
                                }
                                positions.push_back((*batch)[0].position());
                                return true;
                              })
                  .ok());
  EXPECT_THAT(positions, ElementsAre(kEvents - 1, kEvents));
  calls = 0;
  ASSERT_TRUE(log.ScanBatches(kEvents, 1000,
                              [&](EnvelopeBatch*) {
                                ++calls;
                                return true;
                              })
                  .ok());
  EXPECT_EQ(calls, 0);
}

TEST_F(EventLogTest, ReopenPreservesEverything) {
  std::string head_hash;
  {
    EventLog& log = OpenLog();
    AppendRequest request =
        Request({MakeEvent("s-a", kExpectNoStream, "e1", 5),
                 MakeEvent("s-b", kExpectNoStream, "e2", 6)});
    request.projection_puts = {{"p/1", "one"}, {"p/2", "two"}};
    request.outcome = Outcome("cmd-1");
    MustAppend(std::move(request));
    head_hash = log.head().hash;
  }
  log_.reset();
  EventLog& log = OpenLog();
  EXPECT_EQ(log.head().position, 2u);
  EXPECT_EQ(log.head().hash, head_hash);
  absl::StatusOr<std::vector<Envelope>> all = ScanAll(log);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), 2u);
  EXPECT_EQ((*log.GetStreamHead("s-a"))->version(), 1u);
  EXPECT_EQ((*log.GetStreamHead("s-b"))->last_occurred_at().seconds(), 6);
  EXPECT_EQ(*log.GetProjection("p/2").value(), "two");
  EXPECT_EQ((*log.GetOutcome("cmd-1"))->result().last_position(), 2u);

  // The chain continues from the stored head.
  MustAppend(Request({MakeEvent("s-a", 1, "e3")}));
  absl::StatusOr<Envelope> third = log.Read(3);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->prev_hash(), head_hash);
  EXPECT_EQ(third->stream_version(), 2u);
}

TEST_F(EventLogTest, OpenReportsTheTimeOfItsSteps) {
  {
    OpenLog();
    MustAppend(Request({MakeEvent("s-a", kExpectNoStream, "e1")}));
  }
  log_.reset();
  EventLogOpenStats stats;
  EventLogOptions options;
  options.open_stats = &stats;
  const absl::Time began = absl::Now();
  OpenLog(options);
  const absl::Duration took = absl::Now() - began;
  // RocksDB's open replays the WAL of the append above: never no time.
  EXPECT_GT(stats.rocksdb_open, absl::ZeroDuration());
  EXPECT_GE(stats.initialize, absl::ZeroDuration());
  EXPECT_GE(stats.load_head, absl::ZeroDuration());
  EXPECT_GE(stats.merkle, absl::ZeroDuration());
  EXPECT_LE(
      stats.rocksdb_open + stats.initialize + stats.load_head + stats.merkle,
      took);
}

// What an open after a crash replays is bounded: the WAL kept stays near
// the memtable budget, although "streams", "meta" and "merkle" fill far
// more slowly than "events" and would keep every WAL file since their last
// flush.
TEST_F(EventLogTest, TheWalKeptForRecoveryStaysNearTheMemtableBudget) {
  constexpr size_t kBudgetBytes = 1 << 20;
  constexpr int kEvents = 2000;  // ~4 KiB each: ~8 MiB of WAL written
  EventLogOptions options;
  options.memtables_bytes_max = kBudgetBytes;
  options.sync = false;
  EventLog& log = OpenLog(options);
  for (int i = 0; i < kEvents; ++i) {
    NewEvent event =
        MakeEvent(absl::StrCat("s-", i), kExpectNoStream, absl::StrCat("e", i));
    event.envelope.mutable_payload()->mutable_store_opened()->set_merchant_id(
        std::string(4096, 'm'));
    MustAppend(Request({std::move(event)}));
  }
  // The flushes that let old WAL files go run in the background.
  absl::StatusOr<WalFiles> wal;
  WaitFor(
      [&] {
        wal = ListWal(dir_);
        return !wal.ok() || wal->bytes <= 3 * kBudgetBytes;
      },
      absl::Seconds(10));
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_LE(wal->bytes, 3 * kBudgetBytes);
  EXPECT_EQ(log.head().position, static_cast<uint64_t>(kEvents));
  // Nothing was lost to the flushes: a reopen has every event.
  EventLog& reopened = OpenLog(options);
  EXPECT_EQ(reopened.head().position, static_cast<uint64_t>(kEvents));
  absl::StatusOr<std::vector<Envelope>> all = ScanAll(reopened);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), static_cast<size_t>(kEvents));
}

// ListWal, which the test above and storeledger-recovery-bench read: only
// RocksDB's write-ahead log files count, and a directory that is not there
// is an error naming it, not an empty log.
TEST(ListWalTest, CountsWalFilesOnlyAndNamesAMissingDirectory) {
  const std::string dir = MakeTempDir();
  auto write = [&](const std::string& name, size_t bytes) {
    std::ofstream(dir + "/" + name) << std::string(bytes, 'x');
  };
  write("000007.log", 5);
  write("000009.log", 0);
  write("LOG", 11);
  write("LOG.old.1765000000", 13);
  write("000008.sst", 17);
  write("MANIFEST-000005", 19);
  absl::StatusOr<WalFiles> wal = ListWal(dir);
  ASSERT_TRUE(wal.ok()) << wal.status();
  EXPECT_EQ(wal->count, 2);
  EXPECT_EQ(wal->bytes, 5u);

  const std::string missing = dir + "/not-a-ledger";
  wal = ListWal(missing);
  EXPECT_EQ(wal.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(wal.status().message(), HasSubstr(missing));
  std::filesystem::remove_all(dir);
}

TEST_F(EventLogTest, ReadPastHeadIsNotFound) {
  EventLog& log = OpenLog();
  EXPECT_EQ(log.Read(1).status().code(), absl::StatusCode::kNotFound);
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1")}));
  EXPECT_TRUE(log.Read(1).ok());
  EXPECT_EQ(log.Read(2).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(log.Read(0).status().code(), absl::StatusCode::kNotFound);
}

// ScanBatches with the hashes left to the consumer, which checks each
// batch as it gets it: the first error, the consumer's or the scan's.
absl::Status ScanBatchesByConsumer(const EventLog& log, size_t batch_events) {
  absl::Status consumer;
  absl::Status scan = log.ScanBatches(
      0, batch_events,
      [&](EnvelopeBatch* batch) {
        consumer = batch->VerifyHashes();
        return consumer.ok();
      },
      BatchHashes::kByConsumer);
  return consumer.ok() ? scan : consumer;
}

TEST_F(EventLogTest, CorruptByteIsDataLossNamingThePosition) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1"),
                      MakeEvent("s-a", kExpectAny, "e2"),
                      MakeEvent("s-a", kExpectAny, "e3")}));
  std::string original;
  ASSERT_TRUE(log.db()
                  ->Get(rocksdb::ReadOptions(), log.events_cf(), PositionKey(2),
                        &original)
                  .ok());
  // Every single flipped byte of the stored envelope is caught.
  for (size_t i = 0; i < original.size(); ++i) {
    std::string damaged = original;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
    ASSERT_TRUE(log.db()
                    ->Put(rocksdb::WriteOptions(), log.events_cf(),
                          PositionKey(2), damaged)
                    .ok());
    absl::Status read = log.Read(2).status();
    EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss) << "byte " << i;
    EXPECT_THAT(read.message(), HasSubstr("position 2")) << "byte " << i;
    absl::Status scan = ScanAll(log).status();
    EXPECT_EQ(scan.code(), absl::StatusCode::kDataLoss) << "byte " << i;
    EXPECT_THAT(scan.message(), HasSubstr("position 2")) << "byte " << i;
    // With the hashes checked by the consumer, the very same error, whether
    // the damaged envelope was handed over (batches of 1 and 2) or was
    // still in the scan's batch when it failed (1000).
    for (const size_t batch_events : {1, 2, 1000}) {
      EXPECT_EQ(ScanBatchesByConsumer(log, batch_events), scan)
          << "byte " << i << ", batches of " << batch_events;
    }
  }
  // Undamaged neighbours still read.
  EXPECT_TRUE(log.Read(1).ok());
  EXPECT_TRUE(log.Read(3).ok());
}

TEST_F(EventLogTest, ValidEnvelopeOutOfChainIsDataLoss) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1"),
                      MakeEvent("s-a", kExpectAny, "e2")}));
  // Re-hash position 2 against a different prev_hash: it verifies on its own
  // but no longer links to position 1.
  Envelope forged = *log.Read(2);
  forged.set_prev_hash(std::string(32, 'x'));
  forged.set_hash(EnvelopeHash(forged));
  ASSERT_TRUE(log.db()
                  ->Put(rocksdb::WriteOptions(), log.events_cf(),
                        PositionKey(2), forged.SerializeAsString())
                  .ok());
  EXPECT_TRUE(log.Read(2).ok());
  absl::Status scan = ScanAll(log).status();
  EXPECT_EQ(scan.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(scan.message(), HasSubstr("position 2"));

  // An envelope stored under the wrong key.
  Envelope moved = *log.Read(1);
  ASSERT_TRUE(log.db()
                  ->Put(rocksdb::WriteOptions(), log.events_cf(),
                        PositionKey(2), moved.SerializeAsString())
                  .ok());
  EXPECT_EQ(log.Read(2).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(EventLogTest, DeletedEventIsAGap) {
  EventLog& log = OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1"),
                      MakeEvent("s-a", kExpectAny, "e2"),
                      MakeEvent("s-a", kExpectAny, "e3")}));
  ASSERT_TRUE(
      log.db()
          ->Delete(rocksdb::WriteOptions(), log.events_cf(), PositionKey(2))
          .ok());
  absl::Status scan = ScanAll(log).status();
  EXPECT_EQ(scan.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(scan.message(), HasSubstr("position 2 is missing"));
  EXPECT_EQ(log.Read(2).status().code(), absl::StatusCode::kDataLoss);
  absl::Status stream =
      log.ScanStream("s-a", 0, [](const Envelope&) { return true; });
  EXPECT_EQ(stream.code(), absl::StatusCode::kDataLoss);

  // The last event gone: the scan ends short of the head, and the head no
  // longer matches the events on reopen.
  ASSERT_TRUE(
      log.db()
          ->Delete(rocksdb::WriteOptions(), log.events_cf(), PositionKey(3))
          .ok());
  absl::Status tail = ScanAll(log, 2).status();
  EXPECT_EQ(tail.code(), absl::StatusCode::kDataLoss);
  log_.reset();
  absl::StatusOr<std::unique_ptr<EventLog>> reopened = EventLog::Open(dir_);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(reopened.status().message(), HasSubstr("position 1"));
}

// The envelope bytes as the log will store them, with a filler of `filler`
// bytes in the payload.
NewEvent EventOfFiller(size_t filler) {
  NewEvent event = MakeEvent("s-big", kExpectAny, "big");
  event.envelope.mutable_payload()->mutable_store_opened()->set_store_id(
      std::string(filler, 'f'));
  return event;
}

size_t StoredBytes(const NewEvent& event) {
  Envelope envelope = event.envelope;
  envelope.set_position(1);
  envelope.set_stream_version(1);
  envelope.set_prev_hash(std::string(32, '\0'));
  envelope.set_hash(std::string(32, '\0'));
  return envelope.ByteSizeLong();
}

TEST_F(EventLogTest, EnvelopeSizeLimitAtAndPast) {
  EventLog& log = OpenLog();
  size_t filler = kEnvelopeBytesMax - 300;
  for (int i = 0; i < 4; ++i) {
    filler += kEnvelopeBytesMax - StoredBytes(EventOfFiller(filler));
  }
  ASSERT_EQ(StoredBytes(EventOfFiller(filler)), kEnvelopeBytesMax);

  absl::StatusOr<AppendResult> over = log.Append(Request(
      {MakeEvent("s-small", kExpectAny, "e0"), EventOfFiller(filler + 1)}));
  EXPECT_EQ(over.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(over.status().message(), HasSubstr("over the limit"));
  EXPECT_EQ(log.head().position, 0u);
  EXPECT_EQ(CountKeys(log.events_cf()), 0);
  EXPECT_EQ(CountKeys(log.streams_cf()), 0);

  AppendResult at = MustAppend(Request({EventOfFiller(filler)}));
  EXPECT_EQ(at.last_position, 1u);
  std::string raw;
  ASSERT_TRUE(
      log.db()
          ->Get(rocksdb::ReadOptions(), log.events_cf(), PositionKey(1), &raw)
          .ok());
  EXPECT_EQ(raw.size(), kEnvelopeBytesMax);
  EXPECT_TRUE(log.Read(1).ok());
}

TEST_F(EventLogTest, BadStreamIdsAreRejected) {
  EventLog& log = OpenLog();
  absl::StatusOr<AppendResult> empty =
      log.Append(Request({MakeEvent("", kExpectAny, "e1")}));
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<AppendResult> nul = log.Append(
      Request({MakeEvent("s-a", kExpectAny, "e1"),
               MakeEvent(std::string("s\0b", 3), kExpectAny, "e2")}));
  EXPECT_EQ(nul.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log.head().position, 0u);
  EXPECT_EQ(CountKeys(log.events_cf()), 0);
  EXPECT_EQ(log.GetStreamHead("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(EventLogTest, SecondOpenIsInUse) {
  OpenLog();
  absl::StatusOr<std::unique_ptr<EventLog>> second = EventLog::Open(dir_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(),
              HasSubstr(absl::StrCat("database ", dir_,
                                     " is in use by another process")));

  // And from a real second process: this binary, running the helper below.
  char self[4096];
  ssize_t self_bytes = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(self_bytes, 0);
  self[self_bytes] = '\0';
  const std::string command = absl::StrCat(
      kLockHelperDirVariable, "='", dir_, "' '", self,
      "' --gtest_filter=EventLogLockHelper.OpenDirFromEnvironment 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    output.append(buffer, got);
  }
  EXPECT_EQ(pclose(pipe), 0) << output;
  EXPECT_THAT(output, HasSubstr("HELPER_STATUS: FAILED_PRECONDITION"));
  EXPECT_THAT(output, HasSubstr("is in use by another process"));
  EXPECT_THAT(output, HasSubstr("While lock file"));  // RocksDB's text
}

// Runs only as the second process of SecondOpenIsInUse.
TEST(EventLogLockHelper, OpenDirFromEnvironment) {
  const char* dir = getenv(kLockHelperDirVariable);
  if (dir == nullptr) GTEST_SKIP() << "helper for SecondOpenIsInUse";
  absl::StatusOr<std::unique_ptr<EventLog>> opened = EventLog::Open(dir);
  std::printf("HELPER_STATUS: %s\n", opened.status().ToString().c_str());
}

TEST_F(EventLogTest, ReadOnlyOpenReadsAndRefusesAppends) {
  OpenLog();
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e1")}));
  EventLogOptions read_only;
  read_only.read_only = true;
  // Read-only opens do not take the lock: they may share the directory.
  absl::StatusOr<std::unique_ptr<EventLog>> reader =
      EventLog::Open(dir_, read_only);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->head().position, 1u);
  EXPECT_TRUE((*reader)->Read(1).ok());
  EXPECT_EQ((*reader)
                ->Append(Request({MakeEvent("s-a", kExpectAny, "e2")}))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(EventLogTest, MissingDatabaseWithoutCreateIsNotFound) {
  EventLogOptions options;
  options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<EventLog>> opened =
      EventLog::Open(dir_ + "/absent", options);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kNotFound)
      << opened.status();
}

TEST_F(EventLogTest, OtherFormatVersionIsFailedPrecondition) {
  EventLog& log = OpenLog();
  ASSERT_TRUE(log.db()
                  ->Put(rocksdb::WriteOptions(), log.meta_cf(),
                        "format_version", std::string("\0\0\0\x03", 4))
                  .ok());
  log_.reset();
  absl::StatusOr<std::unique_ptr<EventLog>> reopened = EventLog::Open(dir_);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(reopened.status().message(), HasSubstr("format version 3"));
}

std::vector<std::string> ColumnFamiliesOf(const std::string& dir) {
  std::vector<std::string> families;
  EXPECT_TRUE(
      rocksdb::DB::ListColumnFamilies(rocksdb::Options(), dir, &families).ok());
  return families;
}

// Only an empty or absent directory becomes a new ledger; a database
// without the format marker is refused, writable or read-only, and left as
// it was (it used to be taken over, column families added).
TEST_F(EventLogTest, ADatabaseThatIsNotALedgerIsRefusedAndLeftAlone) {
  EventLogOptions read_only;
  read_only.read_only = true;
  read_only.create_if_missing = false;
  struct Foreign {
    std::string name;
    std::vector<std::string> families;
    bool put;
  };
  const std::vector<Foreign> foreign = {
      {"ldb", {"default"}, true},
      {"other-family", {"default", "cache"}, false},
      {"ledger-families-with-data", {"default", "events", "meta"}, true},
      {"all-six-with-data",
       {"default", "events", "streams", "commands", "meta", "projections"},
       true},
  };
  for (const Foreign& f : foreign) {
    SCOPED_TRACE(f.name);
    const std::string dir = dir_ + "/" + f.name;
    ASSERT_NO_FATAL_FAILURE(
        testing::MakeForeignRocksDb(dir, f.families, f.put));
    for (const EventLogOptions& options : {EventLogOptions(), read_only}) {
      absl::StatusOr<std::unique_ptr<EventLog>> opened =
          EventLog::Open(dir, options);
      EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition)
          << opened.status();
      EXPECT_THAT(opened.status().message(),
                  AllOf(HasSubstr(absl::StrCat("database ", dir,
                                               " is not a storeledger ledger")),
                        ::testing::Not(HasSubstr("\n"))));
    }
    EXPECT_EQ(ColumnFamiliesOf(dir), f.families);
  }

  // A directory holding something that is not a database.
  const std::string other = dir_ + "/other";
  std::filesystem::create_directories(other);
  { std::ofstream(other + "/notes.txt") << "mine\n"; }
  EXPECT_THAT(EventLog::Open(other).status().message(),
              HasSubstr("the directory holds notes.txt"));

  // Empty and absent directories become ledgers; so does a ledger whose
  // creation was cut short (some of its column families, all empty).
  const std::string empty = dir_ + "/empty";
  std::filesystem::create_directories(empty);
  EXPECT_TRUE(EventLog::Open(empty).ok());
  EXPECT_TRUE(EventLog::Open(dir_ + "/absent").ok());
  const std::string cut_short = dir_ + "/cut-short";
  ASSERT_NO_FATAL_FAILURE(
      testing::MakeForeignRocksDb(cut_short, {"default", "events"}, false));
  absl::StatusOr<std::unique_ptr<EventLog>> finished =
      EventLog::Open(cut_short);
  ASSERT_TRUE(finished.ok()) << finished.status();
  EXPECT_EQ((*finished)->head().position, 0u);
  finished->reset();
  EXPECT_TRUE(EventLog::Open(cut_short, read_only).ok());
}

TEST_F(EventLogTest, ProjectionsScanByPrefix) {
  EventLog& log = OpenLog();
  AppendRequest request;
  request.projection_puts = {{"store/a/2", "a2"},
                             {"store/a/1", "a1"},
                             {"store/b/1", "b1"},
                             {"store/a", "a"},
                             {"storf", "x"},
                             {std::string("\xff\xff", 2), "ff"},
                             {std::string("\xff\xff\x01", 3), "ff1"}};
  MustAppend(std::move(request));

  auto scan = [&log](absl::string_view prefix) {
    std::vector<std::pair<std::string, std::string>> out;
    absl::Status status = log.ScanProjections(
        prefix, [&out](absl::string_view key, absl::string_view value) {
          out.emplace_back(key, value);
          return true;
        });
    EXPECT_TRUE(status.ok()) << status;
    return out;
  };
  EXPECT_THAT(scan("store/a/"),
              ElementsAre(Pair("store/a/1", "a1"), Pair("store/a/2", "a2")));
  EXPECT_THAT(scan("store/a"),
              ElementsAre(Pair("store/a", "a"), Pair("store/a/1", "a1"),
                          Pair("store/a/2", "a2")));
  EXPECT_THAT(scan(std::string("\xff\xff", 2)),
              ElementsAre(Pair(std::string("\xff\xff", 2), "ff"),
                          Pair(std::string("\xff\xff\x01", 3), "ff1")));
  EXPECT_EQ(scan("").size(), 7u);
  EXPECT_TRUE(scan("nothing").empty());

  int seen = 0;
  ASSERT_TRUE(
      log.ScanProjections("store/",
                          [&seen](absl::string_view, absl::string_view) {
                            return ++seen < 2;
                          })
          .ok());
  EXPECT_EQ(seen, 2);

  // Deletes and puts in one append; a key both deleted and put is put.
  AppendRequest change;
  change.projection_deletes = {"store/a/1", "store/a/2"};
  change.projection_puts = {{"store/a/2", "a2-new"}};
  MustAppend(std::move(change));
  EXPECT_THAT(scan("store/a/"), ElementsAre(Pair("store/a/2", "a2-new")));
  EXPECT_FALSE(log.GetProjection("store/a/1")->has_value());
}

// A file system whose WAL syncs fail once armed.
class FailingSyncFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FailingSyncFileSystem(std::shared_ptr<rocksdb::FileSystem> target)
      : FileSystemWrapper(std::move(target)) {}
  const char* Name() const override { return "FailingSyncFileSystem"; }

  void Arm() { armed_ = true; }

  rocksdb::IOStatus NewWritableFile(
      const std::string& name, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(name, options, result, dbg);
    if (s.ok() && KindOfFile(name) == FileKind::kWal) {
      *result = std::make_unique<File>(std::move(*result), &armed_);
    }
    return s;
  }

 private:
  class File : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    File(std::unique_ptr<rocksdb::FSWritableFile> target,
         const std::atomic<bool>* armed)
        : FSWritableFileOwnerWrapper(std::move(target)), armed_(armed) {}
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
      if (*armed_) return rocksdb::IOStatus::IOError("injected sync failure");
      return FSWritableFileOwnerWrapper::Sync(options, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                            rocksdb::IODebugContext* dbg) override {
      if (*armed_) return rocksdb::IOStatus::IOError("injected sync failure");
      return FSWritableFileOwnerWrapper::Fsync(options, dbg);
    }

   private:
    const std::atomic<bool>* armed_;
  };

  std::atomic<bool> armed_{false};
};

// A log on a file system whose WAL syncs fail once armed, holding one
// synced event at position 1.
struct FailingSyncLog {
  std::shared_ptr<FailingSyncFileSystem> file_system =
      std::make_shared<FailingSyncFileSystem>(rocksdb::FileSystem::Default());
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(file_system);
};

TEST_F(EventLogTest, WriteErrorMakesTheLogReadOnlyUntilReopen) {
  FailingSyncLog failing;
  auto& file_system = failing.file_system;
  EventLog& log = OpenFailingSync(failing);
  const Head before = log.head();

  file_system->Arm();
  absl::StatusOr<AppendResult> failed =
      log.Append(Request({MakeEvent("s-a", kExpectAny, "e2")}));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable)
      << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr("injected sync failure"));
  EXPECT_EQ(log.head().position, before.position);
  EXPECT_EQ(log.head().hash, before.hash);

  absl::StatusOr<AppendResult> later =
      log.Append(Request({MakeEvent("s-a", kExpectAny, "e3")}));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(later.status().message(),
              AllOf(HasSubstr("ledger is read-only after a write error: "),
                    HasSubstr("injected sync failure"),
                    HasSubstr("; reopen to recover")));
  EXPECT_TRUE(log.Read(1).ok());

  // Reopen recovers. Whether the failed append survived is unknown to its
  // caller (its bytes may have reached the WAL); either way the log is whole.
  log_.reset();
  EventLog& reopened = OpenLog();
  EXPECT_GE(reopened.head().position, 1u);
  EXPECT_LE(reopened.head().position, 2u);
  EXPECT_TRUE(ScanAll(reopened).ok());
  MustAppend(Request({MakeEvent("s-a", kExpectAny, "e4")}));
  EXPECT_TRUE(ScanAll(reopened).ok());
}

absl::StatusOr<std::vector<AppendResult>> AppendUnsynced(
    EventLog& log, AppendRequest request) {
  std::vector<AppendRequest> requests;
  requests.push_back(std::move(request));
  return log.AppendBatch(std::move(requests), nullptr, /*sync=*/false);
}

AppendRequest WithPuts(AppendRequest request,
                       std::vector<std::pair<std::string, std::string>> puts) {
  request.projection_puts = std::move(puts);
  return request;
}

// e1 on s-a with projection r/1 = "one", synced; then e2 on s-a with
// r/1 = "two" and r/2 = "new", unsynced.
void AppendSyncedThenUnsynced(EventLog& log) {
  ASSERT_TRUE(
      log.Append(WithPuts(Request({MakeEvent("s-a", kExpectNoStream, "e1")}),
                          {{"r/1", "one"}}))
          .ok());
  ASSERT_TRUE(AppendUnsynced(log, WithPuts(Request({MakeEvent("s-a", 1, "e2")}),
                                           {{"r/1", "two"}, {"r/2", "new"}}))
                  .ok());
}

// The projection keys under "r/" that a read at `at` (a ReadView or a
// ReadPoint) sees.
template <typename At>
std::vector<std::string> ProjectionKeys(const EventLog& log, const At& at) {
  std::vector<std::string> keys;
  const absl::Status status = log.ScanProjections(
      "r/",
      [&](absl::string_view key, absl::string_view) {
        keys.emplace_back(key);
        return true;
      },
      at);
  EXPECT_TRUE(status.ok()) << status;
  return keys;
}

// An unsynced append is in the log at once (by key) but durable -- and seen
// by head(), Read and Scan -- only after Sync().
TEST_F(EventLogTest, UnsyncedAppendIsDurableAndReadableAfterSync) {
  EventLog& log = OpenLog();
  ASSERT_NO_FATAL_FAILURE(AppendSyncedThenUnsynced(log));
  ASSERT_TRUE(AppendUnsynced(log, Request({MakeEvent("s-b", 0, "e3")})).ok());

  EXPECT_EQ(log.appended_head().position, 3u);
  EXPECT_EQ(log.head().position, 1u);
  EXPECT_TRUE(absl::IsNotFound(log.Read(2).status()));
  absl::StatusOr<std::vector<Envelope>> scanned = ScanAll(log);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->size(), 1u);
  // Reads by key see the durable log, as it was before the unsynced
  // appends; the writer that made them sees them (kAppended).
  using View = EventLog::ReadView;
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1u));
  EXPECT_EQ(log.GetStreamHead("s-a").value()->version(), 1u);
  EXPECT_FALSE(log.GetStreamHead("s-b").value().has_value());
  EXPECT_EQ(log.GetStreamHead("s-a", View::kAppended).value()->version(), 2u);
  EXPECT_EQ(log.GetProjection("r/1").value(), "one");
  EXPECT_FALSE(log.GetProjection("r/2").value().has_value());
  EXPECT_EQ(log.GetProjection("r/1", View::kAppended).value(), "two");
  EXPECT_THAT(ProjectionKeys(log, View::kDurable), ElementsAre("r/1"));
  EXPECT_THAT(ProjectionKeys(log, View::kAppended), ElementsAre("r/1", "r/2"));

  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(log.head().position, 3u);
  EXPECT_EQ(log.head().hash, log.appended_head().hash);
  scanned = ScanAll(log);
  ASSERT_TRUE(scanned.ok()) << scanned.status();
  EXPECT_EQ(scanned->size(), 3u);
  EXPECT_TRUE(log.Read(3).ok());
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1u, 2u));
  EXPECT_EQ(log.GetStreamHead("s-b").value()->version(), 1u);
  EXPECT_EQ(log.GetProjection("r/1").value(), "two");
  EXPECT_EQ(log.GetProjection("r/2").value(), "new");

  // An unsynced append after a sync: the view is the synced one.
  ASSERT_TRUE(AppendUnsynced(log, Request({MakeEvent("s-b", 1, "e4")})).ok());
  EXPECT_EQ(log.GetStreamHead("s-b").value()->version(), 1u);
  EXPECT_EQ(log.GetProjection("r/2").value(), "new");
  // A synced append covers it.
  MustAppend(Request({MakeEvent("s-b", 2, "e5")}));
  EXPECT_EQ(log.head().position, 5u);
  EXPECT_EQ(log.GetStreamHead("s-b").value()->version(), 3u);

  // And it survives a reopen.
  log_.reset();
  EventLog& reopened = OpenLog();
  EXPECT_EQ(reopened.head().position, 5u);
  EXPECT_TRUE(ScanAll(reopened).ok());
}

// A pinned durable point reads one database however the log moves on:
// pinned while an unsynced append awaits its Sync, it keeps not seeing it
// after the Sync; pinned when everything is durable, it does not see a
// later synced append. Unpinned reads move on. A kAppended point reads the
// database as written at each read.
TEST_F(EventLogTest, APinnedDurablePointReadsOneDatabase) {
  EventLog& log = OpenLog();
  const EventLog::ReadPoint appended = log.Pin(EventLog::ReadView::kAppended);
  ASSERT_NO_FATAL_FAILURE(AppendSyncedThenUnsynced(log));
  const EventLog::ReadPoint before_sync = log.Pin();
  ASSERT_TRUE(log.Sync().ok());

  EXPECT_EQ(log.GetProjection("r/1").value(), "two");
  EXPECT_EQ(log.GetProjection("r/1", before_sync).value(), "one");
  EXPECT_FALSE(log.GetProjection("r/2", before_sync).value().has_value());
  EXPECT_EQ(log.GetStreamHead("s-a", before_sync).value()->version(), 1u);
  EXPECT_THAT(ProjectionKeys(log, before_sync), ElementsAre("r/1"));

  const EventLog::ReadPoint synced = log.Pin();
  MustAppend(
      WithPuts(Request({MakeEvent("s-a", 2, "e3")}), {{"r/3", "three"}}));
  EXPECT_EQ(log.GetStreamHead("s-a").value()->version(), 3u);
  EXPECT_EQ(log.GetStreamHead("s-a", synced).value()->version(), 2u);
  EXPECT_FALSE(log.GetProjection("r/3", synced).value().has_value());
  EXPECT_THAT(ProjectionKeys(log, synced), ElementsAre("r/1", "r/2"));
  EXPECT_EQ(log.GetStreamHead("s-a", before_sync).value()->version(), 1u);
  EXPECT_THAT(ProjectionKeys(log, appended), ElementsAre("r/1", "r/2", "r/3"));
}

// The ledger syncs one group while its leader writes the next: a Sync that
// ends after that write began, but before the head moved up to it, must
// keep it out of what readers see. (The write-batch tap runs on the writer
// just before the write: the Sync it makes is such a Sync.)
TEST_F(EventLogTest, ASyncEndingDuringAnUnsyncedWriteKeepsItHidden) {
  EventLog* target = nullptr;
  bool sync_in_tap = false;
  absl::Status synced_in_tap;
  EventLogOptions options;
  options.write_batch_tap = [&](absl::string_view) {
    if (!sync_in_tap) return;
    sync_in_tap = false;
    synced_in_tap = target->Sync();
  };
  EventLog& log = OpenLog(options);
  target = &log;
  ASSERT_TRUE(
      AppendUnsynced(
          log, WithPuts(Request({MakeEvent("s-a", kExpectNoStream, "e1")}),
                        {{"r/1", "one"}}))
          .ok());
  sync_in_tap = true;
  ASSERT_TRUE(AppendUnsynced(log, WithPuts(Request({MakeEvent("s-a", 1, "e2")}),
                                           {{"r/1", "two"}}))
                  .ok());
  ASSERT_FALSE(sync_in_tap);
  ASSERT_TRUE(synced_in_tap.ok()) << synced_in_tap;

  EXPECT_EQ(log.head().position, 1u);  // that sync covered e1 only
  EXPECT_EQ(log.appended_head().position, 2u);
  EXPECT_EQ(log.GetProjection("r/1").value(), "one");
  EXPECT_EQ(log.GetStreamHead("s-a").value()->version(), 1u);
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1u));

  ASSERT_TRUE(log.Sync().ok());
  EXPECT_EQ(log.GetProjection("r/1").value(), "two");
  EXPECT_THAT(StreamVersions(log, "s-a"), ElementsAre(1u, 2u));
}

TEST_F(EventLogTest, FailedSyncMakesTheLogReadOnlyUntilReopen) {
  FailingSyncLog failing;
  auto& file_system = failing.file_system;
  EventLog& log = OpenFailingSync(failing);
  ASSERT_TRUE(AppendUnsynced(log, Request({MakeEvent("s-a", 1, "e2")})).ok());

  file_system->Arm();
  const absl::Status synced = log.Sync();
  EXPECT_EQ(synced.code(), absl::StatusCode::kUnavailable) << synced;
  EXPECT_THAT(synced.message(), HasSubstr("injected sync failure"));
  EXPECT_EQ(log.head().position, 1u);  // e2 was never durable
  EXPECT_EQ(log.WriteRefusal().code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<AppendResult> later =
      log.Append(Request({MakeEvent("s-a", kExpectAny, "e3")}));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(log.Sync().code(), absl::StatusCode::kFailedPrecondition);

  log_.reset();
  EventLog& reopened = OpenLog();
  EXPECT_TRUE(reopened.WriteRefusal().ok());
  EXPECT_GE(reopened.head().position, 1u);
  EXPECT_LE(reopened.head().position, 2u);
  EXPECT_TRUE(ScanAll(reopened).ok());
}

TEST_F(EventLogTest, ConcurrentAppendsAndReads) {
  EventLogOptions options;
  options.sync = false;  // keeps the test fast; ordering is what is tested
  EventLog& log = OpenLog(options);
  constexpr int kThreads = 4;
  constexpr int kAppendsPerThread = 50;
  std::vector<std::thread> threads;
  std::atomic<bool> reader_failed{false};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      const Head head = log.head();
      if (head.position > 0 && !log.Read(head.position).ok()) {
        reader_failed = true;
      }
    }
  });
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < kAppendsPerThread; ++i) {
        const std::string stream = absl::StrCat("s-", t);
        absl::StatusOr<AppendResult> result = log.Append(
            Request({MakeEvent(stream, i, absl::StrCat("e", t, "-", i))}));
        EXPECT_TRUE(result.ok()) << result.status();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  done = true;
  reader.join();
  EXPECT_FALSE(reader_failed);
  EXPECT_EQ(log.head().position, uint64_t{kThreads * kAppendsPerThread});
  absl::StatusOr<std::vector<Envelope>> all = ScanAll(log);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), size_t{kThreads * kAppendsPerThread});
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(StreamVersions(log, absl::StrCat("s-", t)).size(),
              size_t{kAppendsPerThread});
  }
}

// Writers race on one stream with optimistic versions: appends are
// serialized, each conflict is kAborted and retried, so exactly the
// successful appends land, each whole, in order.
TEST_F(EventLogTest, ConcurrentConflictsOnOneStream) {
  EventLog& log = OpenLog();  // synced: each append waits for its own sync
  constexpr int kThreads = 4;
  constexpr int kAppendsPerThread = 25;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&log, &conflicts, t] {
      for (int i = 0; i < kAppendsPerThread;) {
        absl::StatusOr<std::optional<StreamHead>> head =
            log.GetStreamHead("s-shared");
        ASSERT_TRUE(head.ok()) << head.status();
        const int64_t version =
            head->has_value() ? static_cast<int64_t>((*head)->version()) : 0;
        AppendRequest request = Request(
            {MakeEvent("s-shared", version, absl::StrCat("e", t, "-", i))});
        request.outcome = Outcome(absl::StrCat("cmd-", t, "-", i));
        absl::StatusOr<AppendResult> result = log.Append(std::move(request));
        if (result.status().code() == absl::StatusCode::kAborted) {
          ++conflicts;
          continue;
        }
        ASSERT_TRUE(result.ok()) << result.status();
        ++i;
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  constexpr uint64_t kTotal = kThreads * kAppendsPerThread;
  EXPECT_EQ(log.head().position, kTotal);
  std::vector<uint64_t> versions = StreamVersions(log, "s-shared");
  ASSERT_EQ(versions.size(), kTotal);
  for (uint64_t i = 0; i < kTotal; ++i) EXPECT_EQ(versions[i], i + 1);
  ASSERT_TRUE(ScanAll(log).ok());
  // Each stored outcome names the position its event got.
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kAppendsPerThread; ++i) {
      absl::StatusOr<std::optional<StoredOutcome>> outcome =
          log.GetOutcome(absl::StrCat("cmd-", t, "-", i));
      ASSERT_TRUE(outcome.ok() && outcome->has_value());
      absl::StatusOr<Envelope> envelope =
          log.Read((*outcome)->result().first_position());
      ASSERT_TRUE(envelope.ok()) << envelope.status();
      EXPECT_EQ(envelope->event_id(), absl::StrCat("e", t, "-", i));
    }
  }
  std::printf("conflicts retried: %d\n", conflicts.load());
}

}  // namespace
}  // namespace storeledger
