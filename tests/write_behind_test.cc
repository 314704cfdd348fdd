// The derived column families written behind the log (EventLogOptions::
// write_behind, storage/write_behind.h) against the real RocksDB: every
// read answers what the same appends written all in one WriteBatch answer,
// before, during and after the window goes to RocksDB, and an open after a
// crash folds what was lost from the log. Crashes are simulated by closing
// without the write-behind (write_behind_at_close off: the window is lost,
// as in a SIGKILL) and by FaultFileSystem's power loss.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/simulate.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "replay/rebuild.h"
#include "rocksdb/db.h"
#include "storage/event_log.h"
#include "tests/support/fault_env.h"
#include "tests/support/ledger_check.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// The streams the tests write and the projections they keep: per stream
// "n/<stream>" = its version, and "last/<stream>" = the last event id,
// deleted by an event whose id starts with "del". A function of the
// envelopes alone, so the open's fold (Fold below) can redo it.
constexpr int kStreams = 6;

std::string StreamName(int i) { return absl::StrCat("stream-", i); }

void AddProjectionWrites(const Envelope& envelope, AppendRequest* request) {
  request->projection_puts.emplace_back(
      absl::StrCat("n/", envelope.stream_id()),
      absl::StrCat(envelope.stream_version()));
  if (envelope.event_id().rfind("del", 0) == 0) {
    request->projection_deletes.push_back(
        absl::StrCat("last/", envelope.stream_id()));
  } else {
    request->projection_puts.emplace_back(
        absl::StrCat("last/", envelope.stream_id()), envelope.event_id());
  }
}

// DeriveProjectionsFn for the writes above.
absl::Status Fold(const EventLog& log, uint64_t after,
                  const std::function<void(const Envelope&)>& each,
                  std::vector<std::pair<std::string, std::string>>* puts) {
  return log.Scan(after, [&](const Envelope& envelope, absl::string_view) {
    each(envelope);
    AppendRequest request;
    AddProjectionWrites(envelope, &request);
    for (auto& put : request.projection_puts) puts->push_back(put);
    // A delete is a put of nothing: the tests read "" as deleted.
    for (auto& key : request.projection_deletes) puts->emplace_back(key, "");
    return true;
  });
}

// A fold that breaks DeriveProjectionsFn's contract: it folds as Fold does
// but hands each envelope back `times(envelope, head)` times.
DeriveProjectionsFn FoldHandingBack(
    std::function<int(const Envelope&, uint64_t head)> times) {
  return [times](const EventLog& log, uint64_t after,
                 const std::function<void(const Envelope&)>& each,
                 std::vector<std::pair<std::string, std::string>>* puts) {
    const uint64_t head = log.appended_head().position;
    return Fold(
        log, after,
        [&](const Envelope& envelope) {
          for (int i = times(envelope, head); i > 0; --i) each(envelope);
        },
        puts);
  };
}

NewEvent Event(const std::string& stream_id, const std::string& event_id) {
  NewEvent event;
  Envelope& envelope = event.envelope;
  envelope.set_stream_id(stream_id);
  envelope.set_event_id(event_id);
  envelope.set_command_id("cmd-" + event_id);
  envelope.set_event_type("StoreOpened");
  envelope.mutable_occurred_at()->set_seconds(1000 + event_id.size());
  envelope.mutable_recorded_at()->set_seconds(2000);
  envelope.set_policy_version("2024-test");
  envelope.mutable_payload()->mutable_store_opened()->set_store_id(stream_id);
  return event;
}

// One append of `events` events on random streams, with their projection
// writes (as the stream versions they will get: `versions` tracks them).
AppendRequest RandomRequest(std::mt19937_64& rng, int events, int* next_id,
                            std::map<std::string, uint64_t>* versions) {
  AppendRequest request;
  for (int i = 0; i < events; ++i) {
    const std::string stream = StreamName(static_cast<int>(rng() % kStreams));
    const int id = (*next_id)++;
    // A delete only alone: an append applies its deletes before its puts,
    // which Fold (event by event) would not redo.
    const bool del = rng() % 3 == 0 && events == 1;
    const std::string event_id = absl::StrCat(del ? "del-" : "ev-", id);
    NewEvent event = Event(stream, event_id);
    Envelope copy = event.envelope;
    copy.set_stream_version(++(*versions)[stream]);
    AddProjectionWrites(copy, &request);
    request.events.push_back(std::move(event));
  }
  StoredOutcome outcome;
  outcome.set_fingerprint(Sha256(absl::StrCat("c", *next_id)));
  outcome.mutable_result()->set_command_id(absl::StrCat("c", *next_id));
  request.outcome = std::move(outcome);
  return request;
}

