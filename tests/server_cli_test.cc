// The programs around storeledgerd: the CLI as its client (the same output
// as embedded mode), the daemon binary (SIGTERM, TLS start-up errors), and
// the Node example client when node is installed.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::Ack;
using ::storeledger::testing::AddProductCommand;
using ::storeledger::testing::Child;
using ::storeledger::testing::ExpectAcksInLog;
using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kMerchant1;
using ::storeledger::testing::kMerchant2;
using ::storeledger::testing::kTokenFile;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::ServerTest;
using ::storeledger::testing::Slurp;
using ::storeledger::testing::Spawn;
using ::storeledger::testing::StoreFillCommand;
using ::storeledger::testing::WaitExit;
using ::testing::HasSubstr;

// ---- the CLI as a client

TEST_F(ServerTest, CliThroughTheServerPrintsWhatEmbeddedModePrints) {
  Start();
  const std::string input = absl::StrCat(
      R"({"commandId":"c1","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})",
      "\n", "not json\n\n",
      R"({"commandId":"c2","occurredAt":"2024-06-02T10:00:00+08:00","addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})",
      "\n",
      R"({"commandId":"c3","occurredAt":"2024-06-02T11:00:00+08:00","addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})",
      "\n",
      R"({"commandId":"c1","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})",
      "\n");
  const std::vector<std::string> remote = {"--server", server_->address()};
  auto with = [](std::vector<std::string> base, const char* token,
                 std::vector<std::string> rest) {
    base.push_back("--token");
    base.push_back(token);
    base.insert(base.end(), rest.begin(), rest.end());
    return base;
  };
  testing::CliRun remote_apply =
      RunStoreledger(with(remote, kWriter, {"apply"}), input);
  // The same input applied embedded to another database.
  testing::CliRun embedded_apply =
      RunStoreledger({"--db", dir_.Sub("embedded"), "apply"}, input);
  EXPECT_EQ(remote_apply.exit_code, 2) << remote_apply.err;  // one INVALID line
  EXPECT_EQ(remote_apply.exit_code, embedded_apply.exit_code);
  EXPECT_EQ(remote_apply.out, embedded_apply.out);
  EXPECT_THAT(remote_apply.out, HasSubstr(R"("line":"2",)"));
  EXPECT_THAT(remote_apply.out, HasSubstr(R"("replayed":true)"));

  // The read verbs, remote and embedded on the server's own database (a
  // read-only open beside the running server).
  const std::string db = dir_.Sub("db");
  const std::vector<std::vector<std::string>> reads = {
      {"state", "--store", "s1"},
      {"state", "--store", "s1", "--position", "2"},
      {"state", "--store", "s1", "--as-of", "2024-06-01T12:00:00+08:00"},
      {"history", "--store", "s1"},
      {"history", "--store", "s1", "--include-rejections"},
      {"history", "--store", "s1", "--include-rejections", "--limit", "2"},
      {"history", "--store", "nope"},
      {"digest"},
      {"tail", "--from-position", "0"},
      {"tail", "--from-position", "2"},
  };
  for (const auto& read : reads) {
    // A merchant for its own store; the log-wide verbs, and a store nobody
    // owns, need an auditor or investigator.
    const char* token = read[0] == "digest" || read[0] == "tail" ? kAuditor
                        : read[2] == "nope"                      ? kInvestigator
                                                                 : kMerchant1;
    std::vector<std::string> embedded_args = {"--db", db};
    embedded_args.insert(embedded_args.end(), read.begin(), read.end());
    testing::CliRun r = RunStoreledger(with(remote, token, read));
    testing::CliRun e = RunStoreledger(embedded_args);
    const std::string what = absl::StrJoin(read, " ");
    EXPECT_EQ(r.exit_code, e.exit_code) << what << "\n" << r.err;
    EXPECT_EQ(r.out, e.out) << what;
    EXPECT_EQ(r.err, e.err) << what;
    if (read[0] != "history" || read[2] != "nope") {
      EXPECT_FALSE(r.out.empty()) << what;
    }
  }
  // A merchant reading another merchant's store, a bad token.
  testing::CliRun denied =
      RunStoreledger(with(remote, kMerchant2, {"state", "--store", "s1"}));
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  testing::CliRun unauthenticated =
      RunStoreledger(with(remote, "nobody-token-000000000", {"digest"}));
  EXPECT_EQ(unauthenticated.exit_code, 1);
  EXPECT_THAT(unauthenticated.err, HasSubstr("UNAUTHENTICATED"));
  testing::CliRun unsupported =
      RunStoreledger(with(remote, kAuditor, {"rebuild"}));
  EXPECT_EQ(unsupported.exit_code, 2);
  EXPECT_THAT(unsupported.err, HasSubstr("does not work with --server"));
}

