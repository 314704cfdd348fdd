// The user's terms (cli/terms.h) through the CLI's outputs: Beijing time in
// human outputs, bare dates, finding by any id, --known-at / position-at, the
// sync event in both histories, finance-ready columns, --yuan, and no silent
// empty answers.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/cli.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/support/cli_json.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::CliRun;
using ::storeledger::testing::Cmd;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::FromJson;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<std::string> Fields(const std::string& line) {
  return absl::StrSplit(line, ',');
}

// A mini store s1 with one own and one third-party product, two orders paid
// either side of Beijing midnight on 10 Oct (15:59:59Z and 16:00:00Z on
// 9 Oct), upgraded into w1 on 22 Oct and synced (p1 copied, p3 skipped),
// a withdrawal wd1 in s1 and a paid order o9 in w1.
class CliTermsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CliRun run = Run({"apply", "-"}, absl::StrJoin(Timeline(), "\n") + "\n");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    for (const std::string& line : run.lines()) {
      const v1::CommandResult result = FromJson<v1::CommandResult>(line);
      ASSERT_EQ(result.status(), v1::ACCEPTED)
          << result.command_id() << ": " << result.message();
    }
  }

  static std::vector<std::string> Timeline() {
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
        Cmd("c7", "2024-10-09T15:59:59Z",
            R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p1","quantity":3,"unitPriceFen":333}]})"),
        Cmd("c8", "2024-10-09T16:00:00Z",
            R"("payOrder":{"storeId":"s1","orderId":"o2","amountFen":999})"),
        Cmd("c9", "2024-10-10T10:00:00+08:00",
            R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
        Cmd("c10", "2024-10-11T10:00:00+08:00",
            R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":1})"),
        Cmd("c11", "2024-10-22T10:00:00+08:00",
            R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
        Cmd("c12", "2024-10-22T11:00:00+08:00",
            R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})"),
        Cmd("c13", "2024-10-23T10:00:00+08:00",
            R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"wd1","amountFen":1000})"),
        Cmd("c14", "2024-11-05T13:00:00+08:00",
            R"("grantCategoryQualification":{"storeId":"w1","categoryId":"cat-1"})"),
        Cmd("c15", "2024-11-05T13:20:00+08:00",
            R"("payDeposit":{"storeId":"w1","categoryId":"cat-1","amountFen":50000})"),
        Cmd("c16", "2024-11-05T13:30:00+08:00",
            R"("listProduct":{"storeId":"w1","productId":"p1"})"),
        Cmd("c17", "2024-11-06T12:00:00+08:00",
            R"("placeOrder":{"storeId":"w1","orderId":"o9","lines":[{"productId":"p1","quantity":1,"unitPriceFen":1234}]})"),
        Cmd("c18", "2024-11-06T12:05:00+08:00",
            R"("payOrder":{"storeId":"w1","orderId":"o9","amountFen":1234})"),
    };
  }

  // The CLI in-process with this test's clock (recorded_at).
  CliRun Run(std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), {"--db", db_});
    std::istringstream input(in);
    std::ostringstream out, err;
    const int code = RunCli(args, input, out, err, &clock_);
    return CliRun{code, out.str(), err.str()};
  }

  std::vector<v1::Envelope> History(std::vector<std::string> args) {
    args.insert(args.begin(), "history");
    CliRun run = Run(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::vector<v1::Envelope> out;
    for (const std::string& line : run.lines()) {
      out.push_back(FromJson<v1::Envelope>(line));
    }
    return out;
  }

  FixedClock clock_{
      absl::FromUnixSeconds(1'733'000'000)};  // 2024-11-30T20:53:20Z
  TempDir dir_;
  std::string db_ = dir_.Sub("db");
};

// ------------------------------------------------------------- time zone

TEST_F(CliTermsTest, PostingsPrintBeijingTimeAndSayWhichZone) {
  CliRun run = Run({"postings", "--store", "s1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = run.lines();
  ASSERT_GT(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("times in UTC+08:00"));
  EXPECT_THAT(lines[0], HasSubstr("amounts in fen"));
  // 15:59:59Z is still 9 Oct in Beijing; 16:00:00Z is 10 Oct at midnight.
  EXPECT_THAT(run.out, HasSubstr(",2024-10-09T23:59:59+08:00,"));
  EXPECT_THAT(run.out, HasSubstr(",2024-10-10T00:00:00+08:00,"));
  EXPECT_THAT(run.out, Not(HasSubstr("Z,")));

  CliRun utc = Run({"--tz", "UTC", "postings", "--store", "s1"});
  ASSERT_EQ(utc.exit_code, 0) << utc.err;
  EXPECT_THAT(utc.lines()[0], HasSubstr("times in UTC;"));
  EXPECT_THAT(utc.out, HasSubstr(",2024-10-09T16:00:00+00:00,"));

  EXPECT_EQ(Run({"--tz", "Mars/Olympus", "postings"}).exit_code, 2);
}

TEST_F(CliTermsTest, ADateIsMidnightInTheLedgersZone) {
  // --from 2024-10-10: from Beijing midnight, so o2's payment (16:00:00Z)
  // is in and o1's (15:59:59Z) is out.
  CliRun run = Run({"postings", "--store", "s1", "--from", "2024-10-10", "--to",
                    "2024-10-11"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr(",o2,"));
  EXPECT_THAT(run.out, Not(HasSubstr(",o1,")));
  // In UTC, the same date starts eight hours later: neither payment.
  CliRun utc = Run({"--tz", "UTC", "postings", "--store", "s1", "--from",
                    "2024-10-10", "--to", "2024-10-10T12:00:00Z"});
  ASSERT_EQ(utc.exit_code, 0) << utc.err;
  EXPECT_EQ(utc.lines().size(), 2u) << utc.out;  // as-of line and header
  EXPECT_THAT(utc.err, HasSubstr("nothing matched"));

  // --as-of as a date, echoed as written beside its UTC form.
  CliRun state = Run({"state", "--store", "s1", "--as-of", "2024-10-10"});
  ASSERT_EQ(state.exit_code, 0) << state.err;
  EXPECT_THAT(state.err,
              HasSubstr("--as-of 2024-10-10 = 2024-10-09T16:00:00+00:00"));
  const v1::StoreState at_midnight = FromJson<v1::StoreState>(state.out);
  CliRun explicit_time =
      Run({"state", "--store", "s1", "--as-of", "2024-10-10T00:00:00+08:00"});
  EXPECT_EQ(explicit_time.out, state.out);
  EXPECT_EQ(at_midnight.balances().pending_fen(), 1001 + 999);
  EXPECT_EQ(Run({"state", "--store", "s1", "--as-of", "2024-13-01"}).exit_code,
            2);
}

// ------------------------------------------------------------- find by id

TEST_F(CliTermsTest, HistoryFindsTheStoreOfAnOrderOrWithdrawal) {
  const std::vector<v1::Envelope> o1 = History({"--order", "o1"});
  ASSERT_EQ(o1.size(), 4u);  // placed, paid, shipped, settled
  for (const v1::Envelope& e : o1) EXPECT_EQ(e.stream_id(), "store-s1");
  const std::vector<v1::Envelope> wd1 = History({"--withdrawal", "wd1"});
  ASSERT_EQ(wd1.size(), 1u);
  // p1 is in both stores (synced): both histories, merged by position.
  const std::vector<v1::Envelope> p1 = History({"--product", "p1"});
  bool in_s1 = false, in_w1 = false;
  for (const v1::Envelope& e : p1) {
    in_s1 = in_s1 || e.stream_id() == "store-s1";
    in_w1 = in_w1 || e.stream_id() == "store-w1";
  }
  EXPECT_TRUE(in_s1 && in_w1);

  CliRun wrong = Run({"history", "--store", "w1", "--order", "o1"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err,
              HasSubstr("order o1 is not in store w1: it belongs to s1"));
  EXPECT_EQ(wrong.out, "");
  CliRun wrong_withdrawal =
      Run({"history", "--store", "w1", "--withdrawal", "wd1"});
  EXPECT_EQ(wrong_withdrawal.exit_code, 1);
  EXPECT_THAT(wrong_withdrawal.err,
              HasSubstr("withdrawal wd1 is not in store w1: it belongs to s1"));
  // A product id is a store's own: the stores that have one are named.
  CliRun wrong_product = Run({"history", "--store", "w1", "--product", "p3"});
  EXPECT_EQ(wrong_product.exit_code, 1);
  EXPECT_THAT(wrong_product.err,
              HasSubstr("product p3 is not in store w1: stores with a product "
                        "of that id: s1 (product ids are per store)"));
  EXPECT_EQ(wrong_product.out, "");
  // A product id in many stores: the first ten are named, and the rest
  // counted.
  std::string many;
  for (int i = 0; i < 12; ++i) {
    const std::string store = absl::StrCat("x", 10 + i);
    absl::StrAppend(
        &many,
        Cmd(absl::StrCat("open-", store), "2024-06-02T09:00:00+08:00",
            absl::StrCat(
                R"("openStore":{"storeId":")", store,
                R"(","merchantId":"mx","kind":"MINI_STORE","subject":"ENTERPRISE"})")),
        "\n",
        Cmd(absl::StrCat("add-", store), "2024-06-02T10:00:00+08:00",
            absl::StrCat(
                R"("addProduct":{"storeId":")", store,
                R"(","productId":"px","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":100})")),
        "\n");
  }
  CliRun applied = Run({"apply", "-"}, many);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  ASSERT_THAT(applied.out, Not(HasSubstr("REJECTED"))) << applied.out;
  CliRun in_many = Run({"history", "--store", "s1", "--product", "px"});
  EXPECT_EQ(in_many.exit_code, 1);
  EXPECT_THAT(in_many.err,
              HasSubstr("stores with a product of that id: x10, x11, x12, x13, "
                        "x14, x15, x16, x17, x18, x19 and 2 more (`storeledger "
                        "find px` lists them)"));
  CliRun unknown = Run({"history", "--order", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no store has order nope"));
  EXPECT_EQ(Run({"history"}).exit_code, 2);
}

TEST_F(CliTermsTest, FindSaysWhatAnIdIsAndWhereItLives) {
  CliRun order = Run({"find", "o9"});
  ASSERT_EQ(order.exit_code, 0) << order.err;
  const v1::FindResult o9 = FromJson<v1::FindResult>(order.out);
  ASSERT_EQ(o9.matches_size(), 1);
  EXPECT_EQ(o9.matches(0).kind(), "order");
  EXPECT_EQ(o9.matches(0).store_id(), "w1");
  EXPECT_EQ(o9.matches(0).merchant_id(), "m1");
  EXPECT_EQ(o9.matches(0).status(), "PAID");
  EXPECT_GT(o9.matches(0).first_position(), 0u);

  const v1::FindResult store =
      FromJson<v1::FindResult>(Run({"find", "s1"}).out);
  ASSERT_EQ(store.matches_size(), 1);
  EXPECT_EQ(store.matches(0).kind(), "store");
  EXPECT_EQ(store.matches(0).status(), "UPGRADED");
  EXPECT_EQ(store.matches(0).first_position(), 1u);

  const v1::FindResult command =
      FromJson<v1::FindResult>(Run({"find", "c12"}).out);
  ASSERT_EQ(command.matches_size(), 1);
  EXPECT_EQ(command.matches(0).kind(), "command");
  EXPECT_EQ(command.matches(0).stream_id(), "store-w1");

  const v1::FindResult product =
      FromJson<v1::FindResult>(Run({"find", "p1"}).out);
  ASSERT_EQ(product.matches_size(), 2);  // s1 and its copy in w1
  EXPECT_EQ(product.matches(0).store_id(), "s1");
  EXPECT_EQ(product.matches(1).store_id(), "w1");

  CliRun nothing = Run({"find", "nope"});
  EXPECT_EQ(nothing.exit_code, 1);
  EXPECT_THAT(nothing.err, HasSubstr("no store, merchant"));
}

// ------------------------------------------------------------- known at

TEST(CliKnownAtTest, KnownAtIsTheLastPositionRecordedAtOrBeforeT) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  FixedClock clock(China(12, 1, 9));
  auto run = [&](std::vector<std::string> args, const std::string& in = "") {
    args.insert(args.begin(), {"--db", db});
    std::istringstream input(in);
    std::ostringstream out, err;
    const int code = RunCli(args, input, out, err, &clock);
    return CliRun{code, out.str(), err.str()};
  };
  ASSERT_EQ(
      run({"apply", "-"},
          Cmd("k1", "2024-06-01T09:00:00+08:00",
              R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})") +
              "\n")
          .exit_code,
      0);  // positions 1 (store) and 2 (merchant), recorded 09:00
  clock.Advance(absl::Hours(1));
  ASSERT_EQ(
      run({"apply", "-"},
          Cmd("k2", "2024-06-01T10:00:00+08:00",
              R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})") +
              "\n")
          .exit_code,
      0);  // position 3, recorded 10:00

  auto position_at = [&](const std::string& t) {
    CliRun r = run({"position-at", t});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FromJson<v1::PositionAt>(r.out);
  };
  EXPECT_EQ(position_at("2024-12-01T08:59:59+08:00").position(), 0u);
  EXPECT_EQ(position_at("2024-12-01T09:00:00+08:00").position(), 2u);
  EXPECT_EQ(position_at("2024-12-01T09:59:59+08:00").position(), 2u);
  const v1::PositionAt at_ten = position_at("2024-12-01T10:00:00+08:00");
  EXPECT_EQ(at_ten.position(), 3u);
  EXPECT_EQ(at_ten.written(), "2024-12-01T10:00:00+08:00");
  EXPECT_EQ(position_at("2024-12-02").position(), 3u);

  // state --known-at T = state --position (position-at T).
  auto products = [&](const std::string& known_at) {
    CliRun r = run({"state", "--store", "s1", "--known-at", known_at});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("= position"));
    return FromJson<v1::StoreState>(r.out).products_size();
  };
  EXPECT_EQ(products("2024-12-01T09:59:59+08:00"), 0);
  EXPECT_EQ(products("2024-12-01T10:00:00+08:00"), 1);
  EXPECT_EQ(products("2024-12-01T11:00:00+08:00"), 1);
  EXPECT_EQ(
      run({"state", "--store", "s1", "--known-at", "2024-12-01T08:00:00+08:00"})
          .exit_code,
      1);  // the store was not known yet
  EXPECT_EQ(run({"state", "--store", "s1", "--position", "2", "--known-at",
                 "2024-12-02"})
                .exit_code,
            2);

  // diff between two positions at one business time.
  CliRun diff = run({"diff", "--store", "s1", "--at", "2024-07-01",
                     "--from-position", "2", "--to-position", "3"});
  ASSERT_EQ(diff.exit_code, 0) << diff.err;
  const v1::StoreDiff d = FromJson<v1::StoreDiff>(diff.out);
  EXPECT_EQ(d.from_position(), 2u);
  EXPECT_EQ(d.to_position(), 3u);
  ASSERT_EQ(d.products_size(), 1);
  EXPECT_EQ(d.products(0).change(), v1::ADDED);
}

// ------------------------------------------------------------- the sync

TEST_F(CliTermsTest, TheSyncIsInBothHistoriesEvenWhenItCopiesNothing) {
  const std::vector<v1::Envelope> target =
      History({"--store", "w1", "--type", "ProductsSynced"});
  ASSERT_EQ(target.size(), 1u);
  const v1::ProductsSynced& synced = target[0].payload().products_synced();
  EXPECT_EQ(synced.source_store_id(), "s1");
  EXPECT_THAT(synced.copied_product_ids(), ::testing::ElementsAre("p1"));
  ASSERT_EQ(synced.skipped_size(), 1);
  EXPECT_EQ(synced.skipped(0).product_id(), "p3");
  EXPECT_EQ(synced.skipped(0).reason(), "third-party product");
  const std::vector<v1::Envelope> source =
      History({"--store", "s1", "--type", "ProductsSynced"});
  ASSERT_EQ(source.size(), 1u);
  EXPECT_EQ(source[0].position(), target[0].position());

  // Again: nothing to copy, and the history says so.
  CliRun again =
      Run({"apply", "-"},
          Cmd("c19", "2024-11-07T10:00:00+08:00",
              R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})") +
              "\n");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  const std::vector<v1::Envelope> both =
      History({"--store", "s1", "--type", "ProductsSynced"});
  ASSERT_EQ(both.size(), 2u);
  const v1::ProductsSynced& nothing = both[1].payload().products_synced();
  EXPECT_EQ(nothing.copied_product_ids_size(), 0);
  ASSERT_EQ(nothing.skipped_size(), 2);
  EXPECT_EQ(nothing.skipped(0).reason(), "already synced");
  // And a plain history of the legacy store shows it among its events.
  bool seen = false;
  for (const v1::Envelope& e : History({"--store", "s1"})) {
    seen = seen || e.event_type() == "ProductsSynced";
  }
  EXPECT_TRUE(seen);
}

// ------------------------------------------------------------- finance

TEST_F(CliTermsTest, PostingsCarryEventTypeAndStoreKind) {
  CliRun run = Run({"postings"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::vector<std::string> lines = run.lines();
  EXPECT_THAT(lines[0], HasSubstr("# storeledger postings as of position "));
  EXPECT_EQ(lines[1],
            "position,event_id,event_type,occurred_at,store_id,store_kind,"
            "account,debit_fen,credit_fen,order_id,withdrawal_id");
  bool legacy_paid = false, new_paid = false;
  for (size_t i = 2; i < lines.size(); ++i) {
    const std::vector<std::string> f = Fields(lines[i]);
    ASSERT_EQ(f.size(), 11u) << lines[i];
    if (f[2] == "OrderPaid" && f[4] == "s1") {
      legacy_paid = legacy_paid || f[5] == "MINI_STORE";
    }
    if (f[2] == "OrderPaid" && f[4] == "w1") {
      new_paid = new_paid || f[5] == "WECHAT_STORE";
    }
  }
  EXPECT_TRUE(legacy_paid);
  EXPECT_TRUE(new_paid);
}

// Yuan text to fen, exactly: "12.34" -> 1234.
int64_t FenOf(const std::string& yuan) {
  const size_t dot = yuan.find('.');
  EXPECT_EQ(dot, yuan.size() - 3) << yuan;
  int64_t fen = 0;
  EXPECT_TRUE(
      absl::SimpleAtoi(yuan.substr(0, dot) + yuan.substr(dot + 1), &fen))
      << yuan;
  return fen;
}

TEST_F(CliTermsTest, YuanNeverChangesATotal) {
  CliRun fen = Run({"postings"});
  CliRun yuan = Run({"postings", "--yuan"});
  ASSERT_EQ(yuan.exit_code, 0) << yuan.err;
  const std::vector<std::string> a = fen.lines(), b = yuan.lines();
  ASSERT_EQ(a.size(), b.size());
  EXPECT_THAT(b[0], HasSubstr("amounts in yuan"));
  EXPECT_THAT(b[1], HasSubstr("debit_yuan,credit_yuan"));
  int64_t debit_fen = 0, debit_from_yuan = 0;
  for (size_t i = 2; i < a.size(); ++i) {
    const std::vector<std::string> f = Fields(a[i]), g = Fields(b[i]);
    int64_t d = 0;
    ASSERT_TRUE(absl::SimpleAtoi(f[7], &d));
    debit_fen += d;
    debit_from_yuan += FenOf(g[7]);
    EXPECT_EQ(FenOf(g[7]), d) << b[i];
  }
  EXPECT_GT(debit_fen, 0);
  EXPECT_EQ(debit_from_yuan, debit_fen);
  EXPECT_THAT(yuan.out, HasSubstr(",10.01,"));  // o1: 1001 fen
  EXPECT_THAT(yuan.out, HasSubstr(",9.99,"));   // o2: 999 fen

  CliRun balances = Run({"balances", "--format", "csv", "--yuan"});
  ASSERT_EQ(balances.exit_code, 0) << balances.err;
  EXPECT_THAT(balances.out, HasSubstr("pending_yuan"));
  EXPECT_THAT(balances.out, HasSubstr(",500.00"));      // w1's deposit
  EXPECT_EQ(Run({"balances", "--yuan"}).exit_code, 2);  // JSON keeps fen
  EXPECT_EQ(balances.err, "");
  // Before the first store: totals of nothing, said so.
  for (const char* format : {"json", "csv"}) {
    CliRun before =
        Run({"balances", "--as-of", "2024-05-01", "--format", format});
    EXPECT_EQ(before.exit_code, 0) << before.err;
    EXPECT_THAT(before.err, HasSubstr("nothing matched: no store existed"))
        << format;
  }

  EXPECT_EQ(AmountText(-5, true), "-0.05");
  EXPECT_EQ(AmountText(INT64_MIN, true), "-92233720368547758.08");
}

TEST_F(CliTermsTest, StatementPairShowsBothStoresApart) {
  CliRun csv = Run({"statement", "--store", "s1", "--pair", "--from",
                    "2024-10-01", "--to", "2024-12-01"});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  const std::vector<std::string> lines = csv.lines();
  EXPECT_THAT(lines[1], HasSubstr("never sum them"));
  EXPECT_EQ(lines[2],
            "store_id,store_kind,section,account,position,event_id,event_type,"
            "occurred_at,debit_fen,credit_fen,balance_fen,order_id,"
            "withdrawal_id");
  bool s1 = false, w1 = false;
  for (size_t i = 3; i < lines.size(); ++i) {
    const std::vector<std::string> f = Fields(lines[i]);
    ASSERT_EQ(f.size(), 13u) << lines[i];
    s1 = s1 || (f[0] == "s1" && f[1] == "MINI_STORE");
    w1 = w1 || (f[0] == "w1" && f[1] == "WECHAT_STORE");
    EXPECT_NE(f[2], "total");
  }
  EXPECT_TRUE(s1 && w1);

  // From the WeChat side too; JSON keeps the two statements apart.
  CliRun json = Run({"statement", "--store", "w1", "--pair", "--from",
                     "2024-10-01", "--to", "2024-12-01", "--format", "json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  const v1::StatementPair pair = FromJson<v1::StatementPair>(json.out);
  EXPECT_EQ(pair.legacy().store_id(), "s1");
  EXPECT_EQ(pair.wechat().store_id(), "w1");
  EXPECT_GT(pair.wechat().lines_size(), 0);
  EXPECT_GT(pair.legacy().lines_size(), 0);

  // A period before the store had any money: an empty statement, said so.
  CliRun before = Run({"statement", "--store", "s1", "--pair", "--from",
                       "2024-01-01", "--to", "2024-02-01"});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  EXPECT_EQ(before.lines().size(), 3u) << before.out;  // two # lines, header
  EXPECT_THAT(before.err,
              HasSubstr("nothing matched: store s1 has no postings before "
                        "2024-02-01T00:00:00+08:00"));
  EXPECT_THAT(before.err, HasSubstr("store w1 has no postings"));
  CliRun with_money = Run({"statement", "--store", "s1", "--from", "2024-11-01",
                           "--to", "2024-12-01"});
  EXPECT_EQ(with_money.err, "");
}

// ------------------------------------------------------------- empty answers

TEST_F(CliTermsTest, TailPastTheHeadIsNotSilent) {
  CliRun head = Run({"digest"});
  const uint64_t position = FromJson<v1::Digest>(head.out).position();
  CliRun at_head = Run({"tail", "--from-position", absl::StrCat(position)});
  EXPECT_EQ(at_head.exit_code, 0) << at_head.err;  // caught up: nothing new
  CliRun past = Run({"tail", "--from-position", absl::StrCat(position + 1)});
  EXPECT_EQ(past.exit_code, 1);
  EXPECT_THAT(past.err, HasSubstr("past the head of the log"));
  CliRun follow = Run({"tail", "--from-position", absl::StrCat(position + 5),
                       "--follow", "--idle-exit-ms", "50", "--poll-ms", "10"});
  EXPECT_EQ(follow.exit_code, 0) << follow.err;
  EXPECT_THAT(follow.err, HasSubstr("warning"));
  EXPECT_THAT(follow.err, HasSubstr("ahead of this ledger"));
  // export from past the head is not an empty success either.
  CliRun export_at_head =
      Run({"export", "--from-position", absl::StrCat(position)});
  EXPECT_EQ(export_at_head.exit_code, 0) << export_at_head.err;
  CliRun export_past = Run({"export", "--from-position",
                            absl::StrCat(position + 1), "--format", "jsonl"});
  EXPECT_EQ(export_past.exit_code, 1);
  EXPECT_EQ(export_past.out, "");
  EXPECT_THAT(export_past.err, HasSubstr("past the head of the log"));
}

TEST_F(CliTermsTest, AFilterMatchingNothingSaysSo) {
  CliRun run = Run({"history", "--store", "s1", "--type", "WithdrawalFailed"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out, "");
  EXPECT_THAT(run.err, HasSubstr("nothing matched"));
}

TEST(CliSimulateTest,
     RefusesANonEmptyLedgerUnlessAppendAndRecordsOnItsTimeline) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  CliRun first = testing::RunStoreledger(
      {"--db", db, "simulate", "--stores", "3", "--no-progress"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("yuan (CNY)"));
  CliRun again = testing::RunStoreledger(
      {"--db", db, "simulate", "--stores", "3", "--no-progress"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("--append"));
  EXPECT_EQ(again.out, "");

  // recorded_at follows occurred_at by seconds, and never goes back.
  CliRun tail =
      testing::RunStoreledger({"--db", db, "tail", "--from-position", "0"});
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  absl::Time last_recorded = absl::InfinitePast();
  for (const std::string& line : tail.lines()) {
    const v1::Envelope e = FromJson<v1::Envelope>(line);
    const absl::Time recorded = ToTime(e.recorded_at());
    EXPECT_GE(recorded, last_recorded) << line;
    last_recorded = recorded;
    if (e.payload().has_command_rejected()) continue;  // may come late
    const absl::Duration delay = recorded - ToTime(e.occurred_at());
    EXPECT_GE(delay, absl::Milliseconds(500)) << line;
    EXPECT_LT(delay, absl::Hours(1)) << line;
  }
  // On the simulated timeline (2024-25), not today's clock.
  EXPECT_LT(last_recorded, China(12, 31) + absl::Hours(24 * 180));

  CliRun appended =
      testing::RunStoreledger({"--db", db, "simulate", "--stores", "3",
                               "--seed", "2", "--append", "--no-progress"});
  EXPECT_EQ(appended.exit_code, 0) << appended.err;
}

// ------------------------------------------------------------- help

TEST(CliHelpTest, EveryVerbDescribesItsFlags) {
  // Every verb of RunCli: its own help (not the general usage), every flag
  // it accepts, embedded and with --server.
  for (const char* verb :
       {"apply",        "simulate", "state",       "history",    "explain",
        "diff",         "find",     "position-at", "postings",   "balances",
        "statement",    "audit",    "digest",      "verify",     "export",
        "tail",         "rebuild",  "keygen",      "checkpoint", "prove",
        "verify-proof", "consume",  "publish",     "backup"}) {
    CliRun help = testing::RunStoreledger({verb, "--help"});
    EXPECT_EQ(help.exit_code, 0) << verb;
    EXPECT_THAT(help.out,
                ::testing::StartsWith(absl::StrCat(
                    "usage: storeledger [--db DIR] [--policy FILE] [--tz "
                    "ZONE] ",
                    verb)))
        << verb;
    for (const std::string& flag : DocumentedFlags(verb)) {
      EXPECT_THAT(help.out, HasSubstr("--" + flag)) << verb;
    }
    for (const std::string& flag : DocumentedServerFlags(verb)) {
      EXPECT_THAT(help.out, HasSubstr("--" + flag)) << verb;
    }
  }
  CliRun tail = testing::RunStoreledger({"tail", "--help"});
  for (const char* flag : {"--max-events", "--idle-exit-ms", "--poll-ms",
                           "--server", "--at-least", "--partition N|all"}) {
    EXPECT_THAT(tail.out, HasSubstr(flag));
  }
  // The proof verbs accept what their help lists, and nothing else.
  CliRun keygen = testing::RunStoreledger({"keygen", "--bogus", "1"});
  EXPECT_EQ(keygen.exit_code, 2);
  EXPECT_THAT(keygen.err, HasSubstr("--name"));
  // The table is also what the verb accepts.
  CliRun unknown = testing::RunStoreledger({"state", "--bogus", "1"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("--known-at"));
}

}  // namespace
}  // namespace storeledger