// Everything a reader can ask of the derived families, as one string.
std::string Derived(const EventLog& log,
                    EventLog::ReadView view = EventLog::ReadView::kDurable) {
  std::string out;
  for (int i = 0; i < kStreams; ++i) {
    const std::string stream = StreamName(i);
    absl::StatusOr<std::optional<StreamHead>> head =
        log.GetStreamHead(stream, view);
    EXPECT_TRUE(head.ok()) << head.status();
    absl::StrAppend(
        &out, stream, " v",
        head.ok() && head->has_value() ? (*head)->version() : 0, " at ",
        head.ok() && head->has_value() ? (*head)->last_occurred_at().seconds()
                                       : 0,
        ":");
    if (view == EventLog::ReadView::kDurable) {
      EXPECT_TRUE(log.ScanStream(stream, 0,
                                 [&](const Envelope& envelope) {
                                   absl::StrAppend(&out, " ",
                                                   envelope.position());
                                   return true;
                                 })
                      .ok());
    }
    for (const std::string prefix : {"n/", "last/"}) {
      absl::StatusOr<std::optional<std::string>> value =
          log.GetProjection(prefix + stream, view);
      EXPECT_TRUE(value.ok()) << value.status();
      // Fold writes a delete as "": the same to a reader of these tests.
      absl::StrAppend(&out, " ", prefix, "=",
                      value.ok() && value->has_value() ? **value : "");
    }
    out += "\n";
  }
  for (const std::string prefix : {"n/", "last/", ""}) {
    absl::StrAppend(&out, "scan ", prefix, ":");
    EXPECT_TRUE(log.ScanProjections(
                       prefix,
                       [&](absl::string_view key, absl::string_view value) {
                         if (!value.empty()) {
                           absl::StrAppend(&out, " ", key, "=", value);
                         }
                         return true;
                       },
                       view)
                    .ok());
    out += "\n";
  }
  return out;
}

EventLogOptions WriteBehind(uint64_t events_max) {
  EventLogOptions options;
  options.write_behind = true;
  options.write_behind_events_max = events_max;
  options.derive_projections = Fold;
  return options;
}

std::unique_ptr<EventLog> Open(const std::string& dir,
                               const EventLogOptions& options) {
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir, options);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

uint64_t Seed() {
  const uint64_t seed = std::random_device()();
  std::cout << "seed " << seed << "\n";
  return seed;
}

TEST(WriteBehindTest, ReadsAnswerAsTheWholeWriteBatchDoes) {
  TempDir dir;
  const uint64_t seed = Seed();
  std::mt19937_64 rng(seed);
  std::unique_ptr<EventLog> inline_log =
      Open(dir.Sub("inline"), EventLogOptions());
  std::unique_ptr<EventLog> behind = Open(dir.Sub("behind"), WriteBehind(7));
  ASSERT_NE(inline_log, nullptr);
  ASSERT_NE(behind, nullptr);
  int next_id = 0;
  std::map<std::string, uint64_t> versions;
  uint64_t derived_moves = 0;
  uint64_t last_derived = behind->derived_position();
  for (int round = 0; round < 60; ++round) {
    const int events = static_cast<int>(rng() % 4);
    AppendRequest request = RandomRequest(rng, events, &next_id, &versions);
    ASSERT_TRUE(inline_log->Append(request).ok()) << "seed " << seed;
    ASSERT_TRUE(behind->Append(request).ok()) << "seed " << seed;
    ASSERT_EQ(Derived(*behind), Derived(*inline_log))
        << "seed " << seed << " round " << round;
    ASSERT_EQ(Derived(*behind, EventLog::ReadView::kAppended),
              Derived(*inline_log, EventLog::ReadView::kAppended))
        << "seed " << seed << " round " << round;
    if (behind->derived_position() != last_derived) {
      ++derived_moves;
      last_derived = behind->derived_position();
    }
    // The window never holds more than the distance (7) plus one append.
    EXPECT_LE(behind->head().position - behind->derived_position(), 7u + 3u);
  }
  EXPECT_GE(derived_moves, 3u) << "the window never went to RocksDB";
  EXPECT_LT(behind->derived_position(), behind->head().position + 1);
}

