// Subscribe: catch-up then live without gaps, the limit of open
// subscriptions, a slow subscriber cut off and resuming, and stalled
// subscribers that cost writers nothing.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::AddProductCommand;
using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kLoadProductsPerStore;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::ServerTest;
using ::storeledger::testing::StoreFillCommand;
using ::testing::HasSubstr;

// ---- subscriptions

TEST_F(ServerTest, SubscribeCatchesUpThenFollowsWithoutGaps) {
  Start();
  constexpr int kBefore = 300;
  constexpr int kDuring = 700;
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(),
            v1::ACCEPTED);
  for (int i = 0; i < kBefore; ++i) {
    Execute(
        AddProductCommand(absl::StrCat("b", i), "s1", absl::StrCat("b", i)));
  }
  std::atomic<uint64_t> until{0};
  std::vector<uint64_t> positions;
  int cutoffs = 0;
  std::thread subscriber([&] { positions = Collect(0, until, &cutoffs); });
  std::thread writer([&] {
    for (int i = 0; i < kDuring; ++i) {
      Execute(
          AddProductCommand(absl::StrCat("d", i), "s1", absl::StrCat("d", i)));
    }
  });
  writer.join();
  // The subscriber may already be waiting at the head: name the position of
  // one more command as the end, then write it.
  until = server_->ledger().log().head().position + 1;
  Execute(AddProductCommand("last", "s1", "last"));
  subscriber.join();
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_EQ(head, until.load());
  // open (2 events) + one event per product.
  EXPECT_EQ(head, 2u + kBefore + kDuring + 1);
  ASSERT_EQ(positions.size(), head);
  for (uint64_t i = 0; i < head; ++i) {
    ASSERT_EQ(positions[i], i + 1) << "gap or duplicate at index " << i;
  }
  std::cout << "subscriber cut off and resumed " << cutoffs << " times\n";
}

// The limit of open subscriptions (kSubscribersMax): that many are served,
// one more is refused with RESOURCE_EXHAUSTED naming the limit, and when one
// leaves there is room again.
TEST_F(ServerTest, SubscribersUpToTheLimitAreServedOneMoreIsRefused) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(),
            v1::ACCEPTED);
  struct Subscription {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader;
  };
  // Subscribes from position 0; true once the first envelope arrived (so the
  // server counts it), false with *status when refused.
  auto subscribe = [&](Subscription* sub, grpc::Status* status) {
    Authorize(&sub->context, kAuditor);
    v1::SubscribeRequest request;
    sub->reader = stub_->Subscribe(&sub->context, request);
    v1::Envelope envelope;
    if (sub->reader->Read(&envelope)) return true;
    *status = sub->reader->Finish();
    return false;
  };
  std::vector<std::unique_ptr<Subscription>> open;
  grpc::Status status;
  for (size_t i = 0; i < kSubscribersMax; ++i) {
    open.push_back(std::make_unique<Subscription>());
    ASSERT_TRUE(subscribe(open.back().get(), &status))
        << "subscriber " << i + 1 << " of " << kSubscribersMax << ": "
        << status.error_message();
  }
  Subscription one_more;
  ASSERT_FALSE(subscribe(&one_more, &status));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat(kSubscribersMax, " subscribers")));

  // One leaves; the server notices within its poll interval.
  open.back()->context.TryCancel();
  open.back()->reader->Finish();
  open.pop_back();
  bool served = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!served && absl::Now() < deadline) {
    auto again = std::make_unique<Subscription>();
    served = subscribe(again.get(), &status);
    if (served) {
      open.push_back(std::move(again));
    } else {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(served) << "no room after a subscriber left";
  for (auto& sub : open) sub->context.TryCancel();
  for (auto& sub : open) sub->reader->Finish();
}

TEST_F(ServerTest, SlowSubscriberIsCutOffAndResumesWithoutGaps) {
  ServerOptions options = Options();
  options.subscriber_buffer_events = 16;
  // Only the buffer's cut-off is under test: on a loaded machine the 4000
  // commands below can take longer than the default drain timeout.
  options.subscriber_drain_timeout = absl::Minutes(5);
  Start(options);
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(),
            v1::ACCEPTED);

  // A subscriber that reads one event, then nothing while the writer appends
  // far more than the transport can hold for it.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_stub = v1::Ledger::NewStub(grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  Authorize(&context, kInvestigator);
  v1::SubscribeRequest request;
  auto reader = slow_stub->Subscribe(&context, request);
  v1::Envelope envelope;
  ASSERT_TRUE(reader->Read(&envelope));
  EXPECT_EQ(envelope.position(), 1u);
  uint64_t last = envelope.position();
  constexpr int kCommands = 4000;
  for (int i = 0; i < kCommands; ++i) {
    Execute(
        AddProductCommand(absl::StrCat("p", i), "s1", absl::StrCat("p", i)));
  }
  std::vector<uint64_t> positions = {last};
  while (reader->Read(&envelope)) {
    positions.push_back(envelope.position());
    last = envelope.position();
  }
  grpc::Status status = reader->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("16 events behind"));
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("from_position=", last)));
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_LT(last, head);
  // Resume from the last position received: the rest, nothing twice.
  std::atomic<uint64_t> until{head};
  int cutoffs = 0;
  for (uint64_t p : Collect(last, until, &cutoffs)) positions.push_back(p);
  ASSERT_EQ(positions.size(), head);
  for (uint64_t i = 0; i < head; ++i) ASSERT_EQ(positions[i], i + 1);
}

