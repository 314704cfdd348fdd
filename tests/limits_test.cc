// Every limit of core/limits.h (and the CLI's and storage's limits) hit at
// and just past it; sums that would overflow int64; a large input streaming
// through `apply` in memory that does not grow with it; and two processes on
// one ledger.
#include "core/limits.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/simulate.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "rocksdb/db.h"
#include "storage/event_log.h"
#include "storage/format.h"
#include "tests/core_test_util.h"
#include "tests/support/child_process.h"
#include "tests/support/test_support.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STORELEDGER_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STORELEDGER_SANITIZED 1
#endif
#endif

namespace storeledger {
namespace {

using ::storeledger::testing::ChildOptions;
using ::storeledger::testing::ChildProcess;
using ::storeledger::testing::CliRun;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::storeledger::testing_core::Accepted;
using ::storeledger::testing_core::kEarly;
using ::storeledger::testing_core::MemoryLedger;
using ::storeledger::testing_core::Rejected;
using ::storeledger::testing_core::Shift;
using ::testing::HasSubstr;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

std::string Id(size_t bytes, char fill = 'i') {
  return std::string(bytes, fill);
}

std::string Cmd(absl::string_view id, absl::string_view body,
                absl::string_view at = "2024-06-01T09:00:00+08:00") {
  return absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":")", at,
                      R"(",)", body, "}");
}

v1::CommandResult ResultOf(const std::string& line) {
  v1::CommandResult result;
  auto status = google::protobuf::util::JsonStringToMessage(line, &result);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << line;
  return result;
}

// ------------------------------------------------------- input line bytes

// `json` padded with spaces before its closing brace to exactly `bytes`.
std::string PadTo(std::string json, size_t bytes) {
  EXPECT_LE(json.size(), bytes);
  json.insert(json.size() - 1, bytes - json.size(), ' ');
  EXPECT_EQ(json.size(), bytes);
  return json;
}

TEST(LimitsTest, InputLineAtTheLimitIsParsedPastItIsInvalid) {
  TempDir dir;
  const std::string open =
      R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})";
  const std::string at_limit = PadTo(Cmd("c-at", open), kInputLineBytesMax);
  const std::string past_limit =
      PadTo(Cmd("c-past", open), kInputLineBytesMax + 1);
  const std::string after = Cmd(
      "c-after",
      R"("openStore":{"storeId":"s2","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})");
  CliRun run =
      RunStoreledger({"--db", dir.Sub("db"), "apply", "-"},
                     at_limit + "\n" + past_limit + "\n" + after + "\n");
  EXPECT_EQ(run.exit_code, 2) << run.err;  // an INVALID line
  const std::vector<std::string> lines = run.lines();
  ASSERT_EQ(lines.size(), 3u) << run.out << run.err;
  const v1::CommandResult first = ResultOf(lines[0]);
  EXPECT_EQ(first.status(), v1::ACCEPTED) << lines[0];
  EXPECT_EQ(first.line(), 1);
  const v1::CommandResult second = ResultOf(lines[1]);
  EXPECT_EQ(second.status(), v1::INVALID);
  EXPECT_THAT(second.message(),
              HasSubstr(absl::StrCat("longer than ", kInputLineBytesMax)));
  EXPECT_EQ(second.line(), 2);
  // The over-long line was skipped to its end: the next line is whole.
  const v1::CommandResult third = ResultOf(lines[2]);
  EXPECT_EQ(third.status(), v1::ACCEPTED) << lines[2];
  EXPECT_EQ(third.command_id(), "c-after");
  EXPECT_EQ(third.line(), 3);
}

// ------------------------------------------------------------ command bytes

// An openStore whose merchantId (an id R0 refuses past kIdBytesMax) makes
// the command exactly `bytes` bytes of protobuf.
v1::Command CommandOfBytes(const std::string& id, size_t bytes) {
  v1::Command command = testing::CommandFromJson(Cmd(
      id,
      R"("openStore":{"storeId":"s-big","merchantId":"","kind":"MINI_STORE","subject":"ENTERPRISE"})"));
  size_t filler = bytes - command.ByteSizeLong();
  // The merchantId's length prefix grows with it: settle in a few rounds.
  for (int round = 0; round < 8 && command.ByteSizeLong() != bytes; ++round) {
    command.mutable_open_store()->set_merchant_id(std::string(filler, 'm'));
    filler += bytes - command.ByteSizeLong();
  }
  EXPECT_EQ(command.ByteSizeLong(), bytes);
  return command;
}

