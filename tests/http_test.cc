// storeledgerd's HTTP side on a loopback port: the console's
// pages, every JSON API endpoint for every role (a merchant sees nothing of
// another merchant's through search, store, history, explain, statement or
// metrics), bad input answered with a clear error, /metrics after commands
// sent over gRPC, and the refusal of a non-loopback address without TLS.
// The ledger is tests/data/console_scenario.jsonl (the browser test's too):
// merchant m1's mini store L1 upgraded into WeChat Store W1, merchant m2's
// Channels store S2.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_options.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kMerchant1;
using ::storeledger::testing::kMerchant2;
using ::storeledger::testing::kTokenFile;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::LoopbackServerOptions;
using ::storeledger::testing::TempDir;
using ::storeledger::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::Not;

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string disposition;
};

class HttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = LoopbackServerOptions(dir_.Sub("db"));
    options.http_listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<LedgerServer>> server =
        LedgerServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_NE(server_->http(), nullptr);
    ApplyScenario();
  }

  // The scenario's commands through gRPC Execute (so that /metrics counts
  // them, as it counts every command the server executes).
  void ApplyScenario() {
    auto channel = grpc::CreateChannel(server_->address(),
                                       grpc::InsecureChannelCredentials());
    auto stub = v1::Ledger::NewStub(channel);
    std::ifstream file(absl::StrCat(STORELEDGER_SOURCE_DIR,
                                    "/tests/data/console_scenario.jsonl"));
    ASSERT_TRUE(file) << "tests/data/console_scenario.jsonl";
    std::string line;
    while (std::getline(file, line)) {
      absl::StatusOr<v1::Command> command = ParseCommandJson(line);
      ASSERT_TRUE(command.ok()) << command.status() << " in " << line;
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", kWriter));
      v1::CommandResult result;
      grpc::Status status = stub->Execute(&context, *command, &result);
      ASSERT_TRUE(status.ok()) << status.error_message();
      // c19 is the one refusal (R2: L1 is upgraded).
      EXPECT_EQ(result.status(),
                command->command_id() == "c19" ? v1::REJECTED : v1::ACCEPTED)
          << ToJson(result);
    }
  }

  Reply Get(const std::string& path, const char* token) {
    httplib::Client client("127.0.0.1", server_->http()->port());
    client.set_connection_timeout(5);
    client.set_read_timeout(30);
    httplib::Headers headers;
    if (token != nullptr) {
      headers.emplace("Authorization", absl::StrCat("Bearer ", token));
    }
    httplib::Result result = client.Get(path.c_str(), headers);
    Reply reply;
    if (!result) {
      ADD_FAILURE() << "GET " << path << ": "
                    << httplib::to_string(result.error());
      return reply;
    }
    reply.status = result->status;
    reply.body = result->body;
    reply.content_type = result->get_header_value("Content-Type");
    reply.disposition = result->get_header_value("Content-Disposition");
    return reply;
  }

  // Whether /metrics shows `line` within 5 s.
  bool MetricsSoonShow(absl::string_view line) {
    return WaitFor(
        [&] {
          return absl::StrContains(Get("/metrics", kInvestigator).body, line);
        },
        absl::Seconds(5), absl::Milliseconds(100));
  }

  template <typename Message>
  Message Parse(const Reply& reply) {
    Message message;
    EXPECT_EQ(reply.status, 200) << reply.body;
    google::protobuf::util::JsonParseOptions options;
    auto status = google::protobuf::util::JsonStringToMessage(
        reply.body, &message, options);
    EXPECT_TRUE(status.ok()) << status << " in " << reply.body;
    return message;
  }

  TempDir dir_;
  std::unique_ptr<LedgerServer> server_;
};