TEST(WriteBehindTest, AnOpenAfterACrashFoldsWhatWasInMemory) {
  TempDir dir;
  const uint64_t seed = Seed();
  std::mt19937_64 rng(seed);
  std::unique_ptr<EventLog> inline_log =
      Open(dir.Sub("inline"), EventLogOptions());
  EventLogOptions options = WriteBehind(25);
  options.write_behind_at_close = false;  // closed as a SIGKILL leaves it
  std::unique_ptr<EventLog> behind = Open(dir.Sub("behind"), options);
  int next_id = 0;
  std::map<std::string, uint64_t> versions;
  for (int round = 0; round < 40; ++round) {
    AppendRequest request = RandomRequest(rng, 2, &next_id, &versions);
    ASSERT_TRUE(inline_log->Append(request).ok());
    ASSERT_TRUE(behind->Append(request).ok());
  }
  const std::string expected = Derived(*inline_log);
  const uint64_t derived = behind->derived_position();
  ASSERT_LT(derived, behind->head().position) << "nothing was left in memory";
  ASSERT_GT(derived, 0u) << "nothing went to RocksDB";
  const uint64_t behind_head = behind->head().position;
  behind.reset();

  // Without the fold the open says what is missing, and refuses.
  EventLogOptions no_fold = options;
  no_fold.derive_projections = nullptr;
  absl::StatusOr<std::unique_ptr<EventLog>> refused =
      EventLog::Open(dir.Sub("behind"), no_fold);
  ASSERT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("written up to position ", derived)));

  // A fold that does not hand every envelope back would leave streams
  // unindexed: the open refuses it, naming how far it got. The failed open
  // writes nothing behind as it closes (write_behind_at_close on here): the
  // opens below must still fold the window.
  EventLogOptions short_fold = options;
  short_fold.write_behind_at_close = true;
  short_fold.derive_projections =
      FoldHandingBack([](const Envelope& envelope, uint64_t head) {
        return envelope.position() < head ? 1 : 0;
      });
  absl::StatusOr<std::unique_ptr<EventLog>> stopped_short =
      EventLog::Open(dir.Sub("behind"), short_fold);
  ASSERT_TRUE(absl::IsInternal(stopped_short.status()))
      << stopped_short.status();
  EXPECT_THAT(stopped_short.status().message(),
              HasSubstr(absl::StrCat("fold reached position ", behind_head - 1,
                                     " of ", behind_head)));
  // So does one that hands an envelope back twice.
  EventLogOptions repeating_fold = short_fold;
  repeating_fold.derive_projections =
      FoldHandingBack([derived](const Envelope& envelope, uint64_t) {
        return envelope.position() == derived + 1 ? 2 : 1;
      });
  absl::StatusOr<std::unique_ptr<EventLog>> out_of_order =
      EventLog::Open(dir.Sub("behind"), repeating_fold);
  ASSERT_TRUE(absl::IsInternal(out_of_order.status())) << out_of_order.status();
  EXPECT_THAT(out_of_order.status().message(),
              HasSubstr(absl::StrCat("gave position ", derived + 1, " where ",
                                     derived + 2, " was next")));

  // A read-only open folds it into memory; one for writing too, and a
  // retry of the last append's expected versions is checked against it.
  EventLogOptions read_only = options;
  read_only.read_only = true;
  std::unique_ptr<EventLog> reader = Open(dir.Sub("behind"), read_only);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(Derived(*reader), expected);
  reader.reset();
  behind = Open(dir.Sub("behind"), options);
  ASSERT_NE(behind, nullptr);
  EXPECT_EQ(Derived(*behind), expected);
  const std::string stream = StreamName(0);
  NewEvent stale = Event(stream, "stale");
  stale.expected_version = static_cast<int64_t>(versions[stream]) - 1;
  AppendRequest request;
  request.events.push_back(std::move(stale));
  EXPECT_TRUE(absl::IsAborted(behind->Append(std::move(request)).status()));
  // And writing behind goes on from there.
  for (int round = 0; round < 20; ++round) {
    AppendRequest next = RandomRequest(rng, 2, &next_id, &versions);
    ASSERT_TRUE(inline_log->Append(next).ok());
    ASSERT_TRUE(behind->Append(next).ok());
  }
  EXPECT_EQ(Derived(*behind), Derived(*inline_log)) << "seed " << seed;
  EXPECT_GT(behind->derived_position(), derived);
}