// A server whose memtable budget is shrunk to kStallBudgetBytes, and
// writers that append far more than that budget: Fill(tag) makes
// kStallStreams pipelined ExecuteStream calls (as `apply` writes), each
// filling its own stores with kStallCommandsPerStream commands, and returns
// the seconds they took, or nullopt (after a test failure) when some
// command got no ACCEPTED result within kWriteBound.
class StalledReaderTest : public ServerTest {
 protected:
  static constexpr size_t kStallBudgetBytes = 1 << 20;
  static constexpr int kStallStreams = 2;
  static constexpr int kStallCommandsPerStream = 10000;
  static constexpr int kCommands = kStallStreams * kStallCommandsPerStream;
  // A bound that a stalled writer misses by far (it waits for ever).
  static constexpr absl::Duration kWriteBound = absl::Seconds(60);

  ServerOptions StallOptions() {
    ServerOptions options = Options();
    options.ledger.memtables_bytes_max = kStallBudgetBytes;
    return options;
  }

  std::optional<double> Fill(const std::string& tag) {
    const absl::Time start = absl::Now();
    std::atomic<int> answered{0};
    std::vector<std::thread> streams;
    for (int c = 0; c < kStallStreams; ++c) {
      streams.emplace_back([&, c] {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        context.set_deadline(absl::ToChronoTime(start + kWriteBound));
        auto stream = stub_->ExecuteStream(&context);
        std::thread sender([&] {
          for (int i = 0; i < kStallCommandsPerStream; ++i) {
            const std::string store =
                absl::StrCat(tag, c, "-", i / kLoadProductsPerStore);
            if (!stream->Write(
                    StoreFillCommand(store, i % kLoadProductsPerStore, i))) {
              break;
            }
          }
          stream->WritesDone();
        });
        v1::CommandResult result;
        while (stream->Read(&result)) {
          if (result.status() == v1::ACCEPTED) ++answered;
        }
        sender.join();
        grpc::Status status = stream->Finish();
        EXPECT_TRUE(status.ok()) << tag << c << ": " << status.error_message();
      });
    }
    for (std::thread& t : streams) t.join();
    if (answered != kCommands) {
      ADD_FAILURE() << tag << ": " << answered.load() << " of " << kCommands
                    << " commands answered ACCEPTED within "
                    << absl::FormatDuration(kWriteBound);
      return std::nullopt;
    }
    return absl::ToDoubleSeconds(absl::Now() - start);
  }

  // A stub on a channel of its own, whose flow-control window stays small
  // (no BDP probe): a reader on it that stops reading soon holds up the
  // server's writes to it.
  std::unique_ptr<v1::Ledger::Stub> StallingStub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    return v1::Ledger::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
  }
};