TEST_F(HttpTest, ServesTheCompiledInPagesToAnyoneButNoDataWithoutAToken) {
  Reply page = Get("/", nullptr);
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("<script src=\"app.js\""));
  EXPECT_EQ(Get("/app.js", nullptr).status, 200);
  EXPECT_EQ(Get("/no-such-page.html", nullptr).status, 404);

  // Every endpoint.
  for (const char* path :
       {"/api/whoami", "/api/policy", "/api/search?q=L1", "/api/store?id=L1",
        "/api/history?store=L1", "/api/balance-series?store=L1",
        "/api/diff?store=L1&from=2024-10-01&to=2024-11-01",
        "/api/explain?commandId=c12", "/api/balances",
        "/api/statement?store=L1&from=2024-10-01&to=2024-11-01", "/api/audit",
        "/api/digest", "/api/verify?digest=1:00", "/metrics"}) {
    Reply none = Get(path, nullptr);
    EXPECT_EQ(none.status, 401) << path << ": " << none.body;
    EXPECT_THAT(none.body, Not(HasSubstr("L1\",\"kind")));
    EXPECT_EQ(Get(path, "an-unknown-token-0123456789").status, 401) << path;
  }
  // A writer token writes over gRPC; the console is read-only.
  EXPECT_EQ(Get("/api/store?id=L1", kWriter).status, 403);
}

TEST_F(HttpTest, WhoamiNamesTheRole) {
  EXPECT_THAT(Get("/api/whoami", kInvestigator).body,
              HasSubstr("\"role\":\"investigator\""));
  EXPECT_THAT(Get("/api/whoami", kMerchant1).body,
              HasSubstr("\"merchantId\":\"m1\""));
  // Not partitioned: no partition to name.
  EXPECT_THAT(Get("/api/whoami", kAuditor).body,
              HasSubstr("\"partition\":0,\"partitions\":0"));
}

// The timeline's vertical lines: the seven instants of DESIGN §1, as the
// ledger's policy has them, for any reader.
TEST_F(HttpTest, PolicyHasTheSevenInstants) {
  for (const char* token : {kInvestigator, kAuditor, kMerchant2}) {
    Reply policy = Get("/api/policy", token);
    EXPECT_EQ(policy.status, 200) << policy.body;
    EXPECT_EQ(policy.body, ToJson(server_->ledger().policy()));
  }
  Reply policy = Get("/api/policy", kInvestigator);
  for (const char* instant :
       {"\"wechatStoreLaunch\":\"2024-08-24T16:00:00Z\"",
        "\"channelsNoNewProducts\":\"2024-09-24T16:00:00Z\"",
        "\"officialAccountSales\":\"2024-09-26T16:00:00Z\"",
        "\"miniUpgradeOpen\":\"2024-10-20T16:00:00Z\"",
        "\"channelsLiveRoomClosed\":", "\"miniEvoucherCutoff\":",
        "\"miniPhysicalCutoff\":\"2024-11-17T16:00:00Z\""}) {
    EXPECT_THAT(policy.body, HasSubstr(instant));
  }
}

TEST_F(HttpTest, SearchFindsTheStoreOfEveryKindOfId) {
  struct Case {
    const char* q;
    const char* kind;
    const char* store;
  };
  for (const Case& c :
       {Case{"L1", "store", "L1"}, Case{"o1", "order", "L1"},
        Case{"o3", "order", "W1"}, Case{"w1", "withdrawal", "L1"},
        Case{"m2", "merchant", "S2"}}) {
    Reply reply = Get(absl::StrCat("/api/search?q=", c.q), kInvestigator);
    EXPECT_EQ(reply.status, 200) << c.q << ": " << reply.body;
    EXPECT_THAT(reply.body, HasSubstr(absl::StrCat(
                                "\"kind\":\"", c.kind, "\",\"id\":\"", c.q,
                                "\",\"storeId\":\"", c.store, "\"")))
        << reply.body;
  }
  Reply merchant = Get("/api/search?q=m1", kInvestigator);
  EXPECT_THAT(merchant.body, HasSubstr("\"storeId\":\"L1\""));
  EXPECT_THAT(merchant.body, HasSubstr("\"storeId\":\"W1\""));
  Reply upgrade = Get("/api/search?q=c12", kInvestigator);
  EXPECT_THAT(upgrade.body, HasSubstr("\"kind\":\"command\""));
  EXPECT_THAT(upgrade.body, HasSubstr("\"storeIds\":[\"L1\",\"W1\"]"));
  Reply refused = Get("/api/search?q=c19", kInvestigator);
  EXPECT_THAT(refused.body,
              HasSubstr("\"status\":\"REJECTED\",\"rule\":\"R2\""));

  Reply unknown = Get("/api/search?q=nothing-has-this-id", kInvestigator);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("nothing-has-this-id"));
  EXPECT_EQ(Get("/api/search", kInvestigator).status, 400);
}