TEST(WriteBehindTest, AReadPointKeepsItsAnswersAcrossAWriteBehind) {
  TempDir dir;
  std::unique_ptr<EventLog> log = Open(dir.path(), WriteBehind(1'000'000));
  ASSERT_NE(log, nullptr);
  AppendRequest first;
  first.events.push_back(Event("s", "ev-1"));
  first.projection_puts.emplace_back("k", "one");
  ASSERT_TRUE(log->Append(std::move(first)).ok());
  const EventLog::ReadPoint before = log->Pin();

  AppendRequest second;
  second.events.push_back(Event("s", "ev-2"));
  second.projection_puts.emplace_back("k", "two");
  ASSERT_TRUE(log->Append(std::move(second)).ok());
  ASSERT_TRUE(log->WriteBehindNow().ok());
  EXPECT_EQ(log->derived_position(), 2u);
  AppendRequest third;
  third.events.push_back(Event("s", "ev-3"));
  third.projection_puts.emplace_back("k", "three");
  ASSERT_TRUE(log->Append(std::move(third)).ok());

  // The point pinned after the first append still reads it: from the frozen
  // table, since its snapshot predates the ingested files.
  absl::StatusOr<std::optional<std::string>> k =
      log->GetProjection("k", before);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->value_or("absent"), "one");
  absl::StatusOr<std::optional<StreamHead>> head =
      log->GetStreamHead("s", before);
  ASSERT_TRUE(head.ok() && head->has_value());
  EXPECT_EQ((*head)->version(), 1u);
  // A new point reads the ingested value and the window above it.
  k = log->GetProjection("k");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->value_or("absent"), "three");
  // What RocksDB itself holds: up to the write-behind.
  std::string stored;
  ASSERT_TRUE(
      log->db()
          ->Get(rocksdb::ReadOptions(), log->projections_cf(), "k", &stored)
          .ok());
  EXPECT_EQ(stored, "two");
}

TEST(WriteBehindTest, AnUnsyncedAppendIsSeenDurableOnlyAfterItsSync) {
  TempDir dir;
  std::unique_ptr<EventLog> log = Open(dir.path(), WriteBehind(1'000'000));
  ASSERT_NE(log, nullptr);
  AppendRequest request;
  request.events.push_back(Event("s", "ev-1"));
  request.projection_puts.emplace_back("k", "v");
  std::vector<AppendRequest> group;
  group.push_back(std::move(request));
  ASSERT_TRUE(log->AppendBatch(std::move(group), nullptr, /*sync=*/false).ok());
  absl::StatusOr<std::optional<std::string>> durable = log->GetProjection("k");
  ASSERT_TRUE(durable.ok());
  EXPECT_FALSE(durable->has_value());
  absl::StatusOr<std::optional<std::string>> appended =
      log->GetProjection("k", EventLog::ReadView::kAppended);
  ASSERT_TRUE(appended.ok());
  EXPECT_EQ(appended->value_or("absent"), "v");
  // Not written behind before it is durable, however asked.
  ASSERT_TRUE(log->WriteBehindNow().ok());
  EXPECT_EQ(log->derived_position(), 0u);
  ASSERT_TRUE(log->Sync().ok());
  durable = log->GetProjection("k");
  ASSERT_TRUE(durable.ok());
  EXPECT_EQ(durable->value_or("absent"), "v");
  ASSERT_TRUE(log->WriteBehindNow().ok());
  EXPECT_EQ(log->derived_position(), 1u);
}

