// Execute and ExecuteStream: one byte limit through every method, a bounded
// load test where every acknowledgement is in the log, stream batching and
// ordering, a stream's end on shutdown, on a failed command and on a client
// that cancels, and graceful shutdown under load.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/fault_env.h"
#include "tests/support/ledger_check.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::Ack;
using ::storeledger::testing::AddProductCommand;
using ::storeledger::testing::ExpectAcksInLog;
using ::storeledger::testing::kLoadClients;
using ::storeledger::testing::kLoadCommandsPerClient;
using ::storeledger::testing::kLoadProductsPerStore;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::ServerTest;
using ::storeledger::testing::StoreFillCommand;
using ::testing::HasSubstr;

// One size limit for a command whatever the door (CLI or gRPC): over
// gRPC, a 4.0 MB command is INVALID before deciding, and nothing of it is
// stored; at kCommandBytesMax it is decided as through the CLI.
TEST_F(ServerTest, ACommandOverTheByteLimitIsInvalidThroughEveryMethod) {
  Start();
  const v1::Command big =
      OpenStoreCommand("big", "s-big", std::string(4'000'000, 'm'));
  ASSERT_GT(big.ByteSizeLong(), kCommandBytesMax);
  const v1::CommandResult unary = Execute(big);
  EXPECT_EQ(unary.status(), v1::INVALID) << unary.message();
  EXPECT_THAT(unary.message(), HasSubstr("kCommandBytesMax"));

  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  ASSERT_TRUE(stream->Write(big));
  ASSERT_TRUE(stream->Write(OpenStoreCommand("small", "s-small", "m1")));
  stream->WritesDone();
  std::vector<v1::CommandResult> results;
  v1::CommandResult result;
  while (stream->Read(&result)) results.push_back(result);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status(), v1::INVALID);
  EXPECT_THAT(results[0].message(), HasSubstr("kCommandBytesMax"));
  EXPECT_EQ(results[1].status(), v1::ACCEPTED);
  // Only the small store's events: no 4 MB rejection.
  EXPECT_EQ(server_->ledger().log().head().position, 2u);
}

// ---- load and shutdown

TEST_F(ServerTest, LoadEveryAcknowledgementIsInTheLog) {
  Start();
  std::mutex mu;
  std::vector<Ack> acks;
  std::atomic<int> failures{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kLoadClients; ++c) {
    clients.emplace_back([&, c] {
      // A fresh store every kLoadProductsPerStore commands: the cost of an
      // AddProduct grows with the products already in its store, and this
      // test is about the server, not about big stores.
      auto store_of = [c](int i) {
        return absl::StrCat("load", c, "-", i / kLoadProductsPerStore);
      };
      auto command_of = [&](int i) {
        const std::string store = store_of(i);
        return i % kLoadProductsPerStore == 0
                   ? OpenStoreCommand(absl::StrCat(store, "-open"), store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i));
      };
      std::vector<Ack> mine;
      auto keep = [&](const v1::CommandResult& r) {
        if (r.status() != v1::ACCEPTED) {
          ++failures;
          return;
        }
        mine.push_back({r.command_id(), r.first_position(), r.last_position()});
      };
      if (c % 2 == 0) {  // half unary, half on one ExecuteStream
        for (int i = 0; i < kLoadCommandsPerClient; ++i) {
          keep(Execute(command_of(i)));
        }
      } else {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        auto stream = stub_->ExecuteStream(&context);
        std::thread sender([&] {
          for (int i = 0; i < kLoadCommandsPerClient; ++i) {
            if (!stream->Write(command_of(i))) break;
          }
          stream->WritesDone();
        });
        v1::CommandResult result;
        int received = 0;
        while (stream->Read(&result)) {
          // Results in order: the i-th result is the i-th command's.
          if (result.command_id() != command_of(received).command_id()) {
            ++failures;
          }
          ++received;
          keep(result);
        }
        sender.join();
        grpc::Status status = stream->Finish();
        if (!status.ok() || received != kLoadCommandsPerClient) ++failures;
      }
      std::lock_guard<std::mutex> lock(mu);
      acks.insert(acks.end(), mine.begin(), mine.end());
    });
  }
  for (std::thread& t : clients) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(acks.size(),
            static_cast<size_t>(kLoadClients) * kLoadCommandsPerClient);
  std::cout << acks.size() << " commands from " << kLoadClients
            << " clients in " << seconds << " s (" << acks.size() / seconds
            << " commands/s)\n";
  const EventLog& log = server_->ledger().log();
  // One event per command, plus MerchantOnboarded for the first store of m1.
  EXPECT_EQ(log.head().position,
            static_cast<uint64_t>(kLoadClients) * kLoadCommandsPerClient + 1);
  std::set<uint64_t> seen;
  for (const Ack& ack : acks) {
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      EXPECT_TRUE(seen.insert(p).second) << "position " << p << " acked twice";
    }
  }
  ExpectAcksInLog(log, acks);
}

