// End to end through the CLI's JSON: the article's timeline for one merchant,
// malformed input, and what `state`, `history`, `digest` and `verify` say.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "tests/support/cli_json.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::CliRun;
using ::storeledger::testing::Cmd;
using ::storeledger::testing::FromJson;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

class LedgerCliTest : public ::testing::Test {
 protected:
  CliRun Apply(const std::vector<std::string>& lines) {
    return RunStoreledger({"--db", db_, "apply", "-"},
                          absl::StrJoin(lines, "\n") + "\n");
  }
  std::vector<v1::CommandResult> Results(const CliRun& run) {
    std::vector<v1::CommandResult> out;
    for (const std::string& line : run.lines()) {
      out.push_back(FromJson<v1::CommandResult>(line));
    }
    return out;
  }
  v1::StoreState State(const std::string& store,
                       std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--db", db_, "state", "--store", store};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = RunStoreledger(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::StoreState>(run.out);
  }
  uint64_t HeadPosition() {
    CliRun run = RunStoreledger({"--db", db_, "digest"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::Digest>(run.out).position();
  }

  TempDir dir_;
  std::string db_ = dir_.Sub("db");
};

TEST_F(LedgerCliTest, ArticleTimelineKeepsLegacyAndNewMoneyApart) {
  const std::vector<std::string> lines = {
      Cmd("c1", "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      Cmd("c2", "2024-06-01T10:00:00+08:00",
          R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":1000})"),
      Cmd("c3", "2024-06-01T10:01:00+08:00",
          R"("addProduct":{"storeId":"s1","productId":"p2","kind":"E_VOUCHER","origin":"OWN","categoryId":"cat-2","priceFen":500})"),
      Cmd("c4", "2024-06-01T10:02:00+08:00",
          R"("addProduct":{"storeId":"s1","productId":"p3","kind":"PHYSICAL","origin":"THIRD_PARTY","categoryId":"cat-1","priceFen":800})"),
      Cmd("c5", "2024-06-01T11:00:00+08:00",
          R"("listProduct":{"storeId":"s1","productId":"p1"})"),
      Cmd("c6", "2024-06-01T11:00:00+08:00",
          R"("listProduct":{"storeId":"s1","productId":"p2"})"),
      Cmd("c7", "2024-06-01T11:00:00+08:00",
          R"("listProduct":{"storeId":"s1","productId":"p3"})"),
      Cmd("c8", "2024-10-01T12:00:00+08:00",
          R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":2,"unitPriceFen":1000}]})"),
      Cmd("c9", "2024-10-01T12:05:00+08:00",
          R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":2000})"),
      Cmd("c10", "2024-10-02T12:00:00+08:00",
          R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
      Cmd("c11", "2024-10-09T12:00:00+08:00",
          R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":100})"),
      // A minute before mini stores may upgrade (R8), then at the open.
      Cmd("c12", "2024-10-20T23:59:00+08:00",
          R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      Cmd("c13", "2024-10-22T10:00:00+08:00",
          R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      Cmd("c14", "2024-10-22T11:00:00+08:00",
          R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
      // The legacy store still sells what is still listed there.
      Cmd("c15", "2024-10-23T12:00:00+08:00",
          R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p1","quantity":1,"unitPriceFen":1000}]})"),
      Cmd("c16", "2024-10-23T12:05:00+08:00",
          R"("payOrder":{"storeId":"s1","orderId":"o2","amountFen":1000})"),
      Cmd("c17", "2024-11-04T00:00:00+08:00", R"("applyPolicy":{})"),
      Cmd("c18", "2024-11-05T12:00:00+08:00",
          R"("placeOrder":{"storeId":"s1","orderId":"o3","lines":[{"productId":"p2","quantity":1,"unitPriceFen":500}]})"),
      Cmd("c19", "2024-11-05T13:00:00+08:00",
          R"("grantCategoryQualification":{"storeId":"w1","categoryId":"cat-1"})"),
      Cmd("c20", "2024-11-05T13:10:00+08:00",
          R"("listProduct":{"storeId":"w1","productId":"p1"})"),
      Cmd("c21", "2024-11-05T13:20:00+08:00",
          R"("payDeposit":{"storeId":"w1","categoryId":"cat-1","amountFen":50000})"),
      Cmd("c22", "2024-11-05T13:30:00+08:00",
          R"("listProduct":{"storeId":"w1","productId":"p1"})"),
      Cmd("c23", "2024-11-06T12:00:00+08:00",
          R"("placeOrder":{"storeId":"w1","orderId":"o4","channel":"OFFICIAL_ACCOUNT","lines":[{"productId":"p1","quantity":3,"unitPriceFen":1000}]})"),
      Cmd("c24", "2024-11-06T12:05:00+08:00",
          R"("payOrder":{"storeId":"w1","orderId":"o4","amountFen":3000})"),
      // Legacy money is withdrawn from the legacy store, after the upgrade.
      Cmd("c25", "2024-11-20T10:00:00+08:00",
          R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"wd1","amountFen":1901})"),
      Cmd("c26", "2024-11-20T10:01:00+08:00",
          R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"wd1","amountFen":1900})"),
      Cmd("c27", "2024-11-21T10:00:00+08:00",
          R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"wd1"})"),
      // An order of the legacy store named under the new one (R13).
      Cmd("c28", "2024-11-22T10:00:00+08:00",
          R"("shipOrder":{"storeId":"w1","orderId":"o2"})"),
  };
  CliRun run = Apply(lines);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<v1::CommandResult> results = Results(run);
  ASSERT_EQ(results.size(), lines.size());
  auto expect_rejected = [&](int line, const std::string& rule,
                             v1::RejectionCode code) {
    const v1::CommandResult& r = results[line - 1];
    EXPECT_EQ(r.line(), line);
    EXPECT_EQ(r.status(), v1::REJECTED)
        << "line " << line << ": " << r.message();
    EXPECT_EQ(r.rule(), rule) << "line " << line << ": " << r.message();
    EXPECT_EQ(r.code(), code) << "line " << line << ": " << r.message();
  };
  for (int line : {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13,
                   14, 15, 16, 17, 19, 21, 22, 23, 24, 26, 27}) {
    EXPECT_EQ(results[line - 1].status(), v1::ACCEPTED)
        << "line " << line << ": " << results[line - 1].rule() << " "
        << results[line - 1].message();
  }
  expect_rejected(12, "R8", v1::FAILED_PRECONDITION);
  expect_rejected(18, "R10", v1::FAILED_PRECONDITION);
  expect_rejected(20, "R3", v1::FAILED_PRECONDITION);
  expect_rejected(25, "R14", v1::INSUFFICIENT_FUNDS);
  expect_rejected(28, "R13", v1::FAILED_PRECONDITION);

  // The upgrade is one append over two streams: two contiguous positions.
  EXPECT_EQ(results[12].last_position(), results[12].first_position() + 1);
  // R9: own products copied, the third-party one skipped with its reason.
  EXPECT_THAT(results[13].synced_product_ids(),
              ::testing::ElementsAre("p1", "p2"));
  ASSERT_EQ(results[13].skipped_size(), 1);
  EXPECT_EQ(results[13].skipped(0).product_id(), "p3");

  v1::StoreState legacy = State("s1");
  EXPECT_EQ(legacy.kind(), v1::MINI_STORE);
  EXPECT_EQ(legacy.status(), v1::UPGRADED);
  EXPECT_EQ(legacy.upgraded_to(), "w1");
  EXPECT_EQ(legacy.balances().pending_fen(), 1000);  // o2, paid after upgrade
  EXPECT_EQ(legacy.balances().available_fen(), 0);   // 2000 - 100 - 1900
  EXPECT_EQ(legacy.balances().paid_out_fen(), 1900);
  EXPECT_EQ(legacy.balances().deposit_fen(), 0);
  ASSERT_EQ(legacy.orders_size(), 2);

  v1::StoreState wechat = State("w1");
  EXPECT_EQ(wechat.kind(), v1::WECHAT_STORE);
  EXPECT_EQ(wechat.upgraded_from(), "s1");
  EXPECT_EQ(wechat.subject(), v1::ENTERPRISE);
  EXPECT_EQ(wechat.balances().pending_fen(), 3000);
  EXPECT_EQ(wechat.balances().available_fen(), 0);
  EXPECT_EQ(wechat.balances().deposit_fen(), 50000);
  ASSERT_EQ(wechat.orders_size(), 1);
  EXPECT_EQ(wechat.orders(0).order_id(), "o4");
  ASSERT_EQ(wechat.products_size(), 2);
  EXPECT_EQ(wechat.products(0).synced_from(), "s1");

  // Bitemporal: before the upgrade the legacy store was open, unupgraded.
  v1::StoreState before = State("s1", {"--as-of", "2024-10-22T09:59:59+08:00"});
  EXPECT_EQ(before.status(), v1::OPEN);
  EXPECT_EQ(before.balances().available_fen(), 1900);
  // What the ledger knew at the upgrade's position about now.
  v1::StoreState known =
      State("s1", {"--position", absl::StrCat(results[12].last_position())});
  EXPECT_EQ(known.status(), v1::UPGRADED);
  EXPECT_EQ(known.orders_size(), 1);

  // History of the legacy store, with the refused attempts naming it.
  CliRun history = RunStoreledger(
      {"--db", db_, "history", "--store", "s1", "--include-rejections"});
  ASSERT_EQ(history.exit_code, 0) << history.err;
  EXPECT_THAT(history.out, HasSubstr("CommandRejected"));
  EXPECT_THAT(history.out, HasSubstr("StoreUpgraded"));
  CliRun o2 = RunStoreledger(
      {"--db", db_, "history", "--store", "s1", "--order", "o2"});
  EXPECT_EQ(o2.lines().size(), 2u) << o2.out;  // placed, paid

  // Applying the same file again replays every outcome and writes nothing.
  const uint64_t head = HeadPosition();
  std::vector<v1::CommandResult> again = Results(Apply(lines));
  ASSERT_EQ(again.size(), results.size());
  for (size_t i = 0; i < again.size(); ++i) {
    EXPECT_TRUE(again[i].replayed());
    EXPECT_EQ(again[i].status(), results[i].status());
    EXPECT_EQ(again[i].first_position(), results[i].first_position());
  }
  EXPECT_EQ(HeadPosition(), head);
}

TEST_F(LedgerCliTest, MalformedLinesAreInvalidAndWriteNothing) {
  const std::string long_id(65, 'x');
  const std::vector<std::string> lines = {
      "this is not json",
      R"({"commandId":"c1","occurredAt":"2024-06-01T09:00:00+08:00"})",
      Cmd("c2", "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"BAZAAR","subject":"ENTERPRISE"})"),
      Cmd("c3", "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE","colour":"red"})"),
      R"({"occurredAt":"2024-06-01T09:00:00+08:00","openStore":{"storeId":"s1"}})",
      R"({"commandId":"c4","openStore":{"storeId":"s1"}})",
      Cmd(long_id, "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      "",
  };
  CliRun run = Apply(lines);
  EXPECT_EQ(run.exit_code, 2);
  std::vector<v1::CommandResult> results = Results(run);
  ASSERT_EQ(results.size(), 7u);  // the blank line is skipped, not reported
  for (const v1::CommandResult& r : results) {
    EXPECT_EQ(r.status(), v1::INVALID) << r.line();
    EXPECT_FALSE(r.message().empty());
  }
  EXPECT_THAT(results[0].message(), HasSubstr("not a JSON"));
  EXPECT_THAT(results[1].message(), HasSubstr("body is missing"));
  EXPECT_THAT(results[2].message(), HasSubstr("kind"));
  EXPECT_THAT(results[3].message(), HasSubstr("colour"));
  EXPECT_THAT(results[4].message(), HasSubstr("commandId"));
  EXPECT_THAT(results[5].message(), HasSubstr("occurredAt"));
  EXPECT_THAT(results[6].message(), HasSubstr("64"));
  EXPECT_EQ(HeadPosition(), 0u);
}

// Every verb that opens the database refuses one that is not a ledger, in
// one line, and leaves it as it was (`apply` used to answer ACCEPTED and
// add its column families to someone else's database).
TEST_F(LedgerCliTest, EveryVerbRefusesADatabaseThatIsNotALedger) {
  const std::string foreign = dir_.Sub("foreign");
  ASSERT_NO_FATAL_FAILURE(testing::MakeForeignRocksDb(foreign));
  const std::string open = Cmd(
      "c1", "2024-06-01T09:00:00+08:00",
      R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})");
  const std::vector<std::vector<std::string>> verbs = {
      {"apply", "-"},
      {"simulate", "--stores", "1"},
      {"state", "--store", "s1"},
      {"history", "--store", "s1"},
      {"explain", "--command-id", "c1"},
      {"diff", "--store", "s1", "--from", "2024-06-01T00:00:00Z", "--to",
       "2024-06-02T00:00:00Z"},
      {"postings"},
      {"balances"},
      {"statement", "--store", "s1", "--from", "2024-06-01T00:00:00Z", "--to",
       "2024-06-02T00:00:00Z"},
      {"audit", "--no-progress"},
      {"digest"},
      {"verify", "--digest", absl::StrCat("1:", std::string(64, '0'))},
      {"export"},
      {"tail", "--from-position", "0"},
      {"rebuild", "--no-progress"},
      {"rebuild", "--shadow", "--no-progress"},
  };
  for (const std::vector<std::string>& verb : verbs) {
    std::vector<std::string> args = {"--db", foreign};
    args.insert(args.end(), verb.begin(), verb.end());
    CliRun run = RunStoreledger(args, open + "\n");
    SCOPED_TRACE(absl::StrJoin(args, " "));
    EXPECT_NE(run.exit_code, 0);
    EXPECT_EQ(run.out, "");
    EXPECT_THAT(run.err,
                HasSubstr(absl::StrCat("database ", foreign,
                                       " is not a storeledger ledger")));
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
  }
  std::vector<std::string> families;
  ASSERT_TRUE(
      rocksdb::DB::ListColumnFamilies(rocksdb::Options(), foreign, &families)
          .ok());
  EXPECT_EQ(families, std::vector<std::string>{"default"});
}

// Every verb's time flag (and position-at's time) refuses a time the ledger
// cannot hold (years 0000 and 99999 parse as RFC 3339 to absl) and names the
// accepted range; the range's own ends are accepted.
TEST_F(LedgerCliTest, TimeFlagsOutsideTheLedgersRangeAreRefused) {
  ASSERT_EQ(
      Apply(
          {Cmd(
              "c1", "2024-06-01T09:00:00+08:00",
              R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})")})
          .exit_code,
      0);
  const std::string ok_from = "0001-01-01T00:00:00Z";
  const std::string ok_to = "9999-12-31T23:59:59.999999999Z";
  struct Use {
    std::vector<std::string> args;  // the verb and its flags; TIME goes last
    std::string flag;               // the flag, or the name of the argument
    bool positional = false;        // TIME is an argument, not a flag's
  };
  const std::vector<Use> uses = {
      {{"position-at"}, "T", true},
      {{"state", "--store", "s1"}, "--as-of"},
      {{"state", "--store", "s1"}, "--known-at"},
      {{"diff", "--store", "s1", "--from-position", "1", "--to-position", "1"},
       "--at"},
      {{"balances"}, "--as-of"},
      {{"postings", "--to", ok_to}, "--from"},
      {{"postings", "--from", ok_from}, "--to"},
      {{"statement", "--store", "s1", "--to", ok_to}, "--from"},
      {{"statement", "--store", "s1", "--from", ok_from}, "--to"},
      {{"history", "--store", "s1"}, "--from"},
      {{"history", "--store", "s1"}, "--to"},
      {{"diff", "--store", "s1", "--to", ok_to}, "--from"},
      {{"diff", "--store", "s1", "--from", ok_from}, "--to"},
  };
  for (const Use& use : uses) {
    for (const std::string time :
         {"0000-06-01T00:00:00Z", "99999-01-01T00:00:00Z",
          "0001-01-01T00:00:00+00:01"}) {
      std::vector<std::string> args = {"--db", db_};
      args.insert(args.end(), use.args.begin(), use.args.end());
      if (!use.positional) args.push_back(use.flag);
      args.push_back(time);
      CliRun run = RunStoreledger(args);
      SCOPED_TRACE(absl::StrJoin(args, " "));
      EXPECT_EQ(run.exit_code, 2) << run.out << run.err;
      EXPECT_THAT(run.err, HasSubstr(absl::StrCat(use.flag, " ", time)));
      EXPECT_THAT(run.err, HasSubstr("0001-01-01T00:00:00Z to "
                                     "9999-12-31T23:59:59.999999999Z"));
    }
    for (const std::string& time : {ok_from, ok_to}) {
      std::vector<std::string> args = {"--db", db_};
      args.insert(args.end(), use.args.begin(), use.args.end());
      if (!use.positional) args.push_back(use.flag);
      args.push_back(time);
      CliRun run = RunStoreledger(args);
      EXPECT_THAT(run.err, ::testing::Not(HasSubstr("outside")))
          << absl::StrJoin(args, " ");
    }
  }
}

TEST_F(LedgerCliTest, ShapeViolationsAreRejectedByR0AndRecorded) {
  const std::string long_id(65, 's');
  CliRun run = Apply({
      Cmd("c1", "2024-06-01T09:00:00+08:00",
          absl::StrCat(
              R"("openStore":{"storeId":")", long_id,
              R"(","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})")),
      Cmd("c2", "2024-06-01T09:00:00+08:00",
          R"("openStore":{"storeId":"","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      Cmd("c3", "2024-06-01T09:00:00+08:00",
          R"("payDeposit":{"storeId":"w1","categoryId":"c","amountFen":0})"),
  });
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<v1::CommandResult> results = Results(run);
  ASSERT_EQ(results.size(), 3u);
  for (const v1::CommandResult& r : results) {
    EXPECT_EQ(r.status(), v1::REJECTED);
    EXPECT_EQ(r.rule(), "R0") << r.message();
    EXPECT_EQ(r.code(), v1::INVALID_ARGUMENT);
  }
  EXPECT_THAT(results[0].message(), HasSubstr("storeId"));
  // Recorded in the rejections stream: one position each.
  EXPECT_EQ(HeadPosition(), 3u);
}

TEST_F(LedgerCliTest, DigestVerifiesAfterLaterAppends) {
  ASSERT_EQ(
      Apply(
          {Cmd(
              "c1", "2024-06-01T09:00:00+08:00",
              R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})")})
          .exit_code,
      0);
  CliRun digest = RunStoreledger({"--db", db_, "digest"});
  v1::Digest d = FromJson<v1::Digest>(digest.out);
  ASSERT_EQ(d.position(), 2u);  // StoreOpened + MerchantOnboarded
  ASSERT_EQ(
      Apply(
          {Cmd(
              "c2", "2024-06-01T10:00:00+08:00",
              R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})")})
          .exit_code,
      0);
  const std::string arg = absl::StrCat(d.position(), ":", d.hash());
  EXPECT_EQ(RunStoreledger({"--db", db_, "verify", "--digest", arg}).exit_code,
            0);
  std::string wrong = d.hash();
  wrong[0] = wrong[0] == '0' ? '1' : '0';
  CliRun bad = RunStoreledger({"--db", db_, "verify", "--digest",
                               absl::StrCat(d.position(), ":", wrong)});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("FAILED"));
}

TEST_F(LedgerCliTest, ExportDelimitedIsLengthPrefixedEnvelopes) {
  ASSERT_EQ(
      Apply(
          {Cmd(
              "c1", "2024-06-01T09:00:00+08:00",
              R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"CHANNELS_STORE","subject":"ENTERPRISE"})")})
          .exit_code,
      0);
  CliRun run = RunStoreledger({"--db", db_, "export", "--format", "delimited"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  google::protobuf::io::ArrayInputStream raw(run.out.data(),
                                             static_cast<int>(run.out.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  uint64_t expected_position = 1;
  uint32_t size;
  while (in.ReadVarint32(&size)) {
    std::string bytes;
    ASSERT_TRUE(in.ReadString(&bytes, static_cast<int>(size)));
    v1::Envelope envelope;
    ASSERT_TRUE(envelope.ParseFromString(bytes));
    EXPECT_EQ(envelope.position(), expected_position++);
  }
  EXPECT_EQ(expected_position, 3u);
}

TEST_F(LedgerCliTest, SimulateIsDeterministicAndRejectsByRule) {
  CliRun first = RunStoreledger({"--db", db_, "simulate", "--stores", "40",
                                 "--seed", "7", "--no-progress"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("rejected by rule:"));
  EXPECT_THAT(first.out, HasSubstr("R10="));
  EXPECT_THAT(first.out, HasSubstr("MINI_STORE"));
  const std::string digest_a = RunStoreledger({"--db", db_, "digest"}).out;

  TempDir other;
  CliRun second =
      RunStoreledger({"--db", other.Sub("db"), "simulate", "--stores", "40",
                      "--seed", "7", "--no-progress"});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  // recorded_at differs between runs, so compare what does not depend on it.
  EXPECT_EQ(FromJson<v1::Digest>(digest_a).position(),
            FromJson<v1::Digest>(
                RunStoreledger({"--db", other.Sub("db"), "digest"}).out)
                .position());
  auto summary_line = [](const std::string& out) {
    return out.substr(0, out.find("throughput"));
  };
  EXPECT_EQ(summary_line(first.out), summary_line(second.out));
}

}  // namespace
}  // namespace storeledger