TEST(WriteBehindTest, TurnedOffItWritesTheWindowAndDropsTheMarker) {
  TempDir dir;
  EventLogOptions options = WriteBehind(1'000'000);
  options.write_behind_at_close = false;
  std::unique_ptr<EventLog> log = Open(dir.path(), options);
  AppendRequest request;
  request.events.push_back(Event("s", "ev-1"));
  request.projection_puts.emplace_back("n/s", "1");
  ASSERT_TRUE(log->Append(std::move(request)).ok());
  EXPECT_EQ(log->derived_position(), 0u);
  log.reset();
  // A leftover of a write-behind stopped before RocksDB took its files.
  const std::string leftover = dir.path() + "/write-behind-0-9-projections.sst";
  std::ofstream(leftover) << "partial";

  EventLogOptions off;
  off.derive_projections = Fold;
  log = Open(dir.path(), off);
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(std::filesystem::exists(leftover));
  EXPECT_EQ(log->derived_position(), 1u);
  std::string stored;
  EXPECT_TRUE(
      log->db()
          ->Get(rocksdb::ReadOptions(), log->meta_cf(), "derived", &stored)
          .IsNotFound());
  ASSERT_TRUE(
      log->db()
          ->Get(rocksdb::ReadOptions(), log->projections_cf(), "n/s", &stored)
          .ok());
  EXPECT_EQ(stored, "1");
}

TEST(WriteBehindTest, AMarkerOffTheChainIsDataLoss) {
  TempDir dir;
  {
    std::unique_ptr<EventLog> log = Open(dir.path(), WriteBehind(1));
    for (int i = 0; i < 3; ++i) {
      AppendRequest request;
      request.events.push_back(Event("s", absl::StrCat("ev-", i)));
      ASSERT_TRUE(log->Append(std::move(request)).ok());
    }
    ASSERT_EQ(log->derived_position(), 3u);
    // The marker names position 2 with position 3's hash.
    std::string marker;
    ASSERT_TRUE(
        log->db()
            ->Get(rocksdb::ReadOptions(), log->meta_cf(), "derived", &marker)
            .ok());
    marker[7] = 2;
    ASSERT_TRUE(
        log->db()
            ->Put(rocksdb::WriteOptions(), log->meta_cf(), "derived", marker)
            .ok());
  }
  absl::StatusOr<std::unique_ptr<EventLog>> reopened =
      EventLog::Open(dir.path(), WriteBehind(1));
  ASSERT_TRUE(absl::IsDataLoss(reopened.status())) << reopened.status();
  EXPECT_THAT(reopened.status().message(), HasSubstr("up to position 2"));
}

// The same 12 appends of 2 events, in a log writing everything inline and
// in one writing behind on `fs` (`options` with its env): the power-loss
// tests' starting point.
struct TwinLogs {
  std::unique_ptr<EventLog> inline_log;
  std::unique_ptr<EventLog> behind;
};
TwinLogs AppendTwins(const TempDir& dir, const EventLogOptions& options,
                     uint64_t seed) {
  TwinLogs logs;
  std::mt19937_64 rng(seed);
  logs.inline_log = Open(dir.Sub("inline"), EventLogOptions());
  logs.behind = Open(dir.Sub("behind"), options);
  if (logs.inline_log == nullptr || logs.behind == nullptr) return logs;
  int next_id = 0;
  std::map<std::string, uint64_t> versions;
  for (int round = 0; round < 12; ++round) {
    AppendRequest request = RandomRequest(rng, 2, &next_id, &versions);
    EXPECT_TRUE(logs.inline_log->Append(request).ok());
    EXPECT_TRUE(logs.behind->Append(request).ok());
  }
  return logs;
}