// A subscriber whose client never reads and one whose client pauses hold
// nothing writers wait for. Writers append far more than the memtable
// budget past both: every command is answered
// within a bound of the same writes with no subscriber, and both
// subscribers are cut off for taking nothing within the drain timeout; the
// paused one, reading on, gets every event up to its resume position, then
// the status naming it, and resumes from there without a gap.
TEST_F(StalledReaderTest, StalledSubscribersCostWritersNothing) {
  constexpr absl::Duration kDrainTimeout = absl::Seconds(1);
  ServerOptions options = StallOptions();
  options.subscriber_drain_timeout = kDrainTimeout;
  // Only the drain timeout cuts these subscribers off.
  options.subscriber_buffer_events = 1 << 30;
  Start(options);

  std::optional<double> alone = Fill("a");
  ASSERT_TRUE(alone.has_value());

  // One that never reads, from the start of the log (far more than the
  // transport holds for it) ...
  auto still_stub = StallingStub();
  grpc::ClientContext still_context;
  Authorize(&still_context, kAuditor);
  v1::SubscribeRequest from_start;
  auto still = still_stub->Subscribe(&still_context, from_start);
  // ... and one from the head that reads a few events of the next writes,
  // then pauses until they are over.
  auto paused_stub = StallingStub();
  grpc::ClientContext paused_context;
  Authorize(&paused_context, kInvestigator);
  v1::SubscribeRequest from_head;
  const uint64_t head_before = server_->ledger().log().head().position;
  from_head.set_from_position(head_before);
  auto paused = paused_stub->Subscribe(&paused_context, from_head);

  std::vector<uint64_t> positions;
  std::thread reader([&] {
    v1::Envelope envelope;
    while (positions.size() < 10 && paused->Read(&envelope)) {
      positions.push_back(envelope.position());
    }
  });
  std::optional<double> stalled = Fill("b");
  reader.join();
  if (!stalled.has_value()) {
    // Let the writers go before the server shuts down.
    still_context.TryCancel();
    paused_context.TryCancel();
    FAIL() << "writers stalled behind the subscribers";
  }
  std::cout << "writer throughput: " << kCommands / *alone
            << " commands/s with no subscriber, " << kCommands / *stalled
            << " commands/s past a subscriber that never reads and one "
               "paused ("
            << kCommands << " commands each, memtable budget "
            << kStallBudgetBytes << " bytes)\n";
  EXPECT_LT(*stalled, 4 * *alone + 2 * absl::ToDoubleSeconds(kDrainTimeout))
      << "writers slowed by the stalled subscribers";

  // Both are cut off within the drain timeout (after the writes, at most).
  const absl::Time deadline = absl::Now() + 10 * kDrainTimeout;
  while (server_->service().stalled_subscribers_cut_off() < 2 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(server_->service().stalled_subscribers_cut_off(), 2u);

  // The paused one reads on: every event up to its resume position, then
  // the status naming it.
  ASSERT_EQ(positions.size(), 10u);
  v1::Envelope envelope;
  while (paused->Read(&envelope)) positions.push_back(envelope.position());
  grpc::Status status = paused->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("took no event for 1s"));
  const uint64_t last = positions.back();
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("from_position=", last)));
  auto trailer = paused_context.GetServerTrailingMetadata();
  auto it = trailer.find(kResumePositionMetadata);
  ASSERT_NE(it, trailer.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()),
            absl::StrCat(last));
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_LT(last, head);
  std::atomic<uint64_t> until{head};
  int cutoffs = 0;
  for (uint64_t p : Collect(last, until, &cutoffs)) positions.push_back(p);
  ASSERT_EQ(positions.size(), head - head_before);
  for (size_t i = 0; i < positions.size(); ++i) {
    ASSERT_EQ(positions[i], head_before + 1 + i) << "gap or duplicate";
  }

  still_context.TryCancel();
  still->Finish();
}

// A postings reader whose client stops reading holds nothing writers wait
// for either: ListPostings reads a batch, lets go of the scan, then sends
// (it used to send from inside the scan, and its open iterator pinned the
// memtables until the client went away). Once the writes are over, the
// client reads on and gets every line, as a reader that never paused does.
TEST_F(StalledReaderTest, APostingsReaderThatStopsReadingCostsWritersNothing) {
  testing::CliRun simulated = RunStoreledger(
      {"--db", dir_.Sub("db"), "simulate", "--stores", "300", "--seed", "5"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  Start(StallOptions());
  auto all_lines = [&](v1::Ledger::Stub& stub) {
    grpc::ClientContext context;
    Authorize(&context, kAuditor);
    auto reader = stub.ListPostings(&context, v1::ListPostingsRequest());
    std::vector<std::string> lines;
    v1::PostingLine line;
    while (reader->Read(&line)) lines.push_back(line.SerializeAsString());
    grpc::Status status = reader->Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
    return lines;
  };
  const std::vector<std::string> expected = all_lines(*stub_);
  // Far more than the transport holds for a client that stops reading.
  ASSERT_GT(expected.size(), 10000u);

  auto paused_stub = StallingStub();
  grpc::ClientContext paused_context;
  Authorize(&paused_context, kAuditor);
  auto paused =
      paused_stub->ListPostings(&paused_context, v1::ListPostingsRequest());
  v1::PostingLine line;
  ASSERT_TRUE(paused->Read(&line));
  std::vector<std::string> lines = {line.SerializeAsString()};
  // Let the server fill the transport and wait on the client.
  absl::SleepFor(absl::Milliseconds(500));
  std::optional<double> written = Fill("b");
  if (!written.has_value()) {
    paused_context.TryCancel();  // lets the writers go before shutdown
    FAIL() << "writers stalled behind a postings reader that stopped reading";
  }
  std::cout << "writer throughput past a paused postings reader: "
            << kCommands / *written << " commands/s\n";
  while (paused->Read(&line)) lines.push_back(line.SerializeAsString());
  grpc::Status status = paused->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  // The fills post nothing: the paused reader's answer is the whole one.
  EXPECT_EQ(lines, expected);
}

}  // namespace
}  // namespace storeledger