// One limit for a command whatever the door (CLI or gRPC): at it the
// command is decided (here refused by R0, and that refusal is stored); past
// it, or at gRPC's 4 MiB, it is INVALID before deciding and nothing is
// stored -- through Execute and ExecuteBatch alike.
TEST(LimitsTest, CommandAtTheByteLimitIsDecidedPastItIsInvalidAndNotStored) {
  TempDir dir;
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open(dir.Sub("db"), options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  absl::StatusOr<v1::CommandResult> at =
      (*ledger)->Execute(CommandOfBytes("c-at", kCommandBytesMax));
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(at->status(), v1::REJECTED) << at->message();
  EXPECT_EQ(at->rule(), "R0");
  EXPECT_EQ((*ledger)->log().head().position, 1u);

  for (const size_t bytes : {kCommandBytesMax + 1, size_t{4'000'000}}) {
    absl::StatusOr<v1::CommandResult> past =
        (*ledger)->Execute(CommandOfBytes("c-past", bytes));
    ASSERT_TRUE(past.ok()) << past.status();
    EXPECT_EQ(past->status(), v1::INVALID);
    EXPECT_EQ(
        past->message(),
        absl::StrCat("the command is ", bytes, " bytes; the limit is ",
                     kCommandBytesMax, " (core/limits.h kCommandBytesMax)"));
    std::vector<v1::Command> batch;
    batch.push_back(CommandOfBytes("c-batch-past", bytes));
    batch.push_back(CommandOfBytes("c-batch-at", kCommandBytesMax));
    std::vector<absl::StatusOr<v1::CommandResult>> results =
        (*ledger)->ExecuteBatch(std::move(batch));
    ASSERT_EQ(results.size(), 2u);
    ASSERT_TRUE(results[0].ok()) << results[0].status();
    EXPECT_EQ(results[0]->status(), v1::INVALID);
    EXPECT_THAT(results[0]->message(), HasSubstr("kCommandBytesMax"));
    ASSERT_TRUE(results[1].ok()) << results[1].status();
    EXPECT_EQ(results[1]->status(), v1::REJECTED);
  }
  // The command at the limit, and the batch's one twice (the second time a
  // replay): nothing of the oversized ones.
  EXPECT_EQ((*ledger)->log().head().position, 2u);
  absl::Status scanned = (*ledger)->log().Scan(
      0, [&](const v1::Envelope& envelope, absl::string_view raw) {
        EXPECT_LE(raw.size(), kCommandBytesMax + 4096) << envelope.position();
        EXPECT_NE(envelope.command_id(), "c-past");
        return true;
      });
  EXPECT_TRUE(scanned.ok()) << scanned;
}

// ------------------------------------------------------------------- ids

TEST(LimitsTest, CommandIdOf64BytesIsAcceptedOf65IsInvalid) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir.Sub("db"));
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  auto open = [&](const std::string& id, const std::string& store) {
    return (*ledger)->Execute(testing::CommandFromJson(Cmd(
        id,
        absl::StrCat(
            R"("openStore":{"storeId":")", store,
            R"(","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"))));
  };
  absl::StatusOr<v1::CommandResult> at = open(Id(kIdBytesMax, 'a'), "s1");
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(at->status(), v1::ACCEPTED) << at->message();
  absl::StatusOr<v1::CommandResult> past = open(Id(kIdBytesMax + 1, 'b'), "s2");
  ASSERT_TRUE(past.ok()) << past.status();
  EXPECT_EQ(past->status(), v1::INVALID);
  EXPECT_THAT(past->message(), HasSubstr("65 bytes"));
  EXPECT_EQ((*ledger)->log().head().position, 2u)  // store + merchant
      << "an INVALID command writes nothing";
}