// The bytes bound alone (kWriteBehindBytesMax, shrunk here) writes the
// window behind, however few events it holds.
TEST(WriteBehindTest, TheBytesBoundWritesBehindToo) {
  TempDir dir;
  EventLogOptions small = WriteBehind(1'000'000);
  small.write_behind_bytes_max = 2048;
  std::unique_ptr<EventLog> bounded = Open(dir.Sub("bounded"), small);
  std::unique_ptr<EventLog> unbounded =
      Open(dir.Sub("unbounded"), WriteBehind(1'000'000));
  ASSERT_NE(bounded, nullptr);
  ASSERT_NE(unbounded, nullptr);
  for (int i = 0; i < 4; ++i) {
    AppendRequest request;
    request.events.push_back(Event("s", absl::StrCat("ev-", i)));
    request.projection_puts.emplace_back(absl::StrCat("big/", i),
                                         std::string(1000, 'x'));
    ASSERT_TRUE(bounded->Append(request).ok());
    ASSERT_TRUE(unbounded->Append(std::move(request)).ok());
  }
  // 1,000-byte values pass 2,048 bytes within three appends; the default
  // bound (64 MiB) holds them all in memory.
  EXPECT_GE(bounded->derived_position(), 2u);
  EXPECT_EQ(unbounded->derived_position(), 0u);
  EXPECT_EQ(Derived(*bounded), Derived(*unbounded));
  // The stats count what moved meta "derived", and only that.
  const EventLog::WriteBehindStats stats = bounded->write_behind_stats();
  EXPECT_GE(stats.count, 1u);
  EXPECT_EQ(stats.events, bounded->derived_position());
  EXPECT_GT(stats.longest, absl::ZeroDuration());
  EXPECT_LE(stats.longest, stats.total);
  EXPECT_EQ(unbounded->write_behind_stats().count, 0u);
}

// A power loss at every step of a write-behind (writing the files, the
// ingestion, its MANIFEST record): the open after it folds the log from
// whatever meta "derived" survived, and answers as before.
TEST(WriteBehindTest, APowerLossDuringTheWriteBehindLosesNothing) {
  const uint64_t seed = Seed();
  int crashed = 0;  // write-behinds the power loss cut short
  bool finished = false;
  for (int64_t crash_after = 0; crash_after < 400 && !finished;
       crash_after += 2) {
    TempDir dir;
    testing::FaultFileSystem fs;
    EventLogOptions options = WriteBehind(1'000'000);
    options.env = fs.env();
    auto [inline_log, behind] = AppendTwins(dir, options, seed);
    ASSERT_NE(behind, nullptr);
    fs.CrashAfterOps(crash_after);
    const absl::Status written = behind->WriteBehindNow();
    behind.reset();
    fs.SetActive(true);
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
    behind = Open(dir.Sub("behind"), options);
    ASSERT_NE(behind, nullptr) << "crash after " << crash_after;
    EXPECT_EQ(Derived(*behind), Derived(*inline_log))
        << "crash after " << crash_after << " (" << written << ")";
    if (written.ok()) finished = true;  // no later step to cut
    if (!written.ok()) ++crashed;
  }
  EXPECT_TRUE(finished) << "the last write-behind did not finish";
  EXPECT_GE(crashed, 3);
  std::cout << crashed << " write-behinds cut short\n";
}

// A power loss during the open after a crash: that open folds the window
// and, the fold being longer than the write-behind distance, writes it
// behind at once; cut at every second file-system step of that, the next
// open folds again and answers as before.
TEST(WriteBehindTest, APowerLossDuringTheReplayOnOpenLosesNothing) {
  const uint64_t seed = Seed();
  int crashed = 0;  // opens the power loss cut short
  bool finished = false;
  for (int64_t crash_after = 0; crash_after < 400 && !finished;
       crash_after += 2) {
    TempDir dir;
    testing::FaultFileSystem fs;
    EventLogOptions options = WriteBehind(1'000'000);
    options.env = fs.env();
    options.write_behind_at_close = false;  // closed as a SIGKILL leaves it
    auto [inline_log, behind] = AppendTwins(dir, options, seed);
    ASSERT_NE(behind, nullptr);
    behind.reset();
    // The open folds 24 events and writes them behind (distance 5).
    EventLogOptions short_distance = options;
    short_distance.write_behind_events_max = 5;
    fs.CrashAfterOps(crash_after);
    absl::StatusOr<std::unique_ptr<EventLog>> cut =
        EventLog::Open(dir.Sub("behind"), short_distance);
    const bool opened = cut.ok();
    const uint64_t derived = opened ? (*cut)->derived_position() : 0;
    cut = absl::UnknownError("closed");
    fs.SetActive(true);
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
    behind = Open(dir.Sub("behind"), options);
    ASSERT_NE(behind, nullptr) << "crash after " << crash_after;
    EXPECT_EQ(Derived(*behind), Derived(*inline_log))
        << "crash after " << crash_after;
    if (opened) {
      EXPECT_EQ(derived, 24u) << "the open did not write the fold behind";
      finished = true;
    } else {
      ++crashed;
    }
  }
  EXPECT_TRUE(finished) << "the last open did not finish";
  EXPECT_GE(crashed, 3);
  std::cout << crashed << " opens cut short\n";
}