TEST_F(HttpTest, StoreAsOfAndAsKnownAtAPosition) {
  v1::StoreState now =
      Parse<v1::StoreState>(Get("/api/store?id=L1", kInvestigator));
  EXPECT_EQ(now.status(), v1::UPGRADED);
  EXPECT_EQ(now.upgraded_to(), "W1");
  EXPECT_EQ(now.balances().available_fen(), 14000);
  EXPECT_EQ(now.balances().paid_out_fen(), 5000);

  v1::StoreState before = Parse<v1::StoreState>(
      Get("/api/store?id=L1&asOf=2024-10-11T00:00:00%2B08:00", kInvestigator));
  EXPECT_EQ(before.status(), v1::OPEN);
  EXPECT_EQ(before.balances().available_fen(), 19000);
  EXPECT_EQ(before.balances().paid_out_fen(), 0);

  // As known right after c02 (the first product), before c03 (the second).
  v1::Explanation c02 =
      Parse<v1::Explanation>(Get("/api/explain?commandId=c02", kInvestigator));
  v1::StoreState known = Parse<v1::StoreState>(Get(
      absl::StrCat("/api/store?id=L1&position=", c02.outcome().last_position()),
      kInvestigator));
  EXPECT_EQ(known.products_size(), 1);
  EXPECT_EQ(now.products_size(), 2);
}

TEST_F(HttpTest, HistoryHoldsEventsAndRefusalsInPositionOrder) {
  Reply reply = Get("/api/history?store=L1", kInvestigator);
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_THAT(reply.body, HasSubstr("\"storeUpgraded\""));
  EXPECT_THAT(reply.body, HasSubstr("\"commandRejected\""));
  EXPECT_THAT(reply.body, HasSubstr("\"rule\":\"R2\""));
  EXPECT_LT(reply.body.find("\"storeUpgraded\""),
            reply.body.find("\"commandRejected\""));
  Reply target = Get("/api/history?store=W1", kInvestigator);
  EXPECT_THAT(target.body, HasSubstr("\"upgradedFrom\":\"L1\""));
  EXPECT_THAT(target.body, HasSubstr("\"syncedFrom\":\"L1\""));
  EXPECT_EQ(Get("/api/history?store=nope", kInvestigator).status, 404);
}

// A history longer than the console shows (kConsoleHistoryEventsMax) is
// refused whole, naming the CLI verb that pages through it, not cut short.
TEST_F(HttpTest, AHistoryLongerThanTheConsoleShowsIsRefusedNamingTheCliVerb) {
  // S2 has 5 events; products added before the Channels cutoff make it
  // exactly the most the console shows, then one more.
  const int64_t s2_events = 5;
  auto add_products = [&](int64_t from, int64_t to) {
    std::vector<v1::Command> batch;
    for (int64_t i = from; i < to; ++i) {
      absl::StatusOr<v1::Command> command = ParseCommandJson(absl::StrCat(
          R"({"commandId":"bulk-)", i,
          R"(","occurredAt":"2024-09-03T09:00:00+08:00","addProduct":)",
          R"({"storeId":"S2","productId":"bulk-)", i,
          R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c",)",
          R"("priceFen":100}})"));
      ASSERT_TRUE(command.ok()) << command.status();
      batch.push_back(*std::move(command));
      if (batch.size() == 1000 || i + 1 == to) {
        for (const auto& result :
             server_->ledger().ExecuteBatch(std::move(batch))) {
          ASSERT_TRUE(result.ok()) << result.status();
          ASSERT_EQ(result->status(), v1::ACCEPTED) << ToJson(*result);
        }
        batch.clear();
      }
    }
  };
  const int64_t most = static_cast<int64_t>(kConsoleHistoryEventsMax);
  add_products(0, most - s2_events);
  Reply whole = Get("/api/history?store=S2", kInvestigator);
  ASSERT_EQ(whole.status, 200) << whole.body.substr(0, 300);
  EXPECT_THAT(whole.body, HasSubstr(absl::StrCat("\"productId\":\"bulk-",
                                                 most - s2_events - 1)));
  add_products(most - s2_events, most - s2_events + 1);
  Reply longer = Get("/api/history?store=S2", kInvestigator);
  EXPECT_EQ(longer.status, 413) << longer.body.substr(0, 300);
  EXPECT_THAT(longer.body, HasSubstr("more than 20000 events"));
  EXPECT_THAT(longer.body, HasSubstr("storeledger history --store S2"));
}