TEST(LimitsTest, EveryKindOfIdOf64BytesIsAcceptedOf65IsRejected) {
  // Each body names one id of `bytes` bytes; everything else is valid.
  struct Case {
    const char* field;
    std::function<void(MemoryLedger&, const std::string&, bool)> run;
  };
  const std::string at = kEarly;
  const std::vector<Case> cases = {
      {"openStore.storeId",
       [&](MemoryLedger& l, const std::string& id, bool ok) {
         const Decision d = l.OpenStore(at, id, "m1", "MINI_STORE");
         if (ok) {
           EXPECT_TRUE(Accepted(d));
         } else {
           EXPECT_TRUE(Rejected(d, "R0", v1::INVALID_ARGUMENT, "65"));
         }
       }},
      {"openStore.merchantId",
       [&](MemoryLedger& l, const std::string& id, bool ok) {
         const Decision d = l.OpenStore(at, "s1", id, "MINI_STORE");
         if (ok) {
           EXPECT_TRUE(Accepted(d));
         } else {
           EXPECT_TRUE(Rejected(d, "R0", v1::INVALID_ARGUMENT, "65"));
         }
       }},
      {"addProduct.productId / categoryId",
       [&](MemoryLedger& l, const std::string& id, bool ok) {
         ASSERT_TRUE(Accepted(l.OpenStore(at, "s1", "m1", "MINI_STORE")));
         const Decision d =
             l.AddProduct(Shift(at, 1), "s1", id, "PHYSICAL", "OWN", id);
         if (ok) {
           EXPECT_TRUE(Accepted(d));
         } else {
           EXPECT_TRUE(Rejected(d, "R0", v1::INVALID_ARGUMENT, "65"));
         }
       }},
      {"placeOrder.orderId",
       [&](MemoryLedger& l, const std::string& id, bool ok) {
         ASSERT_TRUE(Accepted(l.OpenStore(at, "s1", "m1", "MINI_STORE")));
         ASSERT_TRUE(Accepted(l.AddProduct(Shift(at, 1), "s1", "p1")));
         ASSERT_TRUE(Accepted(l.ListProduct(Shift(at, 2), "s1", "p1")));
         const Decision d = l.PlaceOrder(Shift(at, 3), "s1", id, "p1");
         if (ok) {
           EXPECT_TRUE(Accepted(d));
         } else {
           EXPECT_TRUE(Rejected(d, "R0", v1::INVALID_ARGUMENT, "65"));
         }
       }},
      {"requestWithdrawal.withdrawalId",
       [&](MemoryLedger& l, const std::string& id, bool ok) {
         ASSERT_TRUE(Accepted(l.OpenStore(at, "s1", "m1", "MINI_STORE")));
         const Decision d = l.RequestWithdrawal(Shift(at, 1), "s1", id, 1);
         if (ok) {  // the id is fine; the money is not there
           EXPECT_TRUE(Rejected(d, "R14", v1::INSUFFICIENT_FUNDS));
         } else {
           EXPECT_TRUE(Rejected(d, "R0", v1::INVALID_ARGUMENT, "65"));
         }
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    {
      MemoryLedger at_limit;
      c.run(at_limit, Id(kIdBytesMax), true);
    }
    {
      MemoryLedger past_limit;
      c.run(past_limit, Id(kIdBytesMax + 1), false);
    }
  }
}

// ----------------------------------------------- order lines, quantity

// A MINI_STORE "s1" with listed product "p1" at `price_fen`.
void StoreWithProduct(MemoryLedger& l, int64_t price_fen = 1000) {
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(Shift(kEarly, 1), "s1", "p1", "PHYSICAL",
                                    "OWN", "food", price_fen)));
  ASSERT_TRUE(Accepted(l.ListProduct(Shift(kEarly, 2), "s1", "p1")));
}

Decision PlaceLines(MemoryLedger& l, absl::string_view order, size_t lines,
                    int64_t quantity, int64_t unit_price_fen,
                    int at_seconds = 10) {
  std::vector<std::string> line_json;
  for (size_t i = 0; i < lines; ++i) {
    line_json.push_back(absl::StrCat(R"({"productId":"p1","quantity":")",
                                     quantity, R"(","unitPriceFen":")",
                                     unit_price_fen, R"("})"));
  }
  return l.Run(
      Shift(kEarly, at_seconds),
      absl::StrCat(R"("placeOrder":{"storeId":"s1","orderId":")", order,
                   R"(","lines":[)", absl::StrJoin(line_json, ","), "]}"));
}

TEST(LimitsTest, OrderOf100LinesIsAcceptedOf101IsRejected) {
  MemoryLedger l;
  StoreWithProduct(l);
  EXPECT_TRUE(Accepted(PlaceLines(l, "o-at", kOrderLinesMax, 1, 1000)));
  EXPECT_EQ(l.Order("o-at").lines_size(), static_cast<int>(kOrderLinesMax));
  EXPECT_TRUE(Rejected(PlaceLines(l, "o-past", kOrderLinesMax + 1, 1, 1000),
                       "R0", v1::INVALID_ARGUMENT, "1..100 lines, got 101"));
}

TEST(LimitsTest, QuantityAtTheMaximumIsAcceptedPastItIsRejected) {
  MemoryLedger l;
  StoreWithProduct(l, 1);
  EXPECT_TRUE(Accepted(PlaceLines(l, "o-at", 1, kQuantityMax, 1)));
  EXPECT_TRUE(Rejected(PlaceLines(l, "o-past", 1, kQuantityMax + 1, 1), "R0",
                       v1::INVALID_ARGUMENT, "quantity must be <= 1000000"));
}

// ---------------------------------------------------------------- amounts

