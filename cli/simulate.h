// The migration simulator: a deterministic, realistic stream of commands along
// the article's timeline (stores of every kind and subject, products, orders
// through their whole life, upgrades, syncs, qualifications and deposits,
// ApplyPolicy at the cutoffs, legacy settlements and withdrawals after the
// upgrade) with a share of commands that break rules on purpose.
#ifndef STORELEDGER_CLI_SIMULATE_H_
#define STORELEDGER_CLI_SIMULATE_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

struct SimulatedStep {
  v1::Command command;
  // Withdrawals whose amount depends on the balance when they run: the
  // simulator asks for exactly the store's available balance (kAll), or for
  // one fen more than it (kTooMuch, refused by R14).
  enum class Amount { kAsWritten, kAll, kTooMuch };
  Amount amount = Amount::kAsWritten;
};

// Limit on --stores: the plan is built in memory (~60 commands a store).
inline constexpr int kSimulateStoresMax = 200'000;

// The steps for `stores` stores, sorted by occurred_at (ties keep plan order).
// Same (stores, seed) → the same steps, command ids included.
std::vector<SimulatedStep> PlanMigration(int stores, uint64_t seed);

// The balance-dependent withdrawals of a plan, as `simulate` runs them (and
// the tests that run its plan): kAll asks for the store's available balance
// when the withdrawal's turn comes, kTooMuch for one fen more (refused by
// R14); a withdrawal of nothing is not asked for, nor then its completion or
// failure. One per run of a plan; not thread-safe.
class SimulatedWithdrawals {
 public:
  // Whether `step` is sized from its store's available balance, read after
  // every command before it is decided.
  static bool NeedsBalance(const SimulatedStep& step);
  // `step`'s command, its amount from `available_fen` when NeedsBalance;
  // nullopt when the step is skipped.
  std::optional<v1::Command> Next(const SimulatedStep& step,
                                  int64_t available_fen);

 private:
  std::set<std::string> skipped_;
};

// The plan written ahead, with no live balance to size withdrawals from (the
// benchmarks and the crash test): kAll asks for kWithdrawAllFen, a modest
// amount (usually accepted), kTooMuch for kWithdrawTooMuchFen, which no
// store has (refused by R14, as the simulator intends).
inline constexpr int64_t kWithdrawAllFen = 100;
inline constexpr int64_t kWithdrawTooMuchFen = 1'000'000'000'000;
// PlanMigration(stores, seed)'s commands in order, withdrawals fixed.
std::vector<v1::Command> PlanWrittenAhead(int stores, uint64_t seed);

// Id of the i-th legacy store and of the WeChat Store it upgrades into.
std::string SimulatedStoreId(int i);
std::string SimulatedUpgradeTargetId(int i);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_SIMULATE_H_