// ExecuteStream batches: a client that pipelines a few thousand commands on
// each of two streams gets every result, in its stream's order (rejections
// included: they are results, not errors), each at the positions the log
// holds; and the server executed them in batches of more than one command.
TEST_F(ServerTest, ExecuteStreamBatchesAndAnswersInOrder) {
  Start();
  constexpr int kStreams = 2;
  constexpr int kCommandsPerStream = 2500;
  // Every kDuplicateEvery-th command adds a product the store already has.
  constexpr int kDuplicateEvery = 250;
  auto command_of = [&](int stream, int i) {
    const std::string store =
        absl::StrCat("st", stream, "-", i / kLoadProductsPerStore);
    return StoreFillCommand(store, i % kLoadProductsPerStore,
                            i % kDuplicateEvery == 0 ? i - 1 : i);
  };
  std::vector<std::vector<v1::CommandResult>> results(kStreams);
  std::vector<grpc::Status> statuses(kStreams);
  std::vector<std::thread> clients;
  for (int c = 0; c < kStreams; ++c) {
    clients.emplace_back([&, c] {
      grpc::ClientContext context;
      Authorize(&context, kWriter);
      auto stream = stub_->ExecuteStream(&context);
      std::thread sender([&] {
        for (int i = 0; i < kCommandsPerStream; ++i) {
          if (!stream->Write(command_of(c, i))) break;
        }
        stream->WritesDone();
      });
      v1::CommandResult result;
      while (stream->Read(&result)) results[c].push_back(result);
      sender.join();
      statuses[c] = stream->Finish();
    });
  }
  for (std::thread& t : clients) t.join();

  std::vector<Ack> acks;
  for (int c = 0; c < kStreams; ++c) {
    ASSERT_TRUE(statuses[c].ok()) << statuses[c].error_message();
    ASSERT_EQ(results[c].size(), static_cast<size_t>(kCommandsPerStream));
    for (int i = 0; i < kCommandsPerStream; ++i) {
      const v1::CommandResult& r = results[c][i];
      ASSERT_EQ(r.command_id(), command_of(c, i).command_id())
          << "stream " << c << " result " << i << " out of order";
      const bool duplicate =
          i % kDuplicateEvery == 0 && i % kLoadProductsPerStore != 0;
      ASSERT_EQ(r.status(), duplicate ? v1::REJECTED : v1::ACCEPTED)
          << r.command_id() << ": " << r.message();
      if (r.status() == v1::ACCEPTED) {
        acks.push_back({r.command_id(), r.first_position(), r.last_position()});
      }
    }
  }
  const EventLog& log = server_->ledger().log();
  ExpectAcksInLog(log, acks);
  // Positions were handed out once each.
  std::set<uint64_t> seen;
  for (const Ack& ack : acks) {
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      ASSERT_TRUE(seen.insert(p).second) << "position " << p << " acked twice";
    }
  }
  const BatchStats stats = server_->service().stream_batch_stats();
  EXPECT_EQ(stats.commands,
            static_cast<uint64_t>(kStreams) * kCommandsPerStream);
  EXPECT_LT(stats.batches, stats.commands) << "no batch of more than one";
  EXPECT_LE(stats.largest_batch_commands, kStreamBatchCommandsMax);
  std::cout << stats.commands << " commands in " << stats.batches
            << " batches (largest " << stats.largest_batch_commands << ")\n";
}

