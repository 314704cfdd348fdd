// Money: postings of every money event balance to zero and touch one store
// (R13), the store accounts folded from postings equal the balances Evolve
// keeps, and Evolve refuses events that do not fit the state (kDataLoss).
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/postings.h"
#include "gtest/gtest.h"
#include "tests/core_test_util.h"

namespace storeledger {
namespace {

using testing_core::Accepted;
using testing_core::kEarly;
using testing_core::MemoryLedger;
using testing_core::ParseTime;

constexpr char kOct22[] = "2024-10-22T10:00:00+08:00";

// A run through every money event in two stores, one of them upgraded.
void RunMoneyScenario(MemoryLedger& l) {
  for (const char* s : {"s1", "s2"}) {
    ASSERT_TRUE(Accepted(l.OpenStore(kEarly, s, "m1", "MINI_STORE")));
    ASSERT_TRUE(Accepted(l.AddProduct(kEarly, s, "p1")));
    ASSERT_TRUE(Accepted(l.ListProduct(kEarly, s, "p1")));
  }
  // o1: paid, partly refunded from pending, shipped, settled with commission,
  // refunded again from available.
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 4, 2500)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 10000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 1000)));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 450)));
  ASSERT_TRUE(Accepted(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 550)));
  // o2 in s2: paid, settled without commission.
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s2", "o2", "p1", 1, 3000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s2", "o2", 3000)));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s2", "o2")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s2", "o2", 0)));
  // o3 in s1: paid, fully refunded from pending.
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o3", "p1", 1, 700)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o3", 700)));
  ASSERT_TRUE(Accepted(l.OrderMoney("refundOrder", kEarly, "s1", "o3", 700)));
  // Withdrawals: one completes, one fails.
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd1", 5000)));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd2", 1000)));
  ASSERT_TRUE(
      Accepted(l.WithdrawalVerb("completeWithdrawal", kEarly, "s1", "wd1")));
  ASSERT_TRUE(
      Accepted(l.WithdrawalVerb("failWithdrawal", kEarly, "s1", "wd2")));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s2", "wd3", 3000)));
  // Upgrade s1; its new WeChat Store pays deposits.
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "food", 50000)));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "toys", 20000)));
}

TEST(Postings, EveryMoneyEventBalancesAndTouchesOneStore) {
  MemoryLedger l;
  RunMoneyScenario(l);
  int money_events = 0;
  for (const testing_core::AppliedEvent& e : l.log()) {
    const std::vector<Posting> postings = PostingsFor(e.event);
    if (postings.empty()) continue;
    ++money_events;
    const std::string store = postings[0].store_id;
    ASSERT_FALSE(store.empty());
    EXPECT_EQ(e.stream_id, "store-" + store) << EventTypeName(e.event);
    int64_t debits = 0, credits = 0;
    for (const Posting& p : postings) {
      EXPECT_EQ(p.store_id, store);
      EXPECT_TRUE(p.debit_fen > 0 ? p.credit_fen == 0 : p.credit_fen > 0)
          << "one side, non-zero: " << p.account;
      debits += p.debit_fen;
      credits += p.credit_fen;
      const bool own = absl::StartsWith(p.account, store + "/") ||
                       p.account == "payouts/" + store ||
                       p.account == "merchant_bank/" + store;
      const bool outside =
          p.account == kBuyersAccount || p.account == kCommissionAccount;
      EXPECT_TRUE(own || outside) << p.account << " in an event of " << store;
      const bool is_order = e.event.has_order_paid() ||
                            e.event.has_order_settled() ||
                            e.event.has_order_refunded();
      EXPECT_EQ(p.order_id.empty(), !is_order) << EventTypeName(e.event);
    }
    EXPECT_EQ(debits, credits) << EventTypeName(e.event);
  }
  EXPECT_EQ(
      money_events,
      15);  // 3 pays, 3 refunds, 2 settles, 5 withdrawal events, 2 deposits
}