// The server goes away while `apply` has results outstanding: the message
// names the first line whose result was not printed, one past the last
// printed (it used to name the line after that).
TEST_F(ServerTest, CliApplyNamesTheFirstLineWithoutAResultWhenTheServerGoes) {
  Start();
  constexpr int kLines = 40000;
  std::string input;
  for (int i = 0; i < kLines; ++i) {
    absl::StrAppend(&input, ToJson(StoreFillCommand("s1", i, i)), "\n");
  }
  std::thread stopper([&] {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (server_->ledger().log().head().position < 2000 &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    server_->Shutdown(absl::ZeroDuration());
  });
  testing::CliRun run = RunStoreledger(
      {"--server", server_->address(), "--token", kWriter, "apply"}, input);
  stopper.join();
  ASSERT_NE(run.exit_code, 0) << "the server stopped after every line";
  const std::vector<std::string> lines = run.lines();
  int64_t printed = 0;
  for (const std::string& line : lines) {
    if (line.empty()) continue;
    ++printed;
    ASSERT_THAT(line, HasSubstr(absl::StrCat(R"("line":")", printed, R"(")")));
    ASSERT_THAT(line, HasSubstr(R"("status":"ACCEPTED")"));
  }
  ASSERT_LT(printed, kLines);
  EXPECT_THAT(run.err,
              HasSubstr(absl::StrCat("(results from line ", printed + 1,
                                     " on were not received)")));
}

// `history` with every filter, remote against embedded on the server's own
// database: the same lines, errors and exit statuses. The store has facts
// and refusals about products, orders and a withdrawal over several days,
// and a store that was never opened has only a refusal.
TEST_F(ServerTest, CliHistoryFiltersPrintWhatEmbeddedModePrints) {
  Start();
  auto line = [](const std::string& id, const std::string& at,
                 const std::string& body) {
    return absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":"2024-06-)",
                        at, R"(:00+08:00",)", body, "}\n");
  };
  auto product = [](const std::string& store, const std::string& id) {
    return absl::StrCat(
        R"("addProduct":{"storeId":")", store, R"(","productId":")", id,
        R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})");
  };
  const std::string input = absl::StrCat(
      line(
          "h1", "01T10:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      line("h2", "02T10:00", product("s1", "p1")),
      line("h3", "02T11:00", product("s1", "p2")),
      line("h4", "03T10:00",
           R"("listProduct":{"storeId":"s1","productId":"p1"})"),
      line("h5", "03T11:00",
           R"("listProduct":{"storeId":"s1","productId":"p2"})"),
      line(
          "h6", "04T10:00",
          R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":2,"unitPriceFen":100}]})"),
      line("h7", "04T11:00",
           R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":150})"),
      line("h8", "04T12:00",
           R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":200})"),
      line(
          "h9", "05T10:00",
          R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p2","quantity":1,"unitPriceFen":300}]})"),
      line("h10", "05T11:00", R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
      line(
          "h11", "06T10:00",
          R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":20})"),
      line(
          "h12", "07T10:00",
          R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":500})"),
      line(
          "h13", "07T11:00",
          R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":100})"),
      line("h14", "08T10:00",
           R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"w1"})"),
      line("h15", "08T11:00",
           R"("listProduct":{"storeId":"s1","productId":"p9"})"),
      line("h16", "08T12:00", product("ghost", "g1")),
      line("h17", "09T10:00",
           R"("cancelOrder":{"storeId":"s1","orderId":"o2"})"));
  const std::vector<std::string> remote = {"--server", server_->address(),
                                           "--token", kInvestigator};
  testing::CliRun applied = RunStoreledger(
      {"--server", server_->address(), "--token", kWriter, "apply"}, input);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  // h7 (wrong amount), h12 (too much), h15 (no such product), h16 (no store).
  size_t rejected = 0;
  for (const std::string& result : applied.lines()) {
    if (absl::StrContains(result, R"("status":"REJECTED")")) ++rejected;
  }
  ASSERT_EQ(rejected, 4u) << applied.out;

  const std::string db = dir_.Sub("db");
  auto run_both = [&](const std::vector<std::string>& args) {
    std::vector<std::string> remote_args = remote;
    remote_args.push_back("history");
    remote_args.insert(remote_args.end(), args.begin(), args.end());
    std::vector<std::string> embedded_args = {"--db", db, "history"};
    embedded_args.insert(embedded_args.end(), args.begin(), args.end());
    return std::make_pair(RunStoreledger(remote_args),
                          RunStoreledger(embedded_args));
  };
  const size_t everything =
      run_both({"--store", "s1", "--include-rejections"}).second.lines().size();
  ASSERT_GT(everything, 10u);

  struct Case {
    std::vector<std::string> args;
    // 0: prints nothing (or fails); 1: prints some, not all, of the history.
    bool some;
  };
  const std::vector<Case> cases = {
      {{"--store", "s1", "--order", "o1"}, true},
      {{"--store", "s1", "--order", "o1", "--include-rejections"}, true},
      {{"--store", "s1", "--order", "nope"}, false},
      {{"--store", "s1", "--product", "p1"}, true},
      {{"--store", "s1", "--product", "p9", "--include-rejections"}, true},
      {{"--store", "s1", "--withdrawal", "w1"}, true},
      {{"--store", "s1", "--withdrawal", "w1", "--include-rejections"}, true},
      {{"--store", "s1", "--type", "OrderPaid,OrderPlaced"}, true},
      {{"--store", "s1", "--type", "ProductListed", "--include-rejections"},
       true},
      {{"--store", "s1", "--from", "2024-06-04T00:00:00+08:00"}, true},
      {{"--store", "s1", "--to", "2024-06-03T23:59:59+08:00",
        "--include-rejections"},
       true},
      {{"--store", "s1", "--from", "2024-06-04T11:00:00+08:00", "--to",
        "2024-06-07T10:00:00+08:00", "--include-rejections"},
       true},
      {{"--store", "s1", "--from-position", "5", "--limit", "3",
        "--include-rejections"},
       true},
      {{"--store", "s1", "--order", "o1", "--type", "OrderPaid",
        "--include-rejections", "--limit", "1"},
       true},
      {{"--store", "s1", "--include-rejections", "--limit", "0"}, false},
      {{"--store", "ghost", "--include-rejections"}, true},
      {{"--store", "ghost", "--include-rejections", "--product", "zz"}, false},
      {{"--store", "ghost", "--include-rejections", "--limit", "0"}, false},
      {{"--store", "ghost"}, false},
      {{"--store", "s1", "--type", "Bogus"}, false},
      {{"--store", "s1", "--from", "2024-06-05T00:00:00+08:00", "--to",
        "2024-06-04T00:00:00+08:00"},
       false},
  };
  for (const Case& c : cases) {
    const auto [r, e] = run_both(c.args);
    const std::string what = absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.exit_code, e.exit_code) << what << "\n" << r.err;
    EXPECT_EQ(r.out, e.out) << what;
    EXPECT_EQ(r.err, e.err) << what;
    if (c.some) {
      EXPECT_FALSE(r.out.empty()) << what;
      EXPECT_LT(r.lines().size(), everything) << what;
    } else {
      EXPECT_TRUE(r.out.empty()) << what;
    }
  }
  // The filters select what they name: o1's refusal is there, o2 is not.
  const testing::CliRun o1 =
      run_both({"--store", "s1", "--order", "o1", "--include-rejections"})
          .first;
  EXPECT_THAT(o1.out, HasSubstr(R"("commandId":"h7")"));
  EXPECT_THAT(o1.out, ::testing::Not(HasSubstr(R"("orderId":"o2")")));
  // The store that was never opened: NOT_FOUND once its refusal is filtered
  // out, in both modes (checked above); with it, the refusal.
  const testing::CliRun ghost =
      run_both({"--store", "ghost", "--include-rejections"}).first;
  EXPECT_EQ(ghost.lines().size(), 1u) << ghost.out;
  const testing::CliRun ghost_none =
      run_both({"--store", "ghost", "--include-rejections", "--product", "zz"})
          .first;
  EXPECT_EQ(ghost_none.exit_code, 1);
  EXPECT_THAT(ghost_none.err, HasSubstr("NOT_FOUND"));
}

