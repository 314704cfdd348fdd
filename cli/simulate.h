// The migration simulator: a deterministic, realistic stream of commands along
// the article's timeline (stores of every kind and subject, products, orders
// through their whole life, upgrades, syncs, qualifications and deposits,
// ApplyPolicy at the cutoffs, legacy settlements and withdrawals after the
// upgrade) with a share of commands that break rules on purpose.
#ifndef STORELEDGER_CLI_SIMULATE_H_
#define STORELEDGER_CLI_SIMULATE_H_

#include <cstdint>
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

// Id of the i-th legacy store and of the WeChat Store it upgrades into.
std::string SimulatedStoreId(int i);
std::string SimulatedUpgradeTargetId(int i);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_SIMULATE_H_