TEST_F(HttpTest, BalanceSeriesEndsOnTheLedgersBalances) {
  for (const char* store : {"L1", "W1", "S2"}) {
    v1::StoreState state = Parse<v1::StoreState>(
        Get(absl::StrCat("/api/store?id=", store), kInvestigator));
    Reply series =
        Get(absl::StrCat("/api/balance-series?store=", store), kInvestigator);
    ASSERT_EQ(series.status, 200) << series.body;
    // The last point is the last object in the list: its balances are the
    // store's now.
    const size_t last = series.body.rfind("\"balances\":");
    ASSERT_NE(last, std::string::npos) << series.body;
    v1::Balances balances;
    const std::string json =
        series.body.substr(last + 11, series.body.size() - last - 11 - 3);
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(json, &balances).ok())
        << json;
    EXPECT_EQ(ToJson(balances), ToJson(state.balances())) << store;
  }
  Reply l1 = Get("/api/balance-series?store=L1", kInvestigator);
  EXPECT_THAT(l1.body, HasSubstr("\"occurredAt\":\"2024-10-02T04:05:00Z\""));
  EXPECT_EQ(Get("/api/balance-series?store=nope", kInvestigator).status, 404);
}

TEST_F(HttpTest, DiffAndExplain) {
  v1::StoreDiff diff = Parse<v1::StoreDiff>(
      Get("/api/diff?store=L1&from=2024-10-01&to=2024-10-23T00:00:00%2B08:00",
          kInvestigator));
  EXPECT_EQ(diff.status_after(), v1::UPGRADED);
  EXPECT_EQ(diff.balances().delta().paid_out_fen(), 5000);
  v1::Explanation explanation =
      Parse<v1::Explanation>(Get("/api/explain?commandId=c19", kInvestigator));
  EXPECT_EQ(explanation.outcome().rule(), "R2");
  ASSERT_EQ(explanation.stores_before_size(), 1);
  EXPECT_EQ(explanation.stores_before(0).status(), v1::UPGRADED);
  EXPECT_EQ(Get("/api/explain?commandId=nope", kInvestigator).status, 404);
}

TEST_F(HttpTest, FinanceBalancesStatementAuditDigestVerify) {
  v1::BalancesReport report =
      Parse<v1::BalancesReport>(Get("/api/balances", kAuditor));
  EXPECT_EQ(report.stores_size(), 3);
  bool legacy_and_new_apart = false;
  for (const v1::KindTotals& totals : report.totals()) {
    if (totals.kind() == v1::WECHAT_STORE) {
      EXPECT_FALSE(totals.legacy());
      EXPECT_EQ(totals.balances().pending_fen(), 10000);
      EXPECT_EQ(totals.balances().deposit_fen(), 50000);
      legacy_and_new_apart = true;
    }
  }
  EXPECT_TRUE(legacy_and_new_apart);

  Reply csv =
      Get("/api/statement?store=L1&from=2024-10-01&to=2024-11-01&format=csv",
          kAuditor);
  EXPECT_EQ(csv.status, 200) << csv.body;
  EXPECT_THAT(csv.content_type, HasSubstr("text/csv"));
  EXPECT_THAT(csv.disposition, HasSubstr("statement-L1.csv"));
  EXPECT_THAT(csv.body, HasSubstr("closing,L1/available,,,,,,14000,,"));
  v1::Statement statement = Parse<v1::Statement>(
      Get("/api/statement?store=L1&from=2024-10-01&to=2024-11-01", kAuditor));
  EXPECT_GT(statement.lines_size(), 0);

  Reply audit = Get("/api/audit", kAuditor);
  EXPECT_EQ(audit.status, 200) << audit.body;
  EXPECT_THAT(audit.body, HasSubstr("\"ok\":true"));
  EXPECT_EQ(Get("/api/audit", kInvestigator).status, 403);

  v1::Digest digest = Parse<v1::Digest>(Get("/api/digest", kInvestigator));
  EXPECT_EQ(digest.position(), server_->ledger().log().head().position);
  Reply verified = Get(absl::StrCat("/api/verify?digest=", digest.position(),
                                    ":", digest.hash()),
                       kAuditor);
  EXPECT_THAT(verified.body, HasSubstr("\"verified\":true"));
  Reply wrong = Get(absl::StrCat("/api/verify?digest=", digest.position(), ":",
                                 std::string(64, '0')),
                    kAuditor);
  EXPECT_EQ(wrong.status, 200);
  EXPECT_THAT(wrong.body, HasSubstr("\"verified\":false"));
  EXPECT_THAT(wrong.body, HasSubstr("hashes to"));
  EXPECT_EQ(Get("/api/verify?digest=12:abc", kAuditor).status, 400);
}