TEST(Postings, AccountsFoldToTheBalancesEvolveKeeps) {
  MemoryLedger l;
  RunMoneyScenario(l);
  std::map<std::string, int64_t> account;  // debits - credits
  for (const testing_core::AppliedEvent& e : l.log()) {
    for (const Posting& p : PostingsFor(e.event)) {
      account[p.account] += p.debit_fen - p.credit_fen;
    }
  }
  for (const char* s : {"s1", "s2", "w1"}) {
    const v1::Balances b = l.Store(s).balances();
    const std::string id = s;
    EXPECT_EQ(account[PendingAccount(id)], b.pending_fen()) << s;
    EXPECT_EQ(account[AvailableAccount(id)], b.available_fen()) << s;
    EXPECT_EQ(account[WithdrawingAccount(id)], b.withdrawing_fen()) << s;
    EXPECT_EQ(account[PayoutsAccount(id)], b.paid_out_fen()) << s;
    EXPECT_EQ(account[DepositAccount(id, "food")] +
                  account[DepositAccount(id, "toys")],
              b.deposit_fen())
        << s;
  }
  // s1: paid 10000+700, refunded 1000+700 from pending, settled gross 9000
  // (commission 450, net 8550), refunded 550 from available, withdrew 5000.
  const v1::Balances s1 = l.Store("s1").balances();
  EXPECT_EQ(s1.pending_fen(), 0);
  EXPECT_EQ(s1.available_fen(), 8550 - 550 - 5000);
  EXPECT_EQ(s1.paid_out_fen(), 5000);
  EXPECT_EQ(account["platform/commission"], 450);
  EXPECT_EQ(account["buyers"], -(10000 + 700 + 3000) + 1000 + 550 + 700);
  EXPECT_EQ(account["merchant_bank/w1"], -70000);
  EXPECT_EQ(l.Store("w1").deposit_fen_by_category().at("toys"), 20000);
  // Nothing in the log is out of balance overall.
  int64_t total = 0;
  for (const auto& [name, fen] : account) total += fen;
  EXPECT_EQ(total, 0);
}

TEST(Postings, ExactPostingsOfASettlement) {
  v1::Event e;
  v1::OrderSettled* s = e.mutable_order_settled();
  s->set_store_id("s1");
  s->set_order_id("o1");
  s->set_gross_fen(1000);
  s->set_commission_fen(100);
  s->set_net_fen(900);
  const std::vector<Posting> p = PostingsFor(e);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].account, "s1/pending");
  EXPECT_EQ(p[0].credit_fen, 1000);
  EXPECT_EQ(p[1].account, "s1/available");
  EXPECT_EQ(p[1].debit_fen, 900);
  EXPECT_EQ(p[2].account, "platform/commission");
  EXPECT_EQ(p[2].debit_fen, 100);
  for (const Posting& one : p) EXPECT_EQ(one.order_id, "o1");
  // Zero commission: no commission posting.
  s->set_commission_fen(0);
  s->set_net_fen(1000);
  EXPECT_EQ(PostingsFor(e).size(), 2u);
  // Events that move no money have no postings.
  v1::Event listed;
  listed.mutable_product_listed()->set_store_id("s1");
  EXPECT_TRUE(PostingsFor(listed).empty());
}

TEST(Postings, AccountNames) {
  EXPECT_EQ(PendingAccount("s1"), "s1/pending");
  EXPECT_EQ(AvailableAccount("s1"), "s1/available");
  EXPECT_EQ(WithdrawingAccount("s1"), "s1/withdrawing");
  EXPECT_EQ(DepositAccount("s1", "food"), "s1/deposit/food");
  EXPECT_EQ(PayoutsAccount("s1"), "payouts/s1");
  EXPECT_EQ(MerchantBankAccount("s1"), "merchant_bank/s1");
}

TEST(Evolve, EventsThatDoNotFitTheStateAreDataLoss) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  const absl::Time at = ParseTime(kOct22);
  StateOverlay& state = l.state();

  v1::Event paid;
  paid.mutable_order_paid()->set_store_id("s1");
  paid.mutable_order_paid()->set_order_id("missing");
  paid.mutable_order_paid()->set_amount_fen(1);
  EXPECT_EQ(Evolve("store-s1", 9, at, paid, &state).code(),
            absl::StatusCode::kDataLoss);

  v1::Event withdrawn;
  withdrawn.mutable_withdrawal_requested()->set_store_id("s1");
  withdrawn.mutable_withdrawal_requested()->set_withdrawal_id("wd1");
  withdrawn.mutable_withdrawal_requested()->set_amount_fen(1);  // available 0
  EXPECT_EQ(Evolve("store-s1", 9, at, withdrawn, &state).code(),
            absl::StatusCode::kDataLoss);

  v1::Event product;
  product.mutable_product_listed()->set_store_id("s1");
  product.mutable_product_listed()->set_product_id("nope");
  EXPECT_EQ(Evolve("store-s1", 9, at, product, &state).code(),
            absl::StatusCode::kDataLoss);

  v1::Event reopened;
  reopened.mutable_store_opened()->set_store_id("s1");
  EXPECT_EQ(Evolve("store-s1", 9, at, reopened, &state).code(),
            absl::StatusCode::kDataLoss);

  EXPECT_EQ(Evolve("store-s1", 9, at, v1::Event(), &state).code(),
            absl::StatusCode::kDataLoss);
  // A failed evolve does not advance the head.
  EXPECT_EQ((*state.Head("store-s1"))->version(), 1u);
}