TEST(LimitsTest, EveryAmountAtTheMaximumIsAcceptedPastItIsRejected) {
  {
    SCOPED_TRACE("addProduct.priceFen");
    MemoryLedger l;
    ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
    EXPECT_TRUE(
        Accepted(l.AddProduct(Shift(kEarly, 1), "s1", "p-at", "PHYSICAL", "OWN",
                              "food", kAmountFenMax)));
    EXPECT_TRUE(Rejected(
        l.AddProduct(Shift(kEarly, 2), "s1", "p-past", "PHYSICAL", "OWN",
                     "food", kAmountFenMax + 1),
        "R0", v1::INVALID_ARGUMENT, "priceFen must be <= 1000000000000000"));
  }
  {
    SCOPED_TRACE("placeOrder total, payOrder, settleOrder, refundOrder");
    MemoryLedger l;
    StoreWithProduct(l, kAmountFenMax);
    EXPECT_TRUE(Accepted(PlaceLines(l, "o1", 1, 1, kAmountFenMax)));
    EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", Shift(kEarly, 11), "s1", "o1",
                                      kAmountFenMax + 1),
                         "R0", v1::INVALID_ARGUMENT, "must be <="));
    EXPECT_TRUE(Accepted(l.OrderMoney("payOrder", Shift(kEarly, 12), "s1", "o1",
                                      kAmountFenMax)));
    EXPECT_EQ(l.Store("s1").balances().pending_fen(), kAmountFenMax);
    EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", Shift(kEarly, 13), "s1",
                                      "o1", kAmountFenMax + 1),
                         "R0", v1::INVALID_ARGUMENT, "must be <="));
    EXPECT_TRUE(
        Accepted(l.OrderVerb("shipOrder", Shift(kEarly, 14), "s1", "o1")));
    EXPECT_TRUE(Rejected(l.OrderMoney("settleOrder", Shift(kEarly, 15), "s1",
                                      "o1", kAmountFenMax + 1),
                         "R0", v1::INVALID_ARGUMENT, "commissionFen"));
    EXPECT_TRUE(Accepted(
        l.OrderMoney("settleOrder", Shift(kEarly, 16), "s1", "o1", 0)));
    EXPECT_EQ(l.Store("s1").balances().available_fen(), kAmountFenMax);
    EXPECT_TRUE(Rejected(l.RequestWithdrawal(Shift(kEarly, 17), "s1", "w-past",
                                             kAmountFenMax + 1),
                         "R0", v1::INVALID_ARGUMENT, "must be <="));
    EXPECT_TRUE(Accepted(
        l.RequestWithdrawal(Shift(kEarly, 18), "s1", "w-at", kAmountFenMax)));
  }
}

TEST(LimitsTest, OrderTotalsThatWouldOverflowAreRejected) {
  MemoryLedger l;
  StoreWithProduct(l, kAmountFenMax);
  // 1000 x 10^12 = 10^15: exactly the maximum amount.
  EXPECT_TRUE(Accepted(PlaceLines(l, "o-at", 1, 1000, kAmountFenMax / 1000)));
  EXPECT_EQ(l.Order("o-at").total_fen(), kAmountFenMax);
  EXPECT_TRUE(Rejected(PlaceLines(l, "o-past", 2, 1000, kAmountFenMax / 1000),
                       "R0", v1::INVALID_ARGUMENT, "exceeds the maximum"));
  // 10^6 x 10^15 = 10^21 overflows int64 in one line; 100 such lines
  // would be 10^23. Checked arithmetic refuses, never wraps.
  EXPECT_TRUE(Rejected(PlaceLines(l, "o-mul", 1, kQuantityMax, kAmountFenMax),
                       "R0", v1::INVALID_ARGUMENT, "overflows"));
  EXPECT_TRUE(Rejected(
      PlaceLines(l, "o-sum", kOrderLinesMax, kQuantityMax, kAmountFenMax), "R0",
      v1::INVALID_ARGUMENT, "overflows"));
}

// A store whose balances have grown to within a few fen of int64's maximum
// (the state of a store after ~9,200 maximal payments): every command that
// would push a balance past it is rejected, none is accepted to overflow
// when its event is folded in (Evolve would report kDataLoss).
class BalanceOverflowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StoreWithProduct(l_, 1000);
    ASSERT_TRUE(Accepted(PlaceLines(l_, "o1", 1, 1, 1000)));
    ASSERT_TRUE(Accepted(
        l_.OrderMoney("payOrder", Shift(kEarly, 11), "s1", "o1", 1000)));
    ASSERT_TRUE(
        Accepted(l_.OrderVerb("shipOrder", Shift(kEarly, 12), "s1", "o1")));
    ASSERT_TRUE(Accepted(PlaceLines(l_, "o2", 1, 1, 1000, 12)));
    ASSERT_TRUE(Accepted(
        l_.OrderMoney("payOrder", Shift(kEarly, 13), "s1", "o2", 1000)));
    ASSERT_TRUE(
        Accepted(l_.OrderVerb("shipOrder", Shift(kEarly, 14), "s1", "o2")));
    ASSERT_TRUE(Accepted(
        l_.OrderMoney("settleOrder", Shift(kEarly, 15), "s1", "o2", 0)));
    ASSERT_TRUE(
        Accepted(l_.RequestWithdrawal(Shift(kEarly, 16), "s1", "w1", 500)));
  }
  // Sets one balance of s1 (the others stay).
  void SetBalance(void (v1::Balances::*set)(int64_t), int64_t fen) {
    StoreRecord store = l_.Store("s1");
    (store.mutable_balances()->*set)(fen);
    l_.state().PutStore(store);
  }
  MemoryLedger l_;
};

