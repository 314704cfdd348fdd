// The ledger the replay and recovery benchmarks build, and what they share
// to build it: WeChat Stores (StoreWorkload) whose commands go through
// Ledger::ExecuteBatch with sync off (Fill), a ledger of N events in a
// directory made once and reused (PrepareStoresLedger), the load average
// each reports beside its figures (the machine is shared), and their flags'
// values.
#ifndef STORELEDGER_BENCH_BENCH_LEDGER_H_
#define STORELEDGER_BENCH_BENCH_LEDGER_H_

#include <errno.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/streams.h"
#include "ledger/group_commit.h"
#include "ledger/ledger.h"
#include "rocksdb/db.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

inline absl::Time China(int month, int day) {
  return absl::FromCivil(absl::CivilSecond(2024, month, day, 0, 0, 0),
                         absl::FixedTimeZone(8 * 3600));
}

// A benchmark's set-up has no way around an error: names it and exits 1.
inline void Check(const absl::Status& status, absl::string_view what) {
  if (!status.ok()) {
    std::cerr << program_invocation_short_name << ": " << what << ": " << status
              << "\n";
    std::exit(1);
  }
}

// Commands for one WeChat Store, generated as needed: open, qualify, pay the
// deposit, add and list products, then orders through their whole life
// (place, pay, ship, settle) with a withdrawal every 50 orders.
class StoreWorkload {
 public:
  explicit StoreWorkload(std::string store_id) : store_(std::move(store_id)) {}

  v1::Command Next(absl::Time at) {
    v1::Command c;
    c.set_command_id(absl::StrCat(store_, "-", ++count_));
    *c.mutable_occurred_at() = ToProto(at);
    if (step_ == 0) {
      auto* open = c.mutable_open_store();
      open->set_store_id(store_);
      open->set_merchant_id("m-" + store_);
      open->set_kind(v1::WECHAT_STORE);
      open->set_subject(v1::ENTERPRISE);
    } else if (step_ == 1) {
      auto* grant = c.mutable_grant_category_qualification();
      grant->set_store_id(store_);
      grant->set_category_id("cat-1");
    } else if (step_ == 2) {
      auto* deposit = c.mutable_pay_deposit();
      deposit->set_store_id(store_);
      deposit->set_category_id("cat-1");
      deposit->set_amount_fen(50000);
    } else if (step_ < 3 + kProducts) {
      auto* add = c.mutable_add_product();
      add->set_store_id(store_);
      add->set_product_id(absl::StrCat("p", step_ - 2));
      add->set_kind(v1::PHYSICAL);
      add->set_origin(v1::OWN);
      add->set_category_id("cat-1");
      add->set_price_fen(1000);
    } else if (step_ < 3 + 2 * kProducts) {
      auto* list = c.mutable_list_product();
      list->set_store_id(store_);
      list->set_product_id(absl::StrCat("p", step_ - 2 - kProducts));
    } else {
      OrderStep(&c);
    }
    ++step_;
    return c;
  }

 private:
  static constexpr int kProducts = 5;
  static constexpr int kOrdersPerWithdrawal = 50;

  void OrderStep(v1::Command* c) {
    const std::string order = absl::StrCat("o-", store_, "-", order_);
    switch (phase_) {
      case 0: {
        auto* place = c->mutable_place_order();
        place->set_store_id(store_);
        place->set_order_id(order);
        auto* line = place->add_lines();
        line->set_product_id(absl::StrCat("p", order_ % kProducts + 1));
        line->set_quantity(1);
        line->set_unit_price_fen(1000);
        break;
      }
      case 1: {
        auto* pay = c->mutable_pay_order();
        pay->set_store_id(store_);
        pay->set_order_id(order);
        pay->set_amount_fen(1000);
        break;
      }
      case 2: {
        auto* ship = c->mutable_ship_order();
        ship->set_store_id(store_);
        ship->set_order_id(order);
        break;
      }
      case 3: {
        auto* settle = c->mutable_settle_order();
        settle->set_store_id(store_);
        settle->set_order_id(order);
        settle->set_commission_fen(50);
        break;
      }
      case 4: {
        auto* request = c->mutable_request_withdrawal();
        request->set_store_id(store_);
        request->set_withdrawal_id(absl::StrCat("w-", store_, "-", order_));
        request->set_amount_fen(950 * kOrdersPerWithdrawal);
        break;
      }
      case 5: {
        auto* complete = c->mutable_complete_withdrawal();
        complete->set_store_id(store_);
        complete->set_withdrawal_id(absl::StrCat("w-", store_, "-", order_));
        break;
      }
    }
    ++phase_;
    const bool withdraw = (order_ + 1) % kOrdersPerWithdrawal == 0;
    if (phase_ == 4 && !withdraw) phase_ = 6;
    if (phase_ == 6) {
      phase_ = 0;
      ++order_;
    }
  }