// ---- the daemon binary

TEST_F(ServerTest, DaemonExitsZeroOnSigtermAndKeepsEveryAck) {
  const std::string tokens = dir_.Sub("tokens");
  {
    std::ofstream file(tokens);
    file << kTokenFile;
  }
  chmod(tokens.c_str(), 0644);
  const std::string db = dir_.Sub("db");
  // Refused: a token file others can read.
  Child refused =
      Spawn({"--db", db, "--listen", "127.0.0.1:0", "--tokens", tokens},
            dir_.Sub("refused.err"));
  EXPECT_EQ(WaitExit(refused.pid), 1);
  EXPECT_THAT(Slurp(refused.err_path), HasSubstr("chmod 600"));
  chmod(tokens.c_str(), 0600);

  Child child = Spawn({"--db", db, "--listen", "127.0.0.1:0", "--tokens",
                       tokens, "--shutdown-grace-ms", "5000"},
                      dir_.Sub("daemon.err"));
  ASSERT_THAT(child.first_line, HasSubstr("listening on 127.0.0.1:"))
      << Slurp(child.err_path);
  // "storeledgerd: listening on 127.0.0.1:PORT (plaintext, loopback) ..."
  const std::vector<std::string> words = absl::StrSplit(child.first_line, ' ');
  ASSERT_GE(words.size(), 4u);
  const std::string address = words[3];
  auto stub = v1::Ledger::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::mutex mu;
  std::vector<Ack> acks;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      const std::string store = absl::StrCat("d", c);
      for (int i = 0;; ++i) {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
        v1::CommandResult result;
        grpc::Status status = stub->Execute(
            &context,
            i == 0 ? OpenStoreCommand(store, store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i)),
            &result);
        if (!status.ok()) return;
        std::lock_guard<std::mutex> lock(mu);
        acks.push_back({result.command_id(), result.first_position(),
                        result.last_position()});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  kill(child.pid, SIGTERM);
  EXPECT_EQ(WaitExit(child.pid), 0) << Slurp(child.err_path);
  for (std::thread& t : clients) t.join();
  ASSERT_GT(acks.size(), 0u);
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ExpectAcksInLog((*ledger)->log(), acks);
}

