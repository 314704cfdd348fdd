// The user's terms through storeledgerd: every verb that answers in the user's
// terms (find, position-at, --known-at, history without --store, the sync in
// both stores' histories, statement --pair / --yuan, postings, balances, tail
// past the head, --tz, explain, diff) prints through
// `--server` exactly what it prints embedded on the server's own database
// (a read-only open beside the running server), exit status and stderr
// included; and the new RPCs answer with the ledger's messages.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "core/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/cli_json.h"
#include "tests/support/server_options.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::CliRun;
using ::storeledger::testing::Cmd;
using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kMerchant1;
using ::storeledger::testing::kMerchant2;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::LoopbackServerOptions;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

// A mini store s1 (merchant m1) with an own and a third-party product,
// orders either side of Beijing midnight, upgraded into w1 and synced twice
// (p1 copied, p3 skipped; then nothing copied), a withdrawal wd1 in s1 and
// an order o9 in w1; a store s2 of merchant m2.
std::vector<std::string> Timeline() {
  return {
      Cmd("c1", "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      Cmd("c2", "2024-06-01T10:00:00+08:00",
          R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":1000})"),
      Cmd("c3", "2024-06-01T10:01:00+08:00",
          R"("addProduct":{"storeId":"s1","productId":"p3","kind":"PHYSICAL","origin":"THIRD_PARTY","categoryId":"cat-1","priceFen":800})"),
      Cmd("c4", "2024-06-01T11:00:00+08:00",
          R"("listProduct":{"storeId":"s1","productId":"p1"})"),
      Cmd("c5", "2024-10-09T15:00:00Z",
          R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":1,"unitPriceFen":1001}]})"),
      Cmd("c6", "2024-10-09T15:59:59Z",
          R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":1001})"),
      Cmd("c7", "2024-10-10T10:00:00+08:00",
          R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
      Cmd("c8", "2024-10-11T10:00:00+08:00",
          R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":1})"),
      Cmd("c9", "2024-10-22T10:00:00+08:00",
          R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      Cmd("c10", "2024-10-22T11:00:00+08:00",
          R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      Cmd("c11", "2024-10-23T10:00:00+08:00",
          R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"wd1","amountFen":1000})"),
      Cmd("c12", "2024-10-24T11:00:00+08:00",
          R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      Cmd("c13", "2024-11-05T13:00:00+08:00",
          R"("grantCategoryQualification":{"storeId":"w1","categoryId":"cat-1"})"),
      Cmd("c14", "2024-11-05T13:20:00+08:00",
          R"("payDeposit":{"storeId":"w1","categoryId":"cat-1","amountFen":50000})"),
      Cmd("c15", "2024-11-05T13:30:00+08:00",
          R"("listProduct":{"storeId":"w1","productId":"p1"})"),
      Cmd("c16", "2024-11-06T12:00:00+08:00",
          R"("placeOrder":{"storeId":"w1","orderId":"o9","lines":[{"productId":"p1","quantity":1,"unitPriceFen":1234}]})"),
      Cmd("c17", "2024-11-06T12:05:00+08:00",
          R"("payOrder":{"storeId":"w1","orderId":"o9","amountFen":1234})"),
      Cmd("c18", "2024-11-07T09:00:00+08:00",
          R"("openStore":{"storeId":"s2","merchantId":"m2","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
  };
}

class ServerTermsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options = LoopbackServerOptions(db_);
    absl::StatusOr<std::unique_ptr<LedgerServer>> server =
        LedgerServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    before_ = absl::Now() - absl::Seconds(1);
    CliRun applied =
        Remote(kWriter, {"apply"}, absl::StrJoin(Timeline(), "\n") + "\n");
    ASSERT_EQ(applied.exit_code, 0) << applied.err;
    ASSERT_THAT(applied.out, ::testing::Not(HasSubstr("REJECTED")));
    stub_ = v1::Ledger::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  CliRun Remote(const char* token, std::vector<std::string> args,
                const std::string& in = "") {
    args.insert(args.begin(),
                {"--server", server_->address(), "--token", token});
    return RunStoreledger(args, in);
  }
  CliRun Embedded(std::vector<std::string> args) {
    args.insert(args.begin(), {"--db", db_});
    return RunStoreledger(args);
  }

  // The verb through the server prints what it prints embedded.
  void ExpectSame(const char* token, const std::vector<std::string>& args,
                  int exit_code) {
    const std::string what = absl::StrJoin(args, " ");
    CliRun remote = Remote(token, args);
    CliRun embedded = Embedded(args);
    EXPECT_EQ(embedded.exit_code, exit_code) << what << "\n" << embedded.err;
    EXPECT_EQ(remote.exit_code, embedded.exit_code) << what << "\n"
                                                    << remote.err;
    EXPECT_EQ(remote.out, embedded.out) << what;
    EXPECT_EQ(remote.err, embedded.err) << what;
    // Never a silent answer: something on stdout, or stderr says why not.
    EXPECT_FALSE(remote.out.empty() && remote.err.empty()) << what;
  }

  void Authorize(grpc::ClientContext* context, const char* token) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }

  TempDir dir_;
  std::string db_ = dir_.Sub("db");
  std::unique_ptr<LedgerServer> server_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
  absl::Time before_;
};

TEST_F(ServerTermsTest, LookupsPrintWhatEmbeddedModePrints) {
  for (const char* id : {"s1", "w1", "m1", "p1", "o1", "wd1", "c10"}) {
    ExpectSame(kInvestigator, {"find", id}, 0);
  }
  ExpectSame(kInvestigator, {"find", "nothing-has-this-id"}, 1);
  const std::string now = absl::FormatTime(
      absl::RFC3339_sec, absl::Now() + absl::Seconds(1), absl::UTCTimeZone());
  ExpectSame(kAuditor, {"position-at", now}, 0);
  ExpectSame(kAuditor, {"position-at", "2020-01-01"}, 0);  // position 0
  ExpectSame(kAuditor, {"position-at", "--tz", "UTC", "2020-01-01"}, 0);
  ExpectSame(kAuditor, {"position-at", "yesterday"}, 2);
  // Outside the times the ledger holds: refused, naming the range.
  ExpectSame(kAuditor, {"position-at", "0000-06-01T00:00:00Z"}, 2);
  ExpectSame(kAuditor, {"position-at", "99999-01-01T00:00:00Z"}, 2);
  // --known-at at, before and after what was recorded.
  ExpectSame(kMerchant1, {"state", "--store", "s1", "--known-at", now}, 0);
  ExpectSame(kMerchant1, {"state", "--store", "s1", "--known-at", "2020-01-01"},
             1);
  ExpectSame(kMerchant1,
             {"state", "--store", "s1", "--known-at", now, "--position", "3"},
             2);
  ExpectSame(kMerchant1, {"state", "--store", "s1", "--as-of", "2024-10-10"},
             0);
}

// diff by two business times (as known at a position or a time) and by two
// positions at one business time, through the server as embedded.
TEST_F(ServerTermsTest, DiffPrintsWhatEmbeddedModePrints) {
  const std::string now = absl::FormatTime(
      absl::RFC3339_sec, absl::Now() + absl::Seconds(1), absl::UTCTimeZone());
  const std::vector<std::vector<std::string>> same = {
      {"diff", "--store", "s1", "--from", "2024-10-01", "--to", "2024-11-01"},
      {"diff", "--store", "w1", "--from", "2024-10-01", "--to", "2024-12-01",
       "--position", "20"},
      {"diff", "--store", "s1", "--from", "2024-10-01", "--to", "2024-11-01",
       "--known-at", now},
      {"diff", "--store", "s1", "--at", "2024-12-01", "--from-position", "3",
       "--to-position", "12"},
      // Before its first position the store did not exist yet.
      {"diff", "--store", "w1", "--at", "2024-12-01", "--from-position", "1",
       "--to-position", "30"},
  };
  for (const auto& args : same) ExpectSame(kInvestigator, args, 0);
  CliRun by_position =
      Remote(kInvestigator, {"diff", "--store", "s1", "--at", "2024-12-01",
                             "--from-position", "3", "--to-position", "12"});
  EXPECT_THAT(by_position.out, HasSubstr(R"("fromPosition":"3")"));
  EXPECT_THAT(by_position.out, HasSubstr(R"("change":"ADDED")"));
  // Bad flags, a store nobody has, a store not known at that time.
  ExpectSame(kInvestigator,
             {"diff", "--store", "s1", "--at", "2024-12-01", "--from-position",
              "5", "--to-position", "4"},
             2);
  ExpectSame(kInvestigator, {"diff", "--store", "s1", "--from", "2024-10-01"},
             2);
  ExpectSame(kInvestigator,
             {"diff", "--store", "nobody", "--from", "2024-10-01", "--to",
              "2024-11-01"},
             1);
  ExpectSame(kInvestigator,
             {"diff", "--store", "s1", "--from", "2024-10-01", "--to",
              "2024-11-01", "--known-at", "2020-01-01"},
             1);
  // A merchant diffs its own stores only.
  CliRun other = Remote(kMerchant2, {"diff", "--store", "s1", "--from",
                                     "2024-10-01", "--to", "2024-11-01"});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_THAT(other.err, HasSubstr("PERMISSION_DENIED"));

  // GetDiff itself: w1 before it existed (position 1) and at the head.
  grpc::ClientContext context;
  Authorize(&context, kMerchant1);
  v1::GetDiffRequest request;
  request.set_store_id("w1");
  request.mutable_from()->set_position(1);
  v1::StoreDiff diff;
  ASSERT_TRUE(stub_->GetDiff(&context, request, &diff).ok());
  EXPECT_FALSE(diff.store_existed_before());
  EXPECT_EQ(diff.status_after(), v1::OPEN);
  EXPECT_EQ(diff.from_position(), 1u);
  EXPECT_EQ(diff.to_position(), 0u);  // the head
  EXPECT_FALSE(diff.has_from());      // no business-time bound
  grpc::ClientContext unknown_context;
  Authorize(&unknown_context, kAuditor);
  request.set_store_id("nobody");
  EXPECT_EQ(stub_->GetDiff(&unknown_context, request, &diff).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTermsTest, HistoryFindsTheStoreAndShowsTheSyncInBoth) {
  const std::vector<std::vector<std::string>> same = {
      {"history", "--order", "o1"},
      {"history", "--withdrawal", "wd1"},
      {"history", "--product", "p1"},
      {"history", "--product", "p3"},
      {"history", "--product", "p1", "--limit", "3"},
      {"history", "--store", "s1"},
      {"history", "--store", "w1"},
      {"history", "--store", "s1", "--type", "ProductsSynced"},
      {"history", "--order", "o9", "--include-rejections"},
  };
  for (const auto& args : same) ExpectSame(kInvestigator, args, 0);
  // Under the wrong store, or an id nobody has, or nothing to find.
  ExpectSame(kInvestigator, {"history", "--store", "w1", "--order", "o1"}, 1);
  ExpectSame(kInvestigator, {"history", "--store", "w1", "--withdrawal", "wd1"},
             1);
  ExpectSame(kInvestigator, {"history", "--store", "w1", "--product", "p3"}, 1);
  ExpectSame(kInvestigator, {"history", "--order", "no-such-order"}, 1);
  ExpectSame(kInvestigator, {"history", "--limit", "2"}, 2);
  // A filter that selects nothing says so, remote as embedded.
  ExpectSame(kInvestigator, {"history", "--store", "s2", "--type", "OrderPaid"},
             0);

  // The legacy store's history holds both syncs, the one that copied
  // nothing included (R9: the sync belongs to both histories).
  CliRun legacy = Remote(
      kMerchant1, {"history", "--store", "s1", "--type", "ProductsSynced"});
  ASSERT_EQ(legacy.exit_code, 0) << legacy.err;
  ASSERT_EQ(legacy.lines().size(), 2u) << legacy.out;
  EXPECT_THAT(legacy.lines()[0], HasSubstr(R"("copiedProductIds":["p1"])"));
  EXPECT_THAT(legacy.lines()[1], HasSubstr(R"("copiedProductIds":[])"));
  EXPECT_THAT(legacy.lines()[1], HasSubstr("p3"));
}

TEST_F(ServerTermsTest, ReadStreamOfALegacyStoreHoldsItsTargetsSyncs) {
  grpc::ClientContext context;
  Authorize(&context, kMerchant1);
  v1::ReadStreamRequest request;
  request.set_store_id("s1");
  std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
      stub_->ReadStream(&context, request);
  v1::Envelope envelope;
  std::vector<uint64_t> positions;
  int syncs = 0;
  while (reader->Read(&envelope)) {
    positions.push_back(envelope.position());
    if (envelope.payload().has_products_synced()) {
      ++syncs;
      EXPECT_EQ(envelope.stream_id(), "store-w1");
    }
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(syncs, 2);
  EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
}

TEST_F(ServerTermsTest, StatementsPrintWhatEmbeddedModePrints) {
  const std::vector<std::vector<std::string>> same = {
      {"statement", "--store", "s1", "--from", "2024-10-01", "--to",
       "2024-12-01"},
      {"statement", "--store", "s1", "--from", "2024-10-01", "--to",
       "2024-12-01", "--yuan"},
      {"statement", "--store", "s1", "--pair", "--from", "2024-10-01", "--to",
       "2024-12-01", "--yuan"},
      {"statement", "--store", "w1", "--pair", "--from", "2024-10-01", "--to",
       "2024-12-01", "--tz", "UTC"},
      {"statement", "--store", "w1", "--pair", "--from", "2024-10-01", "--to",
       "2024-12-01", "--format", "json"},
      {"statement", "--store", "s1", "--from", "2024-10-10", "--to",
       "2024-10-11", "--tz", "Asia/Shanghai"},
  };
  for (const auto& args : same) ExpectSame(kMerchant1, args, 0);
  ExpectSame(kMerchant1, {"statement", "--store", "s1", "--from", "2024-10-01"},
             2);
  ExpectSame(kMerchant1,
             {"statement", "--store", "s1", "--from", "2024-10-01", "--to",
              "2024-12-01", "--format", "json", "--yuan"},
             2);
  ExpectSame(kAuditor,
             {"statement", "--store", "s2", "--pair", "--from", "2024-10-01",
              "--to", "2024-12-01"},
             1);
  // s2 never had money: an empty statement, said so on stderr.
  ExpectSame(kAuditor,
             {"statement", "--store", "s2", "--from", "2024-10-01", "--to",
              "2024-12-01"},
             0);
  EXPECT_THAT(Remote(kAuditor, {"statement", "--store", "s2", "--from",
                                "2024-10-01", "--to", "2024-12-01"})
                  .err,
              HasSubstr("nothing matched: store s2 has no postings"));
  // A merchant reads its own stores' statements only.
  CliRun denied = Remote(kMerchant2, {"statement", "--store", "s1", "--from",
                                      "2024-10-01", "--to", "2024-12-01"});
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
}

TEST_F(ServerTermsTest, PostingsBalancesAndTailPrintWhatEmbeddedModePrints) {
  const std::string now = absl::FormatTime(
      absl::RFC3339_sec, absl::Now() + absl::Seconds(1), absl::UTCTimeZone());
  const std::vector<std::vector<std::string>> by_auditor = {
      {"postings"},
      {"postings", "--yuan", "--tz", "UTC"},
      {"postings", "--format", "jsonl", "--position", "8"},
      {"postings", "--from", "2024-10-10", "--to", "2024-10-11", "--known-at",
       now},
      {"balances"},
      {"balances", "--format", "csv", "--yuan"},
      {"balances", "--format", "csv", "--as-of", "2024-10-10", "--position",
       "9", "--tz", "Asia/Shanghai"},
      {"tail", "--from-position", "17"},
  };
  for (const auto& args : by_auditor) ExpectSame(kAuditor, args, 0);
  ExpectSame(kMerchant1, {"postings", "--store", "s1", "--yuan"}, 0);
  // Nothing matched, bad flags, and a consumer ahead of the log.
  ExpectSame(kAuditor, {"postings", "--store", "s2"}, 0);
  ExpectSame(kAuditor, {"postings", "--format", "jsonl", "--yuan"}, 2);
  ExpectSame(kAuditor, {"balances", "--yuan"}, 2);
  ExpectSame(kAuditor, {"tail", "--from-position", "1000"}, 1);
  // A merchant lists its own store's postings only, and no ledger totals.
  CliRun all = Remote(kMerchant1, {"postings"});
  EXPECT_EQ(all.exit_code, 1);
  EXPECT_THAT(all.err, HasSubstr("PERMISSION_DENIED"));
  CliRun other = Remote(kMerchant2, {"postings", "--store", "s1"});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_THAT(other.err, HasSubstr("PERMISSION_DENIED"));
}

// A stream buffer one thread writes and another waits on: the stderr of a
// `tail --follow` running in a thread.
class WatchedBuffer : public std::stringbuf {
 public:
  // Whether `text` was written within `timeout`.
  bool WaitFor(const std::string& text, absl::Duration timeout) {
    std::unique_lock<std::recursive_mutex> lock(mu_);
    return written_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                             [&] { return absl::StrContains(str(), text); });
  }
  std::string Text() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return str();
  }

 protected:
  int_type overflow(int_type c) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    const int_type r = std::stringbuf::overflow(c);
    written_.notify_all();
    return r;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    const std::streamsize r = std::stringbuf::xsputn(s, n);
    written_.notify_all();
    return r;
  }

 private:
  // Recursive: stringbuf's xsputn calls overflow when its buffer is full.
  std::recursive_mutex mu_;
  std::condition_variable_any written_;
};

// `tail --follow` from past the head through the server warns on stderr
// that the consumer is ahead, then waits and delivers what reaches it.
TEST_F(ServerTermsTest, TailFollowPastTheHeadWarnsThenWaits) {
  const uint64_t head = server_->ledger().log().head().position;
  WatchedBuffer err_buffer;
  std::ostream err(&err_buffer);
  std::ostringstream out;
  int exit_code = -1;
  std::thread tail([&] {
    std::istringstream in;
    exit_code = RunCli({"--server", server_->address(), "--token", kAuditor,
                        "tail", "--from-position", absl::StrCat(head + 1),
                        "--follow", "--max-events", "1"},
                       in, out, err);
  });
  const bool warned =
      err_buffer.WaitFor("ahead of this ledger", absl::Seconds(30));
  // Two events: position head + 2 reaches the consumer's position.
  CliRun applied = Remote(
      kWriter, {"apply"},
      Cmd("c19", "2024-11-08T09:00:00+08:00",
          R"("openStore":{"storeId":"s3","merchantId":"m3","kind":"MINI_STORE","subject":"ENTERPRISE"})") +
          "\n");
  tail.join();
  ASSERT_TRUE(warned) << err_buffer.Text();
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_EQ(exit_code, 0) << err_buffer.Text();
  EXPECT_THAT(err_buffer.Text(), HasSubstr("storeledger tail: warning: "));
  EXPECT_THAT(out.str(),
              HasSubstr(absl::StrCat(R"({"position":")", head + 2, "\"")));
}