// With EventLogOptions::sync off nothing syncs the WAL, but an ingestion
// is durable at once: a write-behind must make the events it covers
// durable first, or a power loss would leave meta "derived" past the head
// and the log unopenable.
TEST(WriteBehindTest, WithoutSyncsTheMarkerNeverPassesTheLog) {
  TempDir dir;
  testing::FaultFileSystem fs;
  std::mt19937_64 rng(Seed());
  EventLogOptions options = WriteBehind(1'000'000);
  options.env = fs.env();
  options.sync = false;
  std::unique_ptr<EventLog> log = Open(dir.path(), options);
  ASSERT_NE(log, nullptr);
  int next_id = 0;
  std::map<std::string, uint64_t> versions;
  // Twice: the first ingestion also flushes "meta" (whose memtable holds
  // the open's meta "derived"), and a flush syncs the WAL; the second has
  // nothing to flush.
  for (int round = 0; round < 20; ++round) {
    ASSERT_TRUE(log->Append(RandomRequest(rng, 2, &next_id, &versions)).ok());
    if (round == 9) {
      ASSERT_TRUE(log->WriteBehindNow().ok());
    }
  }
  ASSERT_TRUE(log->WriteBehindNow().ok());
  ASSERT_EQ(log->derived_position(), 40u);
  const std::string expected = Derived(*log);
  fs.SetActive(false);
  log.reset();
  fs.SetActive(true);
  ASSERT_TRUE(fs.DropUnsyncedData().ok());
  log = Open(dir.path(), options);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->head().position, 40u);
  EXPECT_EQ(Derived(*log), expected);
}

// Every derived key a ledger's reader can see: the stream heads and index
// of every stream in the log, and every projection.
std::string LedgerDerived(const EventLog& log) {
  std::string out;
  std::map<std::string, uint64_t> streams;
  EXPECT_TRUE(log.Scan(0,
                       [&](const Envelope& envelope, absl::string_view) {
                         streams[envelope.stream_id()] =
                             envelope.stream_version();
                         return true;
                       })
                  .ok());
  for (const auto& [stream, version] : streams) {
    absl::StatusOr<std::optional<StreamHead>> head = log.GetStreamHead(stream);
    EXPECT_TRUE(head.ok() && head->has_value()) << stream;
    absl::StrAppend(&out, stream, " v",
                    head.ok() && head->has_value() ? (*head)->version() : 0,
                    " (log ", version, "):");
    EXPECT_TRUE(log.ScanStream(stream, 0,
                               [&](const Envelope& envelope) {
                                 absl::StrAppend(&out, " ",
                                                 envelope.position());
                                 return true;
                               })
                    .ok());
    out += "\n";
  }
  EXPECT_TRUE(
      log.ScanProjections("",
                          [&](absl::string_view key, absl::string_view value) {
                            // Snapshots are a cache the fold after a
                            // crash does not redo.
                            if (absl::StartsWith(key, "snap")) {
                              return true;
                            }
                            absl::StrAppend(&out, key, " ",
                                            Sha256(value).substr(0, 8), "\n");
                            return true;
                          })
          .ok());
  return out;
}