TEST(Evolve, AdvancesHeadsAndRecordsRejectionsOnlyAsHeads) {
  StateOverlay state(&EmptyState());
  v1::Event rejected;
  rejected.mutable_command_rejected()->set_rule("R1");
  const absl::Time at = ParseTime(kOct22);
  ASSERT_TRUE(Evolve("rejections", 7, at, rejected, &state).ok());
  auto head = state.Head("rejections");
  ASSERT_TRUE(head.ok() && *head != nullptr);
  EXPECT_EQ((*head)->version(), 7u);
  EXPECT_EQ(ToTime((*head)->last_occurred_at()), at);
  EXPECT_TRUE(state.stores().empty());

  v1::Envelope envelope;
  envelope.set_stream_id("store-s1");
  envelope.set_stream_version(1);
  *envelope.mutable_occurred_at() = ToProto(at);
  v1::StoreOpened* opened = envelope.mutable_payload()->mutable_store_opened();
  opened->set_store_id("s1");
  opened->set_merchant_id("m1");
  opened->set_kind(v1::MINI_STORE);
  opened->set_subject(v1::ENTERPRISE);
  ASSERT_TRUE(EvolveEnvelope(envelope, &state).ok());
  auto store = state.Store("s1");
  ASSERT_TRUE(store.ok() && *store != nullptr);
  EXPECT_EQ((*store)->status(), v1::OPEN);
  EXPECT_EQ(ToTime((*store)->opened_at()), at);
  EXPECT_EQ((*state.Head("store-s1"))->version(), 1u);
}

TEST(Evolve, AnOrderOrWithdrawalOfAnotherStoreIsDataLoss) {
  StateOverlay state(&EmptyState());
  OrderRecord order;
  order.set_store_id("s1");
  order.set_order_id("o1");
  order.set_status(v1::PLACED);
  state.PutOrder(order);
  WithdrawalRecord withdrawal;
  withdrawal.set_store_id("s1");
  withdrawal.set_withdrawal_id("wd1");
  withdrawal.set_status(v1::WITHDRAWING);
  state.PutWithdrawal(withdrawal);
  const absl::Time at = ParseTime(kOct22);

  v1::Event shipped;
  shipped.mutable_order_shipped()->set_store_id("s2");
  shipped.mutable_order_shipped()->set_order_id("o1");
  absl::Status status = Evolve("store-s2", 1, at, shipped, &state);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "evolve: order o1 does not exist in store s2");

  v1::Event failed;
  failed.mutable_withdrawal_failed()->set_store_id("s2");
  failed.mutable_withdrawal_failed()->set_withdrawal_id("wd1");
  status = Evolve("store-s2", 1, at, failed, &state);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(status.message(),
            "evolve: withdrawal wd1 does not exist in store s2");
  // Neither record changed.
  EXPECT_EQ((*state.Order("o1"))->status(), v1::PLACED);
  EXPECT_EQ((*state.Withdrawal("wd1"))->status(), v1::WITHDRAWING);
}

// A state that keeps no stream heads (the rebuild's record cache) is
// folded into all the same, and is handed no head.
class HeadlessState : public StateOverlay {
 public:
  HeadlessState() : StateOverlay(&EmptyState()) {}
  bool TracksHeads() const override { return false; }
};

TEST(Evolve, AStateThatTracksNoHeadsGetsNone) {
  HeadlessState state;
  v1::Event opened;
  opened.mutable_store_opened()->set_store_id("s1");
  opened.mutable_store_opened()->set_merchant_id("m1");
  opened.mutable_store_opened()->set_kind(v1::MINI_STORE);
  ASSERT_TRUE(Evolve("store-s1", 1, ParseTime(kOct22), opened, &state).ok());
  ASSERT_NE(*state.Store("s1"), nullptr);
  EXPECT_EQ(*state.Head("store-s1"), nullptr);
  EXPECT_TRUE(state.heads().empty());
}

}  // namespace
}  // namespace storeledger