// A stream waiting for its client's next command when the server shuts down
// ends with UNAVAILABLE at once (not at the end of the grace period), after
// the results of everything it was sent.
TEST_F(ServerTest, ExecuteStreamEndsUnavailableOnShutdown) {
  Start();
  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  constexpr int kCommands = 20;
  for (int i = 0; i < kCommands; ++i) {
    ASSERT_TRUE(stream->Write(StoreFillCommand("sh", i, i)));
  }
  v1::CommandResult result;
  for (int i = 0; i < kCommands; ++i) {
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  const absl::Time start = absl::Now();
  constexpr absl::Duration kGrace = absl::Seconds(10);
  std::thread shutdown([&] { server_->Shutdown(kGrace); });
  EXPECT_FALSE(stream->Read(&result));
  grpc::Status status = stream->Finish();
  shutdown.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_LT(absl::Now() - start, kGrace / 2);
}

// A command that fails to execute (here: its WAL sync fails) ends the stream
// with the ledger's status, not a generic CANCELLED, even while the server
// is waiting for the client's next command; the commands after it get no
// result; everything before it was answered.
TEST_F(ServerTest, ExecuteStreamEndsWithTheStatusOfAFailedCommand) {
  fault_fs_ = std::make_unique<testing::FaultFileSystem>();
  testing::FaultFileSystem& fs = *fault_fs_;
  ServerOptions options = Options();
  options.ledger.env = fs.env();
  options.ledger.sync = true;  // the WAL sync is what fails
  Start(options);
  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  auto command = [](int i) { return StoreFillCommand("f", i, i); };
  constexpr int kBefore = 10;
  constexpr int kAfter = 5;
  for (int i = 0; i < kBefore; ++i) ASSERT_TRUE(stream->Write(command(i)));
  v1::CommandResult result;
  for (int i = 0; i < kBefore; ++i) {
    ASSERT_TRUE(stream->Read(&result));
    ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  fs.InjectError(testing::FileKind::kWal, testing::FaultOp::kSync);
  // The server may end the call at the first of these, before the client
  // has sent the others: then their writes fail, which is fine.
  for (int i = kBefore; i < kBefore + kAfter; ++i) {
    if (!stream->Write(command(i))) break;
  }
  // No WritesDone: the server ends the call itself.
  EXPECT_FALSE(stream->Read(&result))
      << "a result after the failure: " << result.DebugString();
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_GE(fs.injected_errors(), 1);
  // Nothing after the failure was written: the ledger refuses writes now.
  grpc::ClientContext unary;
  Authorize(&unary, kWriter);
  v1::CommandResult refused;
  EXPECT_EQ(
      stub_->Execute(&unary, command(kBefore + kAfter), &refused).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
}

// A client that cancels its stream in the middle: the server stops that
// stream (the commands it already took are executed, the rest dropped), goes
// on serving, and shuts down promptly; whatever it acknowledged is in the
// log.
TEST_F(ServerTest, ExecuteStreamSurvivesAClientThatCancels) {
  Start();
  constexpr int kCommands = 3000;
  std::vector<Ack> acks;
  {
    grpc::ClientContext context;
    Authorize(&context, kWriter);
    auto stream = stub_->ExecuteStream(&context);
    std::thread sender([&] {
      for (int i = 0; i < kCommands; ++i) {
        if (!stream->Write(StoreFillCommand("cx", i, i))) break;
      }
    });
    v1::CommandResult result;
    while (acks.size() < 100 && stream->Read(&result)) {
      acks.push_back({result.command_id(), result.first_position(),
                      result.last_position()});
    }
    context.TryCancel();
    while (stream->Read(&result)) {
    }
    sender.join();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ASSERT_EQ(acks.size(), 100u);
  // Still serving, on a new stream.
  {
    grpc::ClientContext context;
    Authorize(&context, kWriter);
    auto stream = stub_->ExecuteStream(&context);
    ASSERT_TRUE(stream->Write(OpenStoreCommand("cy-open", "cy", "m1")));
    stream->WritesDone();
    v1::CommandResult result;
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
    EXPECT_TRUE(stream->Finish().ok());
  }
  ExpectAcksInLog(server_->ledger().log(), acks);
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ServerTest, GracefulShutdownUnderLoadLosesNothingAcknowledged) {
  Start();
  std::mutex mu;
  std::vector<Ack> acks;
  std::atomic<int> refused{0};
  std::vector<std::thread> clients;
  constexpr int kClients = 8;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const std::string store = absl::StrCat("sd", c);
      for (int i = 0;; ++i) {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        v1::CommandResult result;
        const v1::Command command =
            i == 0 ? OpenStoreCommand(store, store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i));
        grpc::Status status = stub_->Execute(&context, command, &result);
        if (!status.ok()) {
          ++refused;
          return;  // UNAVAILABLE: shutting down; nothing acknowledged
        }
        std::lock_guard<std::mutex> lock(mu);
        acks.push_back({result.command_id(), result.first_position(),
                        result.last_position()});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string db = dir_.Sub("db");
  server_->Shutdown(absl::Seconds(5));
  for (std::thread& t : clients) t.join();
  server_.reset();
  EXPECT_EQ(refused.load(), kClients);
  ASSERT_GT(acks.size(), 0u);
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ExpectAcksInLog((*ledger)->log(), acks);
  std::cout << acks.size() << " commands acknowledged before the shutdown\n";
}

// ExecuteStream over a file system that forgets whatever was not synced
// (tests/support/fault_env.h), as fault_injection_test's power-loss loop
// runs the ledger, but through gRPC and storeledgerd's stream workers:
// kPowerLossStreams streams of the simulated migration, the power going off
// at a random file operation; after each loss the database is reopened and
// every command a stream acknowledged must be there, with its positions.
TEST_F(ServerTest, ExecuteStreamAcknowledgesOnlyWhatSurvivesAPowerLoss) {
  constexpr int kPowerLosses = 8;
  // At least this many acknowledged commands in all: a round whose power
  // goes off early acknowledges few, so the loop goes on past kPowerLosses
  // (up to three times as many) until it has them (under ASan two runs in
  // six had 76 and 90 after eight losses).
  constexpr size_t kAcknowledgedMin = 100;
  constexpr size_t kPowerLossStreams = 2;
  // The power goes off within this many file operations of the start of a
  // round's streams (a synced group of up to 256 commands costs about two).
  constexpr int64_t kCrashOpsMax = 24;
  const uint64_t seed = testing::SeedFromEnvironment();
  std::cout << "seed " << seed << " (re-run with STORELEDGER_SEED=" << seed
            << ")\n";
  std::mt19937_64 rng(seed);
  const std::vector<v1::Command> plan = PlanWrittenAhead(30, seed);
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < plan.size(); ++i) index_of[plan[i].command_id()] = i;

  fault_fs_ = std::make_unique<testing::FaultFileSystem>();
  testing::FaultFileSystem& fs = *fault_fs_;
  testing::AcknowledgedResults acknowledged;
  std::mutex mu;
  // Stream s sends plan[s], plan[s + kPowerLossStreams], ...; next[s] is its
  // first command not acknowledged yet.
  std::vector<size_t> next(kPowerLossStreams);
  uint64_t in_flight = 0;  // streams that ended with the power off
  size_t checked = 0;      // acknowledged commands of the ledgers done
  int generation = 0;
  std::string db;
  // A fresh ledger: the plan from its start.
  auto start_over = [&] {
    checked += acknowledged.size();
    acknowledged.clear();
    db = dir_.Sub(absl::StrCat("db-", ++generation));
    for (size_t s = 0; s < kPowerLossStreams; ++s) next[s] = s;
  };
  start_over();
  int loss = 1;
  for (; loss <= kPowerLosses ||
         (loss <= 3 * kPowerLosses &&
          checked + acknowledged.size() < kAcknowledgedMin);
       ++loss) {
    if (std::all_of(next.begin(), next.end(),
                    [&](size_t n) { return n >= plan.size(); })) {
      start_over();
    }
    ServerOptions options = Options();
    options.db_dir = db;
    options.ledger.env = fs.env();
    options.ledger.sync = true;  // what is under test
    Start(options);
    fs.CrashAfterOps(static_cast<int64_t>(rng() % kCrashOpsMax));
    std::vector<std::thread> streams;
    for (size_t s = 0; s < kPowerLossStreams; ++s) {
      streams.emplace_back([&, s] {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        auto stream = stub_->ExecuteStream(&context);
        std::thread sender([&] {
          for (size_t i = next[s]; i < plan.size(); i += kPowerLossStreams) {
            if (!stream->Write(plan[i])) break;
          }
          stream->WritesDone();
        });
        v1::CommandResult result;
        while (stream->Read(&result)) {
          std::lock_guard<std::mutex> lock(mu);
          ASSERT_NE(result.status(), v1::INVALID) << result.message();
          ASSERT_TRUE(testing::Acknowledge(result, &acknowledged).ok());
          next[s] = index_of.at(result.command_id()) + kPowerLossStreams;
        }
        sender.join();
        if (!stream->Finish().ok()) {
          std::lock_guard<std::mutex> lock(mu);
          ++in_flight;
        }
      });
    }
    for (std::thread& t : streams) t.join();
    fs.SetActive(false);  // if the countdown has not run out yet
    server_->Shutdown(absl::Seconds(5));
    server_.reset();  // the ledger closes with the power off
    if (HasFailure()) return;
    ASSERT_TRUE(fs.DropUnsyncedData().ok());
    fs.SetActive(true);
    LedgerOptions reopen;
    reopen.env = fs.env();
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, reopen);
    ASSERT_TRUE(ledger.ok())
        << "after power loss " << loss << ": " << ledger.status();
    testing::RecoveryCheckOptions check;
    check.audit = loss == kPowerLosses;
    check.seed = seed;
    absl::StatusOr<testing::RecoveryCheckStats> stats =
        testing::CheckRecoveredLog((*ledger)->log(), acknowledged, check);
    ASSERT_TRUE(stats.ok()) << "after power loss " << loss << " (seed " << seed
                            << "): " << stats.status();
    ASSERT_EQ(stats->acknowledged, acknowledged.size())
        << "acknowledged commands missing after power loss " << loss;
  }
  // The losses landed while commands were being written, and dropped some.
  EXPECT_GT(in_flight, 0u);
  EXPECT_GT(fs.dropped_bytes(), 0u);
  checked += acknowledged.size();
  EXPECT_GE(checked, kAcknowledgedMin);
  std::cout << loss - 1 << " power losses under ExecuteStream: " << checked
            << " acknowledged commands in " << generation
            << " ledger(s), all present after every loss (" << in_flight
            << " streams ended by a loss, " << fs.dropped_bytes()
            << " unsynced bytes dropped)\n";
}

}  // namespace
}  // namespace storeledger