TEST_F(HttpTest, AMerchantSeesOnlyItsOwnStores) {
  // m1's own: through every door.
  EXPECT_EQ(Get("/api/store?id=L1", kMerchant1).status, 200);
  EXPECT_EQ(Get("/api/history?store=W1", kMerchant1).status, 200);
  EXPECT_EQ(Get("/api/search?q=o1", kMerchant1).status, 200);
  EXPECT_EQ(Get("/api/explain?commandId=c12", kMerchant1).status, 200);
  EXPECT_EQ(
      Get("/api/statement?store=W1&from=2024-10-01&to=2024-11-01", kMerchant1)
          .status,
      200);
  // m2 asks about m1's: the same answer as for an id that does not exist.
  for (const char* q : {"L1", "W1", "o1", "o3", "w1", "m1", "c12"}) {
    Reply reply = Get(absl::StrCat("/api/search?q=", q), kMerchant2);
    EXPECT_EQ(reply.status, 404) << q << ": " << reply.body;
    EXPECT_THAT(reply.body, Not(HasSubstr("\"storeId\""))) << q;
  }
  for (const std::string& path :
       {std::string("/api/store?id=L1"), std::string("/api/store?id=nope"),
        std::string("/api/history?store=W1"),
        std::string("/api/balance-series?store=L1"),
        std::string("/api/diff?store=L1&from=2024-10-01&to=2024-11-01"),
        std::string("/api/explain?commandId=c12"),
        std::string("/api/explain?commandId=nope"),
        std::string("/api/statement?store=L1&from=2024-10-01&to=2024-11-01")}) {
    Reply reply = Get(path, kMerchant2);
    EXPECT_EQ(reply.status, 403) << path << ": " << reply.body;
    EXPECT_THAT(reply.body, Not(HasSubstr("o1"))) << path;
  }
  // Ledger-wide views are not a merchant's.
  for (const char* path : {"/api/balances", "/api/digest", "/api/audit",
                           "/api/verify?digest=1:00", "/metrics"}) {
    EXPECT_EQ(Get(path, kMerchant2).status, 403) << path;
  }
  EXPECT_EQ(Get("/api/search?q=S2", kMerchant2).status, 200);
}

