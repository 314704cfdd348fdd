// The write path's invariant checks (core/invariants.h, base/check.h): they
// pass what our rules produce and crash, naming the invariant, on what they
// must never produce -- in every build type, release included.
#include "core/invariants.h"

#include "base/check.h"
#include "core/state.h"
#include "gtest/gtest.h"

namespace storeledger {
namespace {

v1::Event Settled(int64_t gross_fen, int64_t commission_fen, int64_t net_fen) {
  v1::Event event;
  v1::OrderSettled* settled = event.mutable_order_settled();
  settled->set_store_id("s1");
  settled->set_order_id("o1");
  settled->set_gross_fen(gross_fen);
  settled->set_commission_fen(commission_fen);
  settled->set_net_fen(net_fen);
  return event;
}

TEST(InvariantsDeathTest, SlCheckAbortsWithFileLineAndMessage) {
  EXPECT_DEATH(SL_CHECK(1 + 1 == 3, "arithmetic is "
                                        << "broken"),
               "invariants_test.cc:[0-9]+: invariant broken: 1 \\+ 1 == 3: "
               "arithmetic is broken");
  SL_CHECK(1 + 1 == 2, "never printed");
}

TEST(InvariantsDeathTest, UnbalancedPostingsCrash) {
  CheckPostingsInvariant(Settled(100, 10, 90));
  EXPECT_DEATH(CheckPostingsInvariant(Settled(100, 10, 91)),
               "debit 101 fen and credit 100 fen");
}

TEST(InvariantsDeathTest, ANegativeBalanceAfterEvolveCrashes) {
  StateOverlay state(&EmptyState());
  v1::StoreRecord store;
  store.set_store_id("s1");
  store.mutable_balances()->set_pending_fen(100);
  state.PutStore(store);
  ASSERT_TRUE(CheckEvolvedInvariants(Settled(100, 10, 90), state).ok());

  store.mutable_balances()->set_pending_fen(-1);
  state.PutStore(store);
  EXPECT_DEATH(
      CheckEvolvedInvariants(Settled(100, 10, 90), state).IgnoreError(),
      "store s1 has a negative balance");
  // An event that moves no money names no store to check.
  v1::Event opened;
  opened.mutable_store_opened()->set_store_id("s1");
  EXPECT_TRUE(CheckEvolvedInvariants(opened, state).ok());
}

}  // namespace
}  // namespace storeledger