// A --tls-ca file that holds no certificate is named in one line before any
// connection (gRPC used to say "empty address list" when it
// connected, and logged four lines of its own); storeledgerd's TLS start-up
// errors exit 1, as docs/server.md says of every start-up error.
TEST_F(ServerTest, BadTlsFilesAreOneLineErrorsWithTheDocumentedExitStatus) {
  Start();
  const std::string garbage = dir_.Sub("garbage.pem");
  const std::string key = dir_.Sub("key.pem");
  {
    std::ofstream(garbage) << "this is not a certificate\n";
    std::ofstream(key)
        << "-----BEGIN PRIVATE KEY-----\n"
           "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
           "-----END PRIVATE KEY-----\n";
  }
  for (const std::string& ca : {garbage, key}) {
    for (const std::vector<std::string>& verb :
         std::vector<std::vector<std::string>>{
             {"digest"}, {"state", "--store", "s1"}, {"apply"}}) {
      std::vector<std::string> args = {
          "--server", server_->address(), "--token", kAuditor, "--tls-ca", ca};
      args.insert(args.end(), verb.begin(), verb.end());
      testing::CliRun run = RunStoreledger(args, "");
      SCOPED_TRACE(absl::StrJoin(args, " "));
      EXPECT_EQ(run.exit_code, 2);
      EXPECT_THAT(run.err, HasSubstr(absl::StrCat("--tls-ca ", ca,
                                                  ": not a PEM certificate")));
      EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
      EXPECT_THAT(run.err, ::testing::Not(HasSubstr("UNAVAILABLE")));
    }
  }

  const std::string tokens = dir_.Sub("tokens");
  {
    std::ofstream file(tokens);
    file << kTokenFile;
  }
  chmod(tokens.c_str(), 0600);
  for (const std::string& cert : {garbage, key}) {
    Child daemon =
        Spawn({"--db", dir_.Sub("tls-db"), "--listen", "127.0.0.1:0",
               "--tokens", tokens, "--tls-cert", cert, "--tls-key", key},
              dir_.Sub("tls.err"));
    EXPECT_EQ(WaitExit(daemon.pid), 1);
    const std::string err = Slurp(daemon.err_path);
    EXPECT_THAT(err, HasSubstr(absl::StrCat("--tls-cert ", cert,
                                            ": not a PEM certificate")));
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// ---- the Node example (examples/node), when node is installed

TEST_F(ServerTest, NodeExampleClientRunsAgainstTheServer) {
  const std::string example =
      absl::StrCat(STORELEDGER_SOURCE_DIR, "/examples/node");
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not installed";
  }
  if (!std::filesystem::exists(example + "/node_modules/@grpc/grpc-js")) {
    const bool can_install =
        std::filesystem::exists(example + "/package-lock.json") &&
        std::system("command -v npm >/dev/null 2>&1") == 0 &&
        std::system(
            absl::StrCat("npm ci --silent --no-audit --no-fund --prefix ",
                         example, " >/dev/null 2>&1")
                .c_str()) == 0;
    if (!can_install) {
      GTEST_SKIP() << "examples/node/node_modules is missing and `npm ci "
                      "--prefix examples/node` did not work (offline?)";
    }
  }
  Start();
  const std::string out = dir_.Sub("node.out");
  const std::string command =
      absl::StrCat("node ", example, "/client.js --server ", server_->address(),
                   " --token ", kWriter, " --subscribe-token ", kAuditor,
                   " --store node-s1 > ", out, " 2>&1");
  const int rc = std::system(command.c_str());
  const std::string text = Slurp(out);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("ACCEPTED"));
  EXPECT_THAT(text, HasSubstr("subscribed: position 1 "));
  // The commands it executed are in the log.
  absl::StatusOr<v1::StoreState> state = server_->ledger().State("node-s1");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->products_size(), 2);
}

}  // namespace
}  // namespace storeledger