// The simulated migration through a ledger writing behind the log (with a
// write-behind every 500 events), against the same commands written all in
// one WriteBatch; then a power loss with the window in memory, and the
// open after it.
TEST(WriteBehindLedgerTest, AMigrationReadsAndRecoversAsWrittenInline) {
  TempDir dir;
  testing::FaultFileSystem fs;
  testing::FixedClock clock(absl::FromUnixSeconds(1'750'000'000));
  LedgerOptions inline_options;
  inline_options.clock = &clock;
  LedgerOptions behind_options = inline_options;
  behind_options.write_behind = true;
  behind_options.write_behind_events_max = 500;
  behind_options.env = fs.env();
  absl::StatusOr<std::unique_ptr<Ledger>> inline_ledger =
      Ledger::Open(dir.Sub("inline"), inline_options);
  absl::StatusOr<std::unique_ptr<Ledger>> behind =
      Ledger::Open(dir.Sub("behind"), behind_options);
  ASSERT_TRUE(inline_ledger.ok()) << inline_ledger.status();
  ASSERT_TRUE(behind.ok()) << behind.status();

  const std::vector<v1::Command> plan = PlanWrittenAhead(30, 7);
  testing::AcknowledgedResults acknowledged;
  for (size_t i = 0; i < plan.size(); i += 64) {
    std::vector<v1::Command> chunk(
        plan.begin() + i, plan.begin() + std::min(plan.size(), i + 64));
    auto a = (*inline_ledger)->ExecuteBatch(chunk);
    auto b = (*behind)->ExecuteBatch(chunk);
    ASSERT_EQ(a.size(), b.size());
    for (size_t j = 0; j < a.size(); ++j) {
      ASSERT_TRUE(a[j].ok() && b[j].ok()) << chunk[j].command_id();
      ASSERT_EQ(a[j]->SerializeAsString(), b[j]->SerializeAsString())
          << chunk[j].command_id();
      acknowledged[chunk[j].command_id()] = *b[j];
    }
  }
  const EventLog& log = (*behind)->log();
  ASSERT_EQ(log.head().hash, (*inline_ledger)->log().head().hash);
  const std::string expected = LedgerDerived((*inline_ledger)->log());
  EXPECT_EQ(LedgerDerived(log), expected);
  const uint64_t derived = log.derived_position();
  EXPECT_GT(derived, 0u) << "nothing was written behind";
  ASSERT_LT(derived, log.head().position) << "nothing was left in memory";

  // The power goes off with the window in memory.
  fs.SetActive(false);
  behind->reset();
  ASSERT_TRUE(fs.DropUnsyncedData().ok());
  fs.SetActive(true);
  behind = Ledger::Open(dir.Sub("behind"), behind_options);
  ASSERT_TRUE(behind.ok()) << behind.status();
  EXPECT_EQ((*behind)->log().derived_position(), derived);
  EXPECT_EQ(LedgerDerived((*behind)->log()), expected);
  // A retry is answered from its stored outcome, as before the crash.
  absl::StatusOr<v1::CommandResult> retried =
      (*behind)->Execute(plan[plan.size() / 2]);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->status(),
            acknowledged[plan[plan.size() / 2].command_id()].status());
  // A read-only open beside it folds the window again, into its own
  // memory, and its audit reads through it.
  LedgerOptions read_only = behind_options;
  read_only.read_only = true;
  read_only.env = nullptr;
  {
    absl::StatusOr<std::unique_ptr<Ledger>> reader =
        Ledger::Open(dir.Sub("behind"), read_only);
    ASSERT_TRUE(reader.ok()) << reader.status();
    EXPECT_EQ(LedgerDerived((*reader)->log()), expected);
    absl::StatusOr<testing::RecoveryCheckStats> checked =
        testing::CheckRecoveredLog((*reader)->log(), acknowledged);
    EXPECT_TRUE(checked.ok()) << checked.status();
  }
  // The writer's audit writes its window first; so does a rebuild.
  EXPECT_LT((*behind)->log().derived_position(),
            (*behind)->log().head().position);
  absl::StatusOr<testing::RecoveryCheckStats> checked =
      testing::CheckRecoveredLog((*behind)->log(), acknowledged);
  EXPECT_TRUE(checked.ok()) << checked.status();
  EXPECT_EQ((*behind)->log().derived_position(),
            (*behind)->log().head().position);
  absl::StatusOr<v1::RebuildSummary> rebuilt =
      Rebuild((*behind)->mutable_log(), RebuildOptions());
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_EQ(rebuilt->differences(), 0u);
}

}  // namespace
}  // namespace storeledger