TEST_F(BalanceOverflowTest, PaymentIntoAFullPendingBalanceIsRejected) {
  SetBalance(&v1::Balances::set_pending_fen, kInt64Max - 10);
  ASSERT_TRUE(Accepted(PlaceLines(l_, "o3", 1, 1, 1000, 18)));
  EXPECT_TRUE(Rejected(
      l_.OrderMoney("payOrder", Shift(kEarly, 20), "s1", "o3", 1000), "R0",
      v1::INVALID_ARGUMENT,
      "payOrder.amountFen 1000 overflows the pending balance of store s1"));
}

TEST_F(BalanceOverflowTest, SettlementIntoAFullAvailableBalanceIsRejected) {
  SetBalance(&v1::Balances::set_available_fen, kInt64Max - 10);
  EXPECT_TRUE(Rejected(
      l_.OrderMoney("settleOrder", Shift(kEarly, 20), "s1", "o1", 0), "R0",
      v1::INVALID_ARGUMENT,
      "settleOrder net 1000 overflows the available balance of store s1"));
}

TEST_F(BalanceOverflowTest, WithdrawalIntoAFullWithdrawingBalanceIsRejected) {
  SetBalance(&v1::Balances::set_withdrawing_fen, kInt64Max - 10);
  EXPECT_TRUE(Rejected(
      l_.RequestWithdrawal(Shift(kEarly, 20), "s1", "w2", 400), "R0",
      v1::INVALID_ARGUMENT,
      "requestWithdrawal.amountFen 400 overflows the withdrawing balance of "
      "store s1"));
}

TEST_F(BalanceOverflowTest, PayoutIntoAFullPaidOutBalanceIsRejected) {
  SetBalance(&v1::Balances::set_paid_out_fen, kInt64Max - 10);
  EXPECT_TRUE(Rejected(
      l_.WithdrawalVerb("completeWithdrawal", Shift(kEarly, 20), "s1", "w1"),
      "R0", v1::INVALID_ARGUMENT,
      "completeWithdrawal amount 500 overflows the paid-out balance of store "
      "s1"));
}

TEST_F(BalanceOverflowTest, FailedWithdrawalIntoAFullAvailableIsRejected) {
  SetBalance(&v1::Balances::set_available_fen, kInt64Max - 10);
  EXPECT_TRUE(Rejected(
      l_.WithdrawalVerb("failWithdrawal", Shift(kEarly, 20), "s1", "w1"), "R0",
      v1::INVALID_ARGUMENT,
      "failWithdrawal amount 500 overflows the available balance of store "
      "s1"));
}

TEST(LimitsTest, DepositIntoAFullDepositBalanceIsRejected) {
  MemoryLedger l;
  const std::string at = testing_core::kLaunch;
  ASSERT_TRUE(Accepted(l.OpenStore(at, "w1", "m1", "WECHAT_STORE")));
  StoreRecord store = l.Store("w1");
  store.mutable_balances()->set_deposit_fen(kInt64Max - 10);
  l.state().PutStore(store);
  EXPECT_TRUE(Rejected(l.PayDeposit(Shift(at, 1), "w1", "food", 1000), "R0",
                       v1::INVALID_ARGUMENT,
                       "payDeposit.amountFen 1000 overflows the deposit "
                       "balance of store w1"));
}

// ------------------------------------------ products, events per command

// Adds `count` LISTED products to store `store` directly (as a long history
// would have left them), without deciding each.
void PutListedProducts(MemoryLedger& l, const std::string& store, size_t count,
                       v1::ProductKind kind = v1::PHYSICAL) {
  for (size_t i = 0; i < count; ++i) {
    ProductRecord product;
    product.set_store_id(store);
    product.set_product_id(absl::StrCat("p", i));
    product.set_kind(kind);
    product.set_origin(v1::OWN);
    product.set_status(v1::LISTED);
    product.set_category_id("food");
    product.set_price_fen(100);
    l.state().PutProduct(std::move(product));
  }
  // Evolve counts products in the store record; so must this shortcut.
  absl::StatusOr<StoreRecord*> record = l.state().MutableStore(store);
  ASSERT_TRUE(record.ok() && *record != nullptr);
  (*record)->set_product_count((*record)->product_count() +
                               static_cast<int64_t>(count));
}