  std::string store_;
  int64_t count_ = 0;
  int step_ = 0;
  int phase_ = 0;
  int64_t order_ = 0;
};

// The ledger in `dir` (created if missing) with sync off: for building and
// reading a benchmark's ledger, never for what it measures.
inline std::unique_ptr<Ledger> OpenLedger(const std::string& dir) {
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir, options);
  Check(ledger.status(), "open ledger");
  return *std::move(ledger);
}

// Runs commands until the log holds `events` more events; prints progress.
// Commands go through Ledger::ExecuteBatch in chunks of kGroupCommandsMax:
// the group-commit path, one WriteBatch per group, sync=false (see
// OpenLedger) -- the benchmark's setup only, so that a 10^7-event ledger
// can be built in minutes. Every command is still decided and evolved, and
// its projections written inline, exactly as `apply` does.
template <typename Next>
void Fill(Ledger& ledger, uint64_t events, absl::string_view label, Next next) {
  const uint64_t start = ledger.log().head().position;
  const absl::Time began = absl::Now();
  absl::Time last_report = began;
  uint64_t rejected = 0;
  while (ledger.log().head().position - start < events) {
    // A command produces one or two events here: the log ends at most one
    // chunk past `events`.
    const uint64_t left = events - (ledger.log().head().position - start);
    std::vector<v1::Command> chunk;
    const uint64_t n = std::min<uint64_t>(left, kGroupCommandsMax);
    chunk.reserve(n);
    for (uint64_t i = 0; i < n; ++i) chunk.push_back(next());
    for (absl::StatusOr<v1::CommandResult>& result :
         ledger.ExecuteBatch(std::move(chunk))) {
      Check(result.status(), "execute");
      if (result->status() != v1::ACCEPTED) {
        if (++rejected <= 3) {
          std::cerr << program_invocation_short_name
                    << ": unexpected rejection: " << result->rule() << " "
                    << result->message() << "\n";
        }
      }
    }
    if (absl::Now() - last_report > absl::Seconds(10)) {
      last_report = absl::Now();
      std::cerr << absl::StrFormat("  %s: %d/%d events\n", label,
                                   ledger.log().head().position - start,
                                   events);
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - began);
  std::cout << absl::StrFormat(
      "built %s: %d events in %.1f s (%.0f events/s through ExecuteBatch, "
      "sync=false), %d rejected\n",
      label, ledger.log().head().position - start, seconds,
      (ledger.log().head().position - start) / seconds, rejected);
}

// The value of flag argv[i] (argv[i + 1]; i moves past it); exits 2 naming
// the flag when there is none.
inline std::string FlagValue(int argc, char** argv, int& i) {
  if (i + 1 >= argc) {
    std::cerr << argv[i] << " needs a value\n";
    std::exit(2);
  }
  return argv[++i];
}

// The 1-minute load average (the machine is shared).
inline double LoadAverage() {
  double load[1] = {0};
  return getloadavg(load, 1) == 1 ? load[0] : -1;
}

// Leaves in `dir` a ledger of at least `events` events: the one already
// there when `reuse` and it holds enough (it is kept as it is), else a new
// one of `stores` WeChat Stores (StoreWorkload "w000000", ...), its
// memtables flushed. Returns the head.
inline uint64_t PrepareStoresLedger(const std::string& dir, uint64_t events,
                                    int stores, bool reuse) {
  if (reuse && std::filesystem::exists(dir)) {
    std::unique_ptr<Ledger> ledger = OpenLedger(dir);
    const uint64_t head = ledger->log().head().position;
    const bool build = head < events;
    std::cout << "reusing the ledger in " << dir << " (" << head << " events)"
              << (build ? ": too short, rebuilding it" : "") << "\n";
    if (!build) return head;
    ledger.reset();
    std::filesystem::remove_all(dir);
  }
  std::unique_ptr<Ledger> ledger = OpenLedger(dir);
  std::vector<StoreWorkload> workloads;
  for (int i = 0; i < stores; ++i) {
    workloads.emplace_back(absl::StrFormat("w%06d", i));
  }
  absl::Time at = China(9, 1);
  size_t next = 0;
  Fill(*ledger, events, "ledger", [&] {
    at += absl::Seconds(1);
    v1::Command c = workloads[next].Next(at);
    next = (next + 1) % workloads.size();
    return c;
  });
  // Flush memtables so that every measurement reads SST files.
  Check(
      ledger->log()
              .db()
              ->Flush(rocksdb::FlushOptions(), {ledger->log().events_cf(),
                                                ledger->log().projections_cf(),
                                                ledger->log().streams_cf()})
              .ok()
          ? absl::OkStatus()
          : absl::InternalError("flush"),
      "flush");
  return ledger->log().head().position;
}

}  // namespace storeledger

#endif  // STORELEDGER_BENCH_BENCH_LEDGER_H_
