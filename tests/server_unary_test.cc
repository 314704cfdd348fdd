// Unary Execute under concurrency: storeledgerd batches the commands of
// concurrent calls into Ledger::ExecuteBatch calls (server/service.h
// kExecuteThreads), and every call must still get the answer to its own
// command, exactly what Ledger::Execute would have given it: its id, its
// positions (which hold its events in the log), and a retry's replay.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::AddProductCommand;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::TempDir;

constexpr int kClients = 16;
constexpr int kCommandsPerClient = 25;

class ServerUnaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.db_dir = dir_.Sub("db");
    options.listen = "127.0.0.1:0";
    absl::StatusOr<TokenTable> tokens =
        TokenTable::Parse(absl::StrCat(kWriter, " writer\n"));
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    options.tokens = *tokens;
    options.ledger.sync = false;  // what is answered, not durability
    absl::StatusOr<std::unique_ptr<LedgerServer>> server =
        LedgerServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // One channel per client, so that the calls really are concurrent.
    for (int c = 0; c < kClients; ++c) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      stubs_.push_back(v1::Ledger::NewStub(grpc::CreateCustomChannel(
          server_->address(), grpc::InsecureChannelCredentials(), args)));
    }
  }

  grpc::Status Execute(int client, const v1::Command& command,
                       v1::CommandResult* result) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kWriter));
    return stubs_[client]->Execute(&context, command, result);
  }

  // The log holds the command's events at the positions its answer names.
  void ExpectEventsOf(const v1::CommandResult& result) {
    ASSERT_GT(result.first_position(), 0u) << result.command_id();
    for (uint64_t p = result.first_position(); p <= result.last_position();
         ++p) {
      absl::StatusOr<Envelope> envelope = server_->ledger().log().Read(p);
      ASSERT_TRUE(envelope.ok()) << envelope.status();
      EXPECT_EQ(envelope->command_id(), result.command_id())
          << "position " << p;
    }
  }

  TempDir dir_;
  std::unique_ptr<LedgerServer> server_;
  std::vector<std::unique_ptr<v1::Ledger::Stub>> stubs_;
};

TEST_F(ServerUnaryTest, ConcurrentCallsEachGetTheAnswerToTheirOwnCommand) {
  std::vector<std::vector<v1::CommandResult>> results(kClients);
  std::vector<std::vector<v1::CommandResult>> retries(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      const std::string store = absl::StrCat("s", c);
      for (int i = 0; i < kCommandsPerClient; ++i) {
        const v1::Command command =
            i == 0 ? OpenStoreCommand(absl::StrCat(store, "-open"), store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i));
        v1::CommandResult result;
        const grpc::Status status = Execute(c, command, &result);
        EXPECT_TRUE(status.ok()) << status.error_message();
        results[c].push_back(result);
        // Every fifth command is sent again at once: a retry.
        if (i % 5 == 4) {
          v1::CommandResult retry;
          EXPECT_TRUE(Execute(c, command, &retry).ok());
          retries[c].push_back(retry);
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();

  for (int c = 0; c < kClients; ++c) {
    ASSERT_EQ(results[c].size(), static_cast<size_t>(kCommandsPerClient));
    for (int i = 0; i < kCommandsPerClient; ++i) {
      const v1::CommandResult& result = results[c][i];
      EXPECT_EQ(result.command_id(), i == 0 ? absl::StrCat("s", c, "-open")
                                            : absl::StrCat("s", c, "-", i));
      EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
      EXPECT_FALSE(result.replayed());
      ExpectEventsOf(result);
      if (i % 5 == 4) {
        const v1::CommandResult& retry = retries[c][i / 5];
        EXPECT_EQ(retry.command_id(), result.command_id());
        EXPECT_TRUE(retry.replayed());
        EXPECT_EQ(retry.first_position(), result.first_position());
        EXPECT_EQ(retry.last_position(), result.last_position());
      }
    }
  }
  // The answers' positions cover the log exactly, each position once.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& client : results) {
    for (const v1::CommandResult& result : client) {
      ranges.emplace_back(result.first_position(), result.last_position());
    }
  }
  std::sort(ranges.begin(), ranges.end());
  uint64_t next = 1;
  for (const auto& [first, last] : ranges) {
    EXPECT_EQ(first, next);
    next = last + 1;
  }
  EXPECT_EQ(server_->ledger().log().head().position, next - 1);
}

// The same new command from every client at once: it is executed once, and
// every other caller gets that execution's answer as a replay.
TEST_F(ServerUnaryTest, TheSameCommandFromManyCallersIsExecutedOnce) {
  v1::CommandResult opened;
  ASSERT_TRUE(Execute(0, OpenStoreCommand("open", "s1", "m1"), &opened).ok());
  const v1::Command command = AddProductCommand("add", "s1", "p1");
  std::atomic<int> ready{0};
  std::vector<v1::CommandResult> results(kClients);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      ready.fetch_add(1);
      while (ready.load() < kClients) std::this_thread::yield();
      EXPECT_TRUE(Execute(c, command, &results[c]).ok());
    });
  }
  for (std::thread& t : threads) t.join();
  int executed = 0;
  for (const v1::CommandResult& result : results) {
    EXPECT_EQ(result.command_id(), "add");
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
    EXPECT_EQ(result.first_position(), results[0].first_position());
    if (!result.replayed()) ++executed;
  }
  EXPECT_EQ(executed, 1);
  ExpectEventsOf(results[0]);
  EXPECT_EQ(results[0].first_position(), opened.last_position() + 1);
  EXPECT_EQ(server_->ledger().log().head().position,
            results[0].last_position());
}

}  // namespace
}  // namespace storeledger