TEST(LimitsTest, StoreOf49999ProductsTakesOneMoreOf50000None) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  PutListedProducts(l, "s1", kProductsPerStoreMax - 1);
  EXPECT_TRUE(Accepted(l.AddProduct(Shift(kEarly, 1), "s1", "last")));
  EXPECT_TRUE(Rejected(l.AddProduct(Shift(kEarly, 2), "s1", "one-more"), "R2",
                       v1::FAILED_PRECONDITION, "the maximum is 50000"));
}

// ApplyPolicy delists every listed mini-store product past a cutoff, one
// event each: exactly kEventsPerCommandMax is accepted, one more is refused
// as a whole.
TEST(LimitsTest, CommandOf100000EventsIsAcceptedOf100001IsRejected) {
  for (const size_t products :
       {kEventsPerCommandMax, kEventsPerCommandMax + 1}) {
    SCOPED_TRACE(products);
    MemoryLedger l;
    const size_t per_store = kProductsPerStoreMax;
    size_t left = products;
    for (int store = 0; left > 0; ++store) {
      const std::string id = absl::StrCat("s", store);
      ASSERT_TRUE(Accepted(l.OpenStore(kEarly, id, "m1", "MINI_STORE")));
      const size_t here = std::min(left, per_store);
      PutListedProducts(l, id, here);
      left -= here;
    }
    absl::StatusOr<Decision> decision =
        Decide(testing_core::ParseCommand(testing_core::kMiniPhysicalCutoff,
                                          R"("applyPolicy":{})"),
               l.state(), l.policy());
    ASSERT_TRUE(decision.ok()) << decision.status();
    if (products <= kEventsPerCommandMax) {
      EXPECT_TRUE(Accepted(*decision));
      EXPECT_EQ(decision->events.size(), products);
    } else {
      EXPECT_TRUE(Rejected(*decision, "R0", v1::FAILED_PRECONDITION,
                           "more than 100000 events"));
    }
  }
}

// ------------------------------------------------------ envelope bytes

// An envelope whose stored form (what Append writes for position 1, stream
// version 1) is exactly `bytes` long.
v1::Envelope EnvelopeOfStoredSize(size_t bytes) {
  v1::Envelope envelope;
  envelope.set_stream_id("store-big");
  envelope.set_event_id("big#0");
  envelope.set_command_id("big");
  envelope.set_event_type("StoreOpened");
  envelope.set_policy_version("test");
  v1::StoreOpened* opened = envelope.mutable_payload()->mutable_store_opened();
  opened->set_store_id("big");
  auto stored_size = [&] {
    v1::Envelope copy = envelope;
    copy.set_position(1);
    copy.set_stream_version(1);
    copy.set_prev_hash(std::string(format::kHashBytes, '\0'));
    copy.set_hash(std::string(format::kHashBytes, '\0'));
    return copy.ByteSizeLong();
  };
  size_t filler = bytes - stored_size();
  for (int i = 0; i < 8 && stored_size() != bytes; ++i) {
    opened->set_merchant_id(std::string(filler, 'x'));
    const size_t now = stored_size();
    filler = filler + bytes - now;
  }
  EXPECT_EQ(stored_size(), bytes);
  return envelope;
}

TEST(LimitsTest, EnvelopeAtTheLimitIsStoredPastItIsRefused) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<EventLog>> log =
      EventLog::Open(dir.Sub("db"), EventLogOptions{.sync = false});
  ASSERT_TRUE(log.ok()) << log.status();
  {
    AppendRequest past;
    past.events.push_back(
        {kExpectAny, EnvelopeOfStoredSize(kEnvelopeBytesMax + 1), {}});
    absl::StatusOr<AppendResult> refused = (*log)->Append(std::move(past));
    ASSERT_FALSE(refused.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
    EXPECT_THAT(std::string(refused.status().message()),
                HasSubstr("over the limit"));
  }
  AppendRequest at;
  at.events.push_back(
      {kExpectAny, EnvelopeOfStoredSize(kEnvelopeBytesMax), {}});
  absl::StatusOr<AppendResult> stored = (*log)->Append(std::move(at));
  ASSERT_TRUE(stored.ok()) << stored.status();
  absl::StatusOr<v1::Envelope> read = (*log)->Read(1);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->ByteSizeLong(), kEnvelopeBytesMax);

  // Bytes over the limit found on disk are damage: DATA_LOSS, not parsed.
  ASSERT_TRUE((*log)
                  ->db()
                  ->Put(rocksdb::WriteOptions(), (*log)->events_cf(),
                        PositionKey(1),
                        std::string(kEnvelopeBytesMax + 1, '\x62'))
                  .ok());
  absl::StatusOr<v1::Envelope> damaged = (*log)->Read(1);
  ASSERT_FALSE(damaged.ok());
  EXPECT_TRUE(absl::IsDataLoss(damaged.status())) << damaged.status();
  EXPECT_THAT(std::string(damaged.status().message()),
              HasSubstr("over the limit"));
}

