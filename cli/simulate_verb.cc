// storeledger simulate --stores N [--seed S]: runs PlanMigration through
// Ledger::ExecuteBatch (the path `apply` uses after parsing) and prints a
// summary.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "cli/cli.h"
#include "cli/simulate.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

struct KindTotals {
  int stores_open = 0;
  int stores_upgraded = 0;
  v1::Balances money;
};

void AddBalances(const v1::Balances& b, v1::Balances* total) {
  total->set_pending_fen(total->pending_fen() + b.pending_fen());
  total->set_available_fen(total->available_fen() + b.available_fen());
  total->set_withdrawing_fen(total->withdrawing_fen() + b.withdrawing_fen());
  total->set_paid_out_fen(total->paid_out_fen() + b.paid_out_fen());
  total->set_deposit_fen(total->deposit_fen() + b.deposit_fen());
}

// recorded_at on the simulated timeline, so that "what did the ledger know
// then" has an answer on a simulated ledger: each command is recorded a few
// seconds after it occurred (as a live ledger learns of it), never before
// the command recorded before it. The delay comes from the command id, so
// the same plan gives the same log, byte for byte.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(absl::Time recorded_before)
      : last_(recorded_before) {}

  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return last_;
  }

  absl::Time RecordedAt(const v1::Command& command) const override {
    uint64_t hash = 14695981039346656037ull;  // FNV-1a: stable everywhere
    for (unsigned char c : command.command_id()) {
      hash = (hash ^ c) * 1099511628211ull;
    }
    const absl::Duration delay =
        kRecordDelayMin + absl::Milliseconds(hash % kRecordDelaySpreadMs);
    absl::MutexLock lock(&mu_);
    last_ = std::max(last_, ToTime(command.occurred_at()) + delay);
    return last_;
  }

 private:
  static constexpr absl::Duration kRecordDelayMin = absl::Milliseconds(500);
  static constexpr uint64_t kRecordDelaySpreadMs = 4'500;
  mutable absl::Mutex mu_;
  mutable absl::Time last_;
};

}  // namespace

int SimulateVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<std::optional<uint64_t>> stores = ctx.flags.GetUint("stores");
  if (!stores.ok()) return ctx.Fail(stores.status());
  absl::StatusOr<std::optional<uint64_t>> seed = ctx.flags.GetUint("seed");
  if (!seed.ok()) return ctx.Fail(seed.status());
  if (!stores->has_value() || **stores < 1 ||
      **stores > static_cast<uint64_t>(kSimulateStoresMax)) {
    return ctx.Fail(absl::InvalidArgumentError(
        absl::StrFormat("--stores N is required, 1..%d", kSimulateStoresMax)));
  }
  const int store_count = static_cast<int>(**stores);
  // The simulated clock starts after whatever the ledger already recorded.
  absl::Time recorded_before = absl::InfinitePast();
  {
    absl::StatusOr<std::unique_ptr<Ledger>> existing = ctx.OpenLedger(false);
    if (!existing.ok()) return ctx.Fail(existing.status());
    const uint64_t head = (*existing)->log().head().position;
    if (head > 0 && !ctx.flags.Has("append")) {
      return ctx.Fail(absl::FailedPreconditionError(absl::StrCat(
          "the ledger at ", ctx.flags.GetOr("db", "./storeledger-data"),
          " already holds ", head,
          " events; simulate into an empty --db, or pass --append to add "
          "the simulation to them")));
    }
    if (head > 0) {
      absl::StatusOr<v1::Envelope> last = (*existing)->log().Read(head);
      if (!last.ok()) return ctx.Fail(last.status());
      recorded_before = ToTime(last->recorded_at());
    }
  }
  const SimulatedClock simulated_clock(recorded_before);
  CliContext simulated = ctx;
  simulated.clock = &simulated_clock;
  absl::StatusOr<std::unique_ptr<Ledger>> opened = simulated.OpenLedger(false);
  if (!opened.ok()) return ctx.Fail(opened.status());
  Ledger& ledger = **opened;

  const std::vector<SimulatedStep> steps =
      PlanMigration(store_count, seed->value_or(1));
  const bool progress = !ctx.flags.Has("no-progress") &&
                        ctx.err == &std::cerr && isatty(STDERR_FILENO);
  const uint64_t first_position = ledger.log().head().position;
  std::map<std::string, int64_t> rejected_by_rule;
  int64_t accepted = 0, rejected = 0, replayed = 0, skipped = 0;
  SimulatedWithdrawals withdrawals;
  const absl::Time started = absl::Now();
  absl::Time last_progress = started;
  // Commands go to the ledger in batches (ExecuteBatch: group commit). A
  // withdrawal whose amount depends on the balance is decided after the
  // batch before it is durable, as the merchant would see it.
  std::vector<v1::Command> batch;
  auto execute = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    std::vector<absl::StatusOr<v1::CommandResult>> results =
        ledger.ExecuteBatch(std::move(batch));
    batch.clear();
    for (absl::StatusOr<v1::CommandResult>& result : results) {
      if (!result.ok()) return result.status();
      if (result->replayed()) ++replayed;
      if (result->status() == v1::ACCEPTED) {
        ++accepted;
      } else {
        ++rejected;
        ++rejected_by_rule[result->rule()];
      }
    }
    return absl::OkStatus();
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    int64_t available = 0;
    if (SimulatedWithdrawals::NeedsBalance(steps[i])) {
      if (absl::Status s = execute(); !s.ok()) return ctx.Fail(s);
      absl::StatusOr<v1::StoreState> state =
          ledger.State(steps[i].command.request_withdrawal().store_id());
      available = state.ok() ? state->balances().available_fen() : 0;
    }
    std::optional<v1::Command> command = withdrawals.Next(steps[i], available);
    if (!command.has_value()) {
      ++skipped;
      continue;
    }
    batch.push_back(*std::move(command));
    if (batch.size() >= kGroupCommandsMax) {
      if (absl::Status s = execute(); !s.ok()) return ctx.Fail(s);
    }
    if (progress && absl::Now() - last_progress > absl::Seconds(1)) {
      last_progress = absl::Now();
      *ctx.err << absl::StrFormat("\rsimulate: %d/%d commands", i + 1,
                                  steps.size())
               << std::flush;
    }
  }
  if (absl::Status s = execute(); !s.ok()) return ctx.Fail(s);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  if (progress) *ctx.err << "\r\033[K";
  const uint64_t events = ledger.log().head().position - first_position;

  // Stores by kind and status, money per kind: legacy and new never summed.
  ProjectionReader reader(&ledger.log());
  std::map<std::string, KindTotals> by_kind;
  std::string example_legacy, example_target;
  for (v1::StoreKind kind :
       {v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE}) {
    absl::StatusOr<std::vector<std::string>> ids = reader.StoreIds(kind);
    if (!ids.ok()) return ctx.Fail(ids.status());
    for (const std::string& id : *ids) {
      absl::StatusOr<RecordRef<StoreRecord>> store = reader.Store(id);
      if (!store.ok()) return ctx.Fail(store.status());
      if (*store == nullptr) continue;
      std::string label = v1::StoreKind_Name(kind);
      if (kind == v1::WECHAT_STORE) {
        label += (*store)->upgraded_from().empty() ? " (opened new)"
                                                   : " (upgraded into)";
      }
      KindTotals& totals = by_kind[label];
      if ((*store)->status() == v1::UPGRADED) {
        ++totals.stores_upgraded;
        if (example_legacy.empty() && (*store)->balances().paid_out_fen() > 0) {
          example_legacy = id;
          example_target = (*store)->upgraded_to();
        }
      } else {
        ++totals.stores_open;
      }
      AddBalances((*store)->balances(), &totals.money);
    }
  }

  std::ostream& out = *ctx.out;
  out << absl::StrFormat("simulate: %d stores, seed %d, %d commands planned\n",
                         store_count, seed->value_or(1), steps.size());
  out << absl::StrFormat(
      "commands: %d accepted, %d rejected, %d replayed, %d not sent\n",
      accepted, rejected, replayed, skipped);
  out << "rejected by rule:";
  for (const auto& [rule, n] : rejected_by_rule) out << " " << rule << "=" << n;
  out << "\n";
  out << absl::StrFormat("events appended: %d (log head %d)\n", events,
                         ledger.log().head().position);
  out << "amounts below: yuan (CNY), two decimals; balances and postings "
         "print fen unless --yuan\n";
  out << absl::StrFormat("%-30s %6s %9s %14s %14s %14s %14s %14s\n", "stores",
                         "open", "upgraded", "pending", "available",
                         "withdrawing", "paid out", "deposit");
  for (const auto& [label, t] : by_kind) {
    out << absl::StrFormat("%-30s %6d %9d %14s %14s %14s %14s %14s\n", label,
                           t.stores_open, t.stores_upgraded,
                           AmountText(t.money.pending_fen(), true),
                           AmountText(t.money.available_fen(), true),
                           AmountText(t.money.withdrawing_fen(), true),
                           AmountText(t.money.paid_out_fen(), true),
                           AmountText(t.money.deposit_fen(), true));
  }
  const double commands = static_cast<double>(accepted + rejected);
  out << absl::StrFormat(
      "throughput: %.0f commands/s, %.0f events/s (%.2f s, group commit of "
      "up to %d commands per synced append)\n",
      commands / seconds, static_cast<double>(events) / seconds, seconds,
      kGroupCommandsMax);
  if (!example_legacy.empty()) {
    out << "example upgrade: " << example_legacy << " -> " << example_target
        << "\n";
  }
  return kExitOk;
}

}  // namespace storeledger