TEST_F(HttpTest, BadInputGetsAClearError) {
  Reply time = Get("/api/store?id=L1&asOf=yesterday", kInvestigator);
  EXPECT_EQ(time.status, 400);
  EXPECT_THAT(time.body, HasSubstr("asOf must be an RFC 3339 time"));
  Reply position =
      Get("/api/store?id=L1&position=99999999999999999999999", kInvestigator);
  EXPECT_EQ(position.status, 400);
  EXPECT_THAT(position.body, HasSubstr("position"));
  Reply past = Get("/api/store?id=L1&position=1000000", kInvestigator);
  EXPECT_EQ(past.status, 400);
  EXPECT_THAT(past.body, HasSubstr("past the log's head"));
  Reply unknown = Get("/api/store?id=nope", kInvestigator);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_THAT(unknown.body, HasSubstr("nope"));
  EXPECT_EQ(Get("/api/store", kInvestigator).status, 400);
  Reply backwards =
      Get("/api/diff?store=L1&from=2024-11-01&to=2024-10-01", kInvestigator);
  EXPECT_EQ(backwards.status, 400);
  EXPECT_THAT(backwards.body, HasSubstr("before"));
  EXPECT_EQ(
      Get("/api/statement?store=L1&from=2024-11-01&to=2024-10-01", kAuditor)
          .status,
      400);
  EXPECT_EQ(
      Get("/api/statement?store=L1&from=2024-10-01&to=2024-11-01&format=xml",
          kAuditor)
          .status,
      400);
  // A huge range is answered, and agrees with the ledger.
  Reply huge =
      Get("/api/statement?store=L1&from=0001-01-01T00:00:00Z"
          "&to=9999-12-31T00:00:00Z&format=csv",
          kAuditor);
  EXPECT_EQ(huge.status, 200) << huge.body;
  EXPECT_THAT(huge.body, HasSubstr("closing,L1/available,,,,,,14000,,"));
  EXPECT_EQ(Get("/api/no-such-endpoint", kInvestigator).status, 404);
}

TEST_F(HttpTest, MetricsCountCommandsByOutcomeAndRuleWithoutIds) {
  Reply metrics = Get("/metrics", kInvestigator);
  ASSERT_EQ(metrics.status, 200) << metrics.body;
  EXPECT_THAT(metrics.content_type, HasSubstr("text/plain"));
  EXPECT_THAT(
      metrics.body,
      HasSubstr(
          "storeledger_commands_total{outcome=\"REJECTED\",rule=\"R2\"} 1"));
  EXPECT_THAT(
      metrics.body,
      HasSubstr(
          "storeledger_commands_total{outcome=\"ACCEPTED\",rule=\"\"} 23"));
  EXPECT_THAT(metrics.body,
              HasSubstr("storeledger_group_commit_commands_count 24"));
  EXPECT_THAT(metrics.body, HasSubstr("storeledger_append_seconds_count 24"));
  EXPECT_THAT(metrics.body,
              HasSubstr(absl::StrCat("storeledger_log_head_position ",
                                     server_->ledger().log().head().position)));
  EXPECT_THAT(metrics.body, HasSubstr("storeledger_subscribers 0"));
  EXPECT_THAT(metrics.body, HasSubstr("storeledger_sync_seconds_count"));
  Get("/api/store?id=L1", kInvestigator);
  EXPECT_THAT(
      Get("/metrics", kAuditor).body,
      HasSubstr("storeledger_read_seconds_count{endpoint=\"/api/store\"}"));
  // No label carries a store, merchant, order or command id.
  for (const char* id : {"\"L1\"", "\"W1\"", "\"S2\"", "\"m1\"", "\"m2\"",
                         "\"o1\"", "\"c19\""}) {
    EXPECT_THAT(metrics.body, Not(HasSubstr(id))) << id;
  }
}

TEST_F(HttpTest, MetricsCountLiveSubscribers) {
  auto stub = v1::Ledger::NewStub(grpc::CreateChannel(
      server_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kAuditor));
  v1::SubscribeRequest request;
  request.set_from_position(0);
  std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
      stub->Subscribe(&context, request);
  // Read the whole log: the subscriber is live and caught up.
  v1::Envelope envelope;
  const uint64_t head = server_->ledger().log().head().position;
  while (envelope.position() < head) ASSERT_TRUE(reader->Read(&envelope));
  EXPECT_THAT(Get("/metrics", kInvestigator).body,
              HasSubstr("storeledger_subscribers 1\n"));
  // The server counts an envelope sent when gRPC reports its write done,
  // which can come just after the client has read it.
  EXPECT_TRUE(MetricsSoonShow("storeledger_subscriber_lag_events_max 0\n"));
  context.TryCancel();
  reader->Finish();
  // The server notices the cancellation within its poll interval.
  EXPECT_TRUE(MetricsSoonShow("storeledger_subscribers 0\n"));
}