TEST(LimitsTest, SimulateRefusesMoreStoresThanItsLimit) {
  TempDir dir;
  CliRun run = RunStoreledger({"--db", dir.Sub("db"), "simulate", "--stores",
                               absl::StrCat(kSimulateStoresMax + 1)});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("1..200000"));
}

// ------------------------------------------------------- bounded memory

// Writes about `bytes` of `apply` input to `fd`: one ~1 MiB line (a padded
// retry of a command already recorded), one line over the limit, a few new
// commands, and many small retries and malformed lines, repeated.
void WriteStream(int fd, uint64_t bytes) {
  const std::string open = Cmd(
      "pad-open",
      R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})");
  const std::string padded = PadTo(open, kInputLineBytesMax) + "\n";
  const std::string too_long =
      std::string(kInputLineBytesMax + 4096, 'x') + "\n";
  std::string small;
  for (int i = 0; i < 2000; ++i) small += open + "\n";
  for (int i = 0; i < 200; ++i) small += "{not json\n";
  uint64_t written = 0;
  int unit = 0;
  auto put = [&](const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    written += text.size();
    return true;
  };
  while (written < bytes) {
    std::string fresh;
    for (int i = 0; i < 5; ++i) {
      fresh +=
          Cmd(absl::StrCat("new-", unit, "-", i),
              absl::StrCat(
                  R"("openStore":{"storeId":"n)", unit, "-", i,
                  R"(","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})")) +
          "\n";
    }
    ++unit;
    if (!put(padded) || !put(too_long) || !put(fresh) || !put(small)) return;
  }
}

struct StreamRun {
  int64_t max_rss_kb = 0;
  uint64_t result_lines = 0;
  int wait_status = 0;
};

StreamRun ApplyStream(const std::string& db, uint64_t bytes) {
  ChildOptions options;
  options.argv = {STORELEDGER_BIN, "--db", db, "apply", "-"};
  options.stdin_pipe = true;
  options.out_bytes_max = 1 << 20;
  absl::StatusOr<std::unique_ptr<ChildProcess>> child =
      ChildProcess::Start(options);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return {};
  const int fd = (*child)->stdin_fd();
  ChildProcess* process = child->get();
  std::thread writer([fd, bytes, process] {
    WriteStream(fd, bytes);
    process->CloseStdin();  // end of input: apply finishes and exits
  });
  (*child)->ReadUntil(absl::InfiniteFuture());
  writer.join();
  StreamRun run;
  run.wait_status = (*child)->Wait();
  run.max_rss_kb = (*child)->max_rss_kb();
  run.result_lines = (*child)->lines_read();
  return run;
}

TEST(LimitsTest, ApplyStreamsLargeInputInMemoryThatDoesNotGrowWithIt) {
#ifdef STORELEDGER_SANITIZED
  GTEST_SKIP() << "sanitizer runtimes hold freed memory (quarantine), so peak "
                  "RSS says nothing about apply's own memory";
#endif
  constexpr uint64_t kSmall = 50ull << 20;
  // 200 MiB under ./test; STORELEDGER_APPLY_LARGE_MIB=2048 for the
  // multi-gigabyte run the README reports.
  const char* large_mib = std::getenv("STORELEDGER_APPLY_LARGE_MIB");
  const uint64_t kLarge =
      (large_mib != nullptr ? std::strtoull(large_mib, nullptr, 10) : 200)
      << 20;
  TempDir dir;
  // The write after the stdin pipe closes must not kill the test.
  signal(SIGPIPE, SIG_IGN);
  const StreamRun small = ApplyStream(dir.Sub("small"), kSmall);
  const StreamRun large = ApplyStream(dir.Sub("large"), kLarge);
  // INVALID lines (the over-long and malformed ones) make the exit status 2.
  EXPECT_TRUE(WIFEXITED(small.wait_status) &&
              WEXITSTATUS(small.wait_status) == 2)
      << testing::DescribeWaitStatus(small.wait_status);
  EXPECT_TRUE(WIFEXITED(large.wait_status) &&
              WEXITSTATUS(large.wait_status) == 2)
      << testing::DescribeWaitStatus(large.wait_status);
  EXPECT_GT(large.result_lines, 3 * small.result_lines);
  std::cout << "apply: 50 MiB of input -> " << small.result_lines
            << " result lines, peak RSS " << small.max_rss_kb / 1024 << " MiB; "
            << (kLarge >> 20) << " MiB -> " << large.result_lines
            << " result lines, peak RSS " << large.max_rss_kb / 1024
            << " MiB\n";
  RecordProperty("rss_kb_50mib", static_cast<int>(small.max_rss_kb));
  RecordProperty("rss_kb_200mib", static_cast<int>(large.max_rss_kb));
  // Four times the input, about the same memory: nothing grows with it.
  EXPECT_LT(large.max_rss_kb, small.max_rss_kb + 24 * 1024);
  EXPECT_LT(large.max_rss_kb, 400 * 1024);
}

