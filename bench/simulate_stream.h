// The simulate stream as the benchmarks run it: written ahead of the run, so
// the withdrawals the simulator sizes from the live balance get fixed
// amounts. storeledger-bench and storeledger-json-bench measure this one
// stream (120,536 commands for 2000 stores, seed 1).
#ifndef STORELEDGER_BENCH_SIMULATE_STREAM_H_
#define STORELEDGER_BENCH_SIMULATE_STREAM_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "cli/simulate.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// The fixed amounts: a modest one (usually accepted) and one no store has
// (refused by R14, as the simulator intends).
inline constexpr int64_t kWithdrawAllFen = 100;
inline constexpr int64_t kWithdrawTooMuchFen = 1'000'000'000'000;

// PlanMigration(stores, seed)'s commands in order, withdrawals fixed.
inline std::vector<v1::Command> SimulateStreamWrittenAhead(int stores,
                                                           uint64_t seed) {
  std::vector<v1::Command> commands;
  for (SimulatedStep& step : PlanMigration(stores, seed)) {
    v1::Command& command = step.command;
    if (command.has_request_withdrawal()) {
      if (step.amount == SimulatedStep::Amount::kAll) {
        command.mutable_request_withdrawal()->set_amount_fen(kWithdrawAllFen);
      } else if (step.amount == SimulatedStep::Amount::kTooMuch) {
        command.mutable_request_withdrawal()->set_amount_fen(
            kWithdrawTooMuchFen);
      }
    }
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace storeledger

#endif  // STORELEDGER_BENCH_SIMULATE_STREAM_H_