TEST_F(ServerTermsTest, TheNewCallsAnswerWithTheLedgersMessages) {
  {
    grpc::ClientContext context;
    Authorize(&context, kAuditor);
    v1::FindRequest request;
    request.set_id("o1");
    v1::FindResult found;
    ASSERT_TRUE(stub_->Find(&context, request, &found).ok());
    ASSERT_EQ(found.matches_size(), 1);
    EXPECT_EQ(found.matches(0).kind(), "order");
    EXPECT_EQ(found.matches(0).store_id(), "s1");
    EXPECT_EQ(found.matches(0).status(), "SETTLED");
  }
  {
    // A merchant may not search the whole ledger.
    grpc::ClientContext context;
    Authorize(&context, kMerchant1);
    v1::FindRequest request;
    request.set_id("o1");
    v1::FindResult found;
    EXPECT_EQ(stub_->Find(&context, request, &found).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    Authorize(&context, kInvestigator);
    v1::PositionAtRequest request;
    *request.mutable_at() = ToProto(before_);
    v1::PositionAt answer;
    ASSERT_TRUE(stub_->PositionAt(&context, request, &answer).ok());
    EXPECT_EQ(answer.position(), 0u);  // nothing was recorded before
  }
  {
    grpc::ClientContext context;
    Authorize(&context, kInvestigator);
    v1::PositionAtRequest request;  // neither: the head
    v1::PositionAt answer;
    ASSERT_TRUE(stub_->PositionAt(&context, request, &answer).ok());
    EXPECT_EQ(answer.position(), server_->ledger().log().head().position);
    EXPECT_GE(ToTime(answer.recorded_at()), before_);
  }
  {
    grpc::ClientContext context;
    Authorize(&context, kMerchant1);
    v1::GetStatementRequest request;
    request.set_store_id("w1");
    request.set_pair(true);
    *request.mutable_from() = ToProto(absl::FromUnixSeconds(1'700'000'000));
    *request.mutable_to() = ToProto(absl::FromUnixSeconds(1'800'000'000));
    v1::Statements answer;
    ASSERT_TRUE(stub_->GetStatement(&context, request, &answer).ok());
    ASSERT_EQ(answer.statements_size(), 2);
    EXPECT_EQ(answer.statements(0).store_id(), "s1");  // legacy first
    EXPECT_EQ(answer.statements(1).store_id(), "w1");
  }
}

// This ledger is not partitioned: partition 0 is its one log, and any other
// partition a request names is refused, not ignored.
// Every read that names a partition: 0 is an unpartitioned ledger's one
// log, any other is INVALID_ARGUMENT (the reads' shared check, and
// Subscribe's own).
TEST_F(ServerTermsTest, APartitionOtherThanZeroIsRefusedUnpartitioned) {
  v1::ExplainRequest explain;
  explain.set_command_id("c1");
  v1::SubscribeRequest subscribe;
  subscribe.set_catch_up_only(true);
  for (const uint32_t partition : {0u, 1u}) {
    // A unary call's status, or a server stream's once read to its end.
    auto unary = [&](auto call, auto request, auto response) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      request.set_partition(partition);
      return ((*stub_).*call)(&context, request, &response);
    };
    auto streamed = [&](auto open, auto request, auto message) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      request.set_partition(partition);
      auto reader = ((*stub_).*open)(&context, request);
      while (reader->Read(&message)) {
      }
      return reader->Finish();
    };
    const std::vector<std::pair<const char*, grpc::Status>> answers = {
        {"GetBalances", unary(&v1::Ledger::Stub::GetBalances,
                              v1::GetBalancesRequest(), v1::BalancesReport())},
        {"PositionAt", unary(&v1::Ledger::Stub::PositionAt,
                             v1::PositionAtRequest(), v1::PositionAt())},
        {"Digest",
         unary(&v1::Ledger::Stub::Digest, v1::DigestRequest(), v1::Digest())},
        {"Explain",
         unary(&v1::Ledger::Stub::Explain, explain, v1::Explanation())},
        {"ListPostings",
         streamed(&v1::Ledger::Stub::ListPostings, v1::ListPostingsRequest(),
                  v1::PostingLine())},
        {"Subscribe",
         streamed(&v1::Ledger::Stub::Subscribe, subscribe, v1::Envelope())},
    };
    for (const auto& [call, s] : answers) {
      if (partition == 0) {
        EXPECT_TRUE(s.ok()) << call << ": " << s.error_message();
        continue;
      }
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << call;
      EXPECT_THAT(s.error_message(), HasSubstr("not partitioned")) << call;
    }
  }
}

// explain (and audit, digest) through the server prints what it prints
// embedded; a merchant
// explains only a command whose stores are all its own, and an unknown
// command gets it the same answer as another merchant's.
TEST_F(ServerTermsTest, ExplainPrintsWhatEmbeddedModePrints) {
  for (const char* id : {"c1", "c5", "c9", "c10", "c18"}) {
    ExpectSame(kInvestigator, {"explain", "--command-id", id}, 0);
  }
  ExpectSame(kAuditor, {"explain", "--command-id", "no-such-command"}, 1);
  ExpectSame(kAuditor, {"explain"}, 2);
  ExpectSame(kMerchant1, {"explain", "--command-id", "c9"}, 0);
  for (const char* id : {"c18", "no-such-command"}) {
    CliRun other = Remote(kMerchant1, {"explain", "--command-id", id});
    EXPECT_EQ(other.exit_code, 1) << id;
    EXPECT_THAT(other.err,
                HasSubstr(absl::StrCat("PERMISSION_DENIED: role merchant:m1 "
                                       "may not read command ",
                                       id)))
        << id;
  }
  // audit and digest of an unpartitioned ledger: its one report, as
  // embedded (the partitioned cluster's lines: partition_test).
  ExpectSame(kAuditor, {"audit", "--no-progress"}, 0);
  ExpectSame(kAuditor, {"digest"}, 0);
  CliRun writer = Remote(kWriter, {"explain", "--command-id", "c1"});
  EXPECT_EQ(writer.exit_code, 1);
  EXPECT_THAT(writer.err, HasSubstr("PERMISSION_DENIED"));
}

}  // namespace
}  // namespace storeledger
