// The fixture of the server tests (tests/server_*_test.cc, one binary per
// RPC or area): a LedgerServer on a real RocksDB in a per-test temporary
// directory, listening on a loopback port chosen per test (port 0), with a
// token table of one principal per role, and a stub to call it. Helpers:
// the commands the tests send, the check that every acknowledged command
// is in the log, and spawning the storeledgerd binary (STORELEDGERD_BIN,
// which CMake defines for every server_*_test).
//
// Header-only: the test-support library does not link the server layer.
// Not thread-safe beyond what gRPC's stubs are: a test starts and stops
// the server from its main thread.
#ifndef STORELEDGER_TESTS_SUPPORT_SERVER_FIXTURE_H_
#define STORELEDGER_TESTS_SUPPORT_SERVER_FIXTURE_H_

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storage/event_log.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/fault_env.h"
#include "tests/support/server_options.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace storeledger::testing {

// 32 clients x 2,000 commands for the load test (sync off). Lower the
// constant to shorten it on a slow machine.
inline constexpr int kLoadClients = 32;
inline constexpr int kLoadCommandsPerClient = 2000;
inline constexpr int kLoadProductsPerStore = 100;

inline v1::Command OpenStoreCommand(const std::string& id,
                                    const std::string& store,
                                    const std::string& merchant) {
  return CommandFromJson(absl::StrCat(
      R"({"commandId":")", id, R"(","occurredAt":")", ChinaText(China(6, 1)),
      R"(","openStore":{"storeId":")", store, R"(","merchantId":")", merchant,
      R"(","kind":"MINI_STORE","subject":"ENTERPRISE"}})"));
}

inline v1::Command AddProductCommand(const std::string& id,
                                     const std::string& store,
                                     const std::string& product) {
  return CommandFromJson(absl::StrCat(
      R"({"commandId":")", id, R"(","occurredAt":")", ChinaText(China(6, 2)),
      R"(","addProduct":{"storeId":")", store, R"(","productId":")", product,
      R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})"));
}

// The i-th command of a client filling store `store`: it opens the store
// (command id "<store>-open"), then adds products p1, p2, ... ("<store>-<i>").
inline v1::Command StoreFillCommand(const std::string& store, int i,
                                    int product) {
  return i == 0 ? OpenStoreCommand(absl::StrCat(store, "-open"), store, "m1")
                : AddProductCommand(absl::StrCat(store, "-", i), store,
                                    absl::StrCat("p", product));
}

// Start() serves a fresh ledger in dir_ with Options(); Execute() calls it
// as `token` (the writer by default) and expects the call to succeed.
class ServerTest : public ::testing::Test {
 protected:
  ServerOptions Options() { return LoopbackServerOptions(dir_.Sub("db")); }
  void Start(ServerOptions options) {
    absl::StatusOr<std::unique_ptr<LedgerServer>> server =
        LedgerServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Ledger::NewStub(channel_);
  }
  void Start() { Start(Options()); }

  static void Authorize(grpc::ClientContext* context, const char* token) {
    if (token != nullptr) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
  }

  v1::CommandResult Execute(const v1::Command& command,
                            const char* token = kWriter) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::CommandResult result;
    grpc::Status status = stub_->Execute(&context, command, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return result;
  }

  // Subscribes from `from` and collects positions until `until` (inclusive)
  // arrives, resuming after RESOURCE_EXHAUSTED as a client should.
  std::vector<uint64_t> Collect(uint64_t from,
                                const std::atomic<uint64_t>& until,
                                int* cutoffs) {
    std::vector<uint64_t> positions;
    uint64_t last = from;
    while (true) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      v1::SubscribeRequest request;
      request.set_from_position(last);
      auto reader = stub_->Subscribe(&context, request);
      v1::Envelope envelope;
      bool done = false;
      while (reader->Read(&envelope)) {
        positions.push_back(envelope.position());
        last = envelope.position();
        if (until.load() != 0 && last >= until.load()) {
          done = true;
          context.TryCancel();
          break;
        }
      }
      grpc::Status status = reader->Finish();
      if (done) return positions;
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++*cutoffs;
        auto trailer = context.GetServerTrailingMetadata();
        auto it = trailer.find(kResumePositionMetadata);
        EXPECT_NE(it, trailer.end());
        if (it != trailer.end()) {
          EXPECT_EQ(std::string(it->second.data(), it->second.size()),
                    absl::StrCat(last));
        }
        continue;
      }
      ADD_FAILURE() << "subscription ended: " << status.error_code() << " "
                    << status.error_message();
      return positions;
    }
  }

  TempDir dir_;
  // A test's faulty file system, if it uses one: outlives the server.
  std::unique_ptr<testing::FaultFileSystem> fault_fs_;
  std::unique_ptr<LedgerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
};

// A command the server acknowledged as ACCEPTED, at the positions it gave.
struct Ack {
  std::string command_id;
  uint64_t first_position;
  uint64_t last_position;
};

// Every acknowledged ACCEPTED command is in the log at the positions it was
// given, and its outcome is stored.
inline void ExpectAcksInLog(const EventLog& log, const std::vector<Ack>& acks) {
  for (const Ack& ack : acks) {
    ASSERT_GT(ack.first_position, 0u) << ack.command_id;
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      absl::StatusOr<v1::Envelope> envelope = log.Read(p);
      ASSERT_TRUE(envelope.ok()) << ack.command_id << ": " << envelope.status();
      ASSERT_EQ(envelope->command_id(), ack.command_id) << "position " << p;
    }
    absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
        log.GetOutcome(ack.command_id);
    ASSERT_TRUE(outcome.ok() && outcome->has_value()) << ack.command_id;
  }
}

// A storeledgerd process started with Spawn: its pid and the first line it
// printed (read from a pipe); its stderr goes to err_path.
struct Child {
  pid_t pid = -1;
  std::string first_line;
  std::string err_path;
};

inline Child Spawn(const std::vector<std::string>& args,
                   const std::string& err_path) {
  int out_pipe[2];
  EXPECT_EQ(pipe(out_pipe), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> argv_strings = {STORELEDGERD_BIN};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  Child child;
  child.err_path = err_path;
  EXPECT_EQ(posix_spawn(&child.pid, STORELEDGERD_BIN, &actions, nullptr,
                        argv.data(), environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  char c;
  while (read(out_pipe[0], &c, 1) == 1 && c != '\n') child.first_line += c;
  close(out_pipe[0]);
  return child;
}

// The exit status of `pid`, or 128 + the signal that killed it.
inline int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

inline std::string Slurp(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_SERVER_FIXTURE_H_