// ------------------------------------------- two processes, one ledger

TEST(LimitsTest, SecondWriterProcessGetsInUseErrorNeverACorruptLedger) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  ChildOptions options;
  options.argv = {STORELEDGER_BIN, "--db", db, "apply", "-"};
  options.stdin_pipe = true;
  absl::StatusOr<std::unique_ptr<ChildProcess>> first =
      ChildProcess::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string one =
      Cmd("first-1",
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})") +
      "\n";
  ASSERT_EQ(::write((*first)->stdin_fd(), one.data(), one.size()),
            static_cast<ssize_t>(one.size()));
  // Its answer means the first process holds the ledger open.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while ((*first)->CompleteLines().empty() && absl::Now() < deadline) {
    (*first)->ReadUntil(absl::Now() + absl::Milliseconds(50));
  }
  ASSERT_EQ((*first)->CompleteLines().size(), 1u) << "no answer from apply";
  EXPECT_EQ(ResultOf((*first)->CompleteLines()[0]).status(), v1::ACCEPTED);

  // A second writer, another process: refused, clearly, with nothing written.
  ChildOptions second_options;
  second_options.argv = {STORELEDGER_BIN, "--db", db, "apply", "-"};
  second_options.stdin_path = dir.Sub("second.jsonl");
  second_options.stderr_path = dir.Sub("second.err");
  {
    std::ofstream input(second_options.stdin_path);
    input
        << Cmd("second-1",
               R"("openStore":{"storeId":"s2","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})")
        << "\n";
  }
  absl::StatusOr<std::unique_ptr<ChildProcess>> second =
      ChildProcess::Start(second_options);
  ASSERT_TRUE(second.ok()) << second.status();
  const int second_status = (*second)->Wait();
  EXPECT_TRUE(WIFEXITED(second_status) && WEXITSTATUS(second_status) == 1)
      << testing::DescribeWaitStatus(second_status);
  std::ifstream err_file(second_options.stderr_path);
  const std::string err((std::istreambuf_iterator<char>(err_file)),
                        std::istreambuf_iterator<char>());
  EXPECT_THAT(err, HasSubstr("in use by another process")) << err;
  EXPECT_TRUE((*second)->out().empty()) << (*second)->out();

  // Readers may share it meanwhile.
  CliRun digest = RunStoreledger({"--db", db, "digest"});
  EXPECT_EQ(digest.exit_code, 0) << digest.err;

  // The first goes on undisturbed, then ends.
  const std::string two =
      Cmd("first-2",
          R"("openStore":{"storeId":"s3","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})") +
      "\n";
  ASSERT_EQ(::write((*first)->stdin_fd(), two.data(), two.size()),
            static_cast<ssize_t>(two.size()));
  (*first)->CloseStdin();
  const int first_status = (*first)->Wait();
  EXPECT_TRUE(WIFEXITED(first_status) && WEXITSTATUS(first_status) == 0)
      << testing::DescribeWaitStatus(first_status);
  ASSERT_EQ((*first)->CompleteLines().size(), 2u);

  LedgerOptions read_only;
  read_only.read_only = true;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, read_only);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  EXPECT_TRUE(
      (*ledger)
          ->log()
          .Scan(0, [](const v1::Envelope&, absl::string_view) { return true; })
          .ok());
  for (const char* id : {"first-1", "first-2"}) {
    absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
        (*ledger)->log().GetOutcome(id);
    ASSERT_TRUE(outcome.ok());
    EXPECT_TRUE(outcome->has_value()) << id;
  }
  absl::StatusOr<std::optional<v1::StoredOutcome>> refused =
      (*ledger)->log().GetOutcome("second-1");
  ASSERT_TRUE(refused.ok());
  EXPECT_FALSE(refused->has_value());

  // The same from within one process: a second Ledger on the directory.
  absl::StatusOr<std::unique_ptr<Ledger>> writer = Ledger::Open(db);
  ASSERT_TRUE(writer.ok()) << writer.status();
  absl::StatusOr<std::unique_ptr<Ledger>> another = Ledger::Open(db);
  ASSERT_FALSE(another.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(another.status())) << another.status();
}

}  // namespace
}  // namespace storeledger