// The console's audit reads the live ledger, as gRPC's Audit does: audits
// beside writers and full compactions that rewrite and delete every table
// file all pass. (It used to open the directory read-only beside the live
// instance, whose compactions delete the files such an open reads: a sound
// ledger answered DATA_LOSS, issue 12 item 2.)
TEST_F(HttpTest, TheConsolesAuditOfTheLiveLedgerPassesDuringCompactions) {
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    auto stub = v1::Ledger::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
    for (int i = 0; !stop; ++i) {
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", kWriter));
      v1::CommandResult result;
      const std::string id = absl::StrCat("live-", i);
      const v1::Command command =
          ParseCommandJson(
              absl::StrCat(
                  R"({"commandId":")", id,
                  R"(","occurredAt":"2024-10-25T10:00:00+08:00","openStore":{"storeId":")",
                  id, R"(","merchantId":")", id,
                  R"(","kind":"MINI_STORE","subject":"ENTERPRISE"}})"))
              .value();
      if (stub->Execute(&context, command, &result).ok() &&
          result.status() == v1::ACCEPTED) {
        ++written;
      }
    }
  });
  std::thread compactor(
      [&] { testing::CompactUntil(server_->ledger().log(), stop); });
  int audits = 0;
  const absl::Time until = absl::Now() + absl::Seconds(3);
  while (absl::Now() < until || audits < 5) {
    Reply audit = Get("/api/audit?run=1", kAuditor);
    ++audits;
    EXPECT_EQ(audit.status, 200) << "audit " << audits << ": " << audit.body;
    EXPECT_THAT(audit.body, HasSubstr("\"ok\":true")) << audit.body;
    if (HasFailure()) break;
  }
  stop = true;
  writer.join();
  compactor.join();
  EXPECT_GT(written.load(), 0);
  std::cout << audits << " console audits beside the writer and compactions\n";
}

// HTTPS with the gRPC certificate (made with the openssl tool, when it is
// installed): a client that trusts it reads the API; plain HTTP gets nothing.
TEST(HttpTlsTest, ServesHttpsWithTheServersCertificate) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the openssl tool is not installed";
  }
  TempDir dir;
  const std::string cert = dir.Sub("cert.pem");
  const std::string key = dir.Sub("key.pem");
  ASSERT_EQ(
      std::system(
          absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 2 "
                       "-subj /CN=localhost -addext "
                       "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
                       key, " -out ", cert, " 2>/dev/null")
              .c_str()),
      0);
  ServerOptions options;
  options.db_dir = dir.Sub("db");
  options.listen = "127.0.0.1:0";
  options.http_listen = "127.0.0.1:0";
  options.tokens = *TokenTable::Parse(kTokenFile);
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(std::move(options));
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE((*server)->http()->tls());
  const int port = (*server)->http()->port();

  httplib::SSLClient https("127.0.0.1", port);
  https.set_ca_cert_path(cert.c_str());
  https.enable_server_certificate_verification(true);
  https.set_connection_timeout(5);
  httplib::Result digest = https.Get(
      "/api/digest", {{"Authorization", absl::StrCat("Bearer ", kAuditor)}});
  ASSERT_TRUE(digest) << httplib::to_string(digest.error());
  EXPECT_EQ(digest->status, 200) << digest->body;
  EXPECT_THAT(digest->body, HasSubstr("\"position\""));

  httplib::Client plain("127.0.0.1", port);
  plain.set_connection_timeout(2);
  plain.set_read_timeout(2);
  httplib::Result refused = plain.Get("/api/digest");
  EXPECT_TRUE(!refused || refused->status != 200);
}

TEST(HttpStartTest, ANonLoopbackConsoleNeedsTls) {
  TempDir dir;
  ServerOptions options;
  options.db_dir = dir.Sub("db");
  options.listen = "127.0.0.1:0";
  options.http_listen = "0.0.0.0:0";
  options.tokens = *TokenTable::Parse(kTokenFile);
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(std::move(options));
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(server.status())) << server.status();
  EXPECT_THAT(server.status().message(), HasSubstr("--http 0.0.0.0:0"));
  EXPECT_THAT(server.status().message(), HasSubstr("without TLS"));
}

}  // namespace
}  // namespace storeledger
