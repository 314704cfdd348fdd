// storeledger-replay-bench: the replay side of the ledger, measured.
//
//   1. Rebuild rate (events/s) of `rebuild --shadow` against a raw RocksDB
//      scan of the same events column family in the same run, and the peak
//      RSS of the rebuild (the real CLI, run as a child process); and a
//      caught-up reader's EventLog::Scan per call (nothing, or one event,
//      after its position) against a raw RocksDB seek to the same key.
//   2. As-of query latency (p50 / p99) for stores with 10^3, 10^5, 10^6
//      events, with snapshots and (for comparison) folding from the first
//      event.
//
// Ledgers are built through Ledger::ExecuteBatch (group commit) with
// sync=false: the path of `apply`, without waiting for the disk -- a setup
// shortcut of this benchmark only.
//
// usage: storeledger-replay-bench [--dir DIR] [--events N] [--stores S]
//            [--store-events 1000,100000,1000000] [--queries Q] [--keep]
//            [--reuse] [--build-only] [--rebuild-modes
//            pipelined|one-thread|both] [--rebuild-repeat N]
// --store-events "" skips the as-of part; --events 0 skips the rebuild part.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_ledger.h"
#include "core/evolve.h"
#include "core/policy.h"
#include "core/streams.h"
#include "ledger/ledger.h"
#include "replay/rebuild.h"
#include "replay/snapshots.h"
#include "replay/store_view.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"

extern char** environ;

namespace storeledger {
namespace {

// A store with a long history and a bounded state: products listed and
// delisted over and over, and small deposits.
class TogglingWorkload {
 public:
  explicit TogglingWorkload(std::string store_id)
      : store_(std::move(store_id)) {}

  v1::Command Next(absl::Time at) {
    v1::Command c;
    c.set_command_id(absl::StrCat(store_, "-", ++count_));
    *c.mutable_occurred_at() = ToProto(at);
    if (count_ == 1) {
      auto* open = c.mutable_open_store();
      open->set_store_id(store_);
      open->set_merchant_id("m-" + store_);
      open->set_kind(v1::WECHAT_STORE);
      open->set_subject(v1::ENTERPRISE);
    } else if (count_ == 2) {
      auto* grant = c.mutable_grant_category_qualification();
      grant->set_store_id(store_);
      grant->set_category_id("cat-1");
    } else if (count_ == 3) {
      Deposit(&c, 50000);  // R3: the category deposit, before any listing
    } else if (count_ <= 3 + kProducts) {
      auto* add = c.mutable_add_product();
      add->set_store_id(store_);
      add->set_product_id(absl::StrCat("p", count_ - 3));
      add->set_kind(v1::PHYSICAL);
      add->set_origin(v1::OWN);
      add->set_category_id("cat-1");
      add->set_price_fen(1000);
    } else {
      const int64_t cycle = (count_ - 4 - kProducts) % (2 * kProducts + 1);
      if (cycle == 2 * kProducts) {
        Deposit(&c, 100);
      } else if (cycle < kProducts) {
        auto* list = c.mutable_list_product();
        list->set_store_id(store_);
        list->set_product_id(absl::StrCat("p", cycle + 1));
      } else {
        auto* delist = c.mutable_delist_product();
        delist->set_store_id(store_);
        delist->set_product_id(absl::StrCat("p", cycle - kProducts + 1));
      }
    }
    return c;
  }

 private:
  static constexpr int kProducts = 8;
  void Deposit(v1::Command* c, int64_t amount_fen) {
    auto* deposit = c->mutable_pay_deposit();
    deposit->set_store_id(store_);
    deposit->set_category_id("cat-1");
    deposit->set_amount_fen(amount_fen);
  }
  std::string store_;
  int64_t count_ = 0;
};

// Peak RSS (KiB) and wall time of the real CLI doing `args`.
//
// posix_spawn starts the child in its parent's address space (vfork), and
// Linux counts the high-water RSS of that address space into the child's
// ru_maxrss when it execs: spawned straight from this benchmark (hundreds of
// MiB by then), the child would report our peak, not its own. So RunChild
// spawns a fresh copy of this binary (--measure-child: a few MiB), which
// spawns the CLI and reports its rusage through a file.
struct ChildRun {
  int exit_code = -1;
  long max_rss_kib = 0;
  double seconds = 0;
};
ChildRun RunChildDirect(const std::vector<std::string>& args) {
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (std::string& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const absl::Time began = absl::Now();
  ChildRun run;
  // Its summary line is not ours to print.
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null",
                                   O_WRONLY, 0);
  const int spawned =
      posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) return run;
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  run.seconds = absl::ToDoubleSeconds(absl::Now() - began);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.max_rss_kib = usage.ru_maxrss;
  return run;
}

std::string SelfDir();

ChildRun RunChild(const std::vector<std::string>& args) {
  const std::string report =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/storeledger-replay-bench-child-", getpid());
  std::vector<std::string> helper = {SelfDir() + "/storeledger-replay-bench",
                                     "--measure-child", report};
  helper.insert(helper.end(), args.begin(), args.end());
  const absl::Time began = absl::Now();
  ChildRun run;
  if (RunChildDirect(helper).exit_code != 0) return run;
  run.seconds = absl::ToDoubleSeconds(absl::Now() - began);
  std::ifstream in(report);
  in >> run.exit_code >> run.max_rss_kib;
  std::filesystem::remove(report);
  return run;
}

// --measure-child REPORT ARGS...: runs ARGS, writes "exit_code max_rss_kib".
int MeasureChild(int argc, char** argv) {
  std::vector<std::string> args(argv + 3, argv + argc);
  const ChildRun run = RunChildDirect(args);
  std::ofstream out(argv[2]);
  out << run.exit_code << " " << run.max_rss_kib << "\n";
  return out.good() ? 0 : 1;
}

// User + system CPU time of this process so far (every thread).
double ProcessCpuSeconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::string SelfDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

void BenchRebuild(const std::string& dir, uint64_t events, int stores,
                  bool reuse, bool build_only, int rebuild_modes,
                  int rebuild_repeat) {
  std::cout << "\n== rebuild: " << events << " events, " << stores
            << " stores\n";
  PrepareStoresLedger(dir, events, stores, reuse);
  if (build_only) return;
  std::unique_ptr<Ledger> ledger = OpenLedger(dir);
  EventLog* log = ledger->mutable_log();
  const uint64_t total = log->head().position;

  // Every phase below reports wall time, the CPU time of the whole process
  // (all threads, RocksDB's included) and the 1-minute load average: on a
  // shared machine the wall rates move with the load, the ratios measured in
  // the same run much less.
  struct Phase {
    double seconds = 0, cpu_seconds = 0;
  };
  auto measure = [&](absl::string_view label, uint64_t n, auto fn) {
    const double cpu_before = ProcessCpuSeconds();
    const absl::Time began = absl::Now();
    fn();
    Phase phase;
    phase.seconds = absl::ToDoubleSeconds(absl::Now() - began);
    phase.cpu_seconds = ProcessCpuSeconds() - cpu_before;
    std::cout << absl::StrFormat(
        "%-52s %8.3f s wall %8.3f s CPU  %9.0f events/s  %9.0f events/CPU-s  "
        "load %.2f\n",
        label, phase.seconds, phase.cpu_seconds, n / phase.seconds,
        n / phase.cpu_seconds, LoadAverage());
    return phase;
  };
  // Raw RocksDB scan of the events column family: the floor. Run first and
  // last; the ratios use the faster of the two.
  auto raw_scan = [&] {
    std::unique_ptr<rocksdb::Iterator> it(
        log->db()->NewIterator(rocksdb::ReadOptions(), log->events_cf()));
    uint64_t n = 0, bytes = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      bytes += it->key().size() + it->value().size();
      ++n;
    }
    Check(n == total ? absl::OkStatus() : absl::InternalError("raw scan"),
          "raw scan count");
    return bytes;
  };
  uint64_t raw_bytes = 0;
  const Phase raw1 = measure("raw RocksDB scan of the events CF (1)", total,
                             [&] { raw_bytes = raw_scan(); });
  std::cout << absl::StrFormat("  (%.1f MB of keys and envelopes)\n",
                               raw_bytes / 1e6);
  // A caught-up reader's Scan (a feed's: nothing, or the one event after
  // its position) against a raw RocksDB iterator seeking the same key and
  // reading what is there, per call.
  constexpr int kCalls = 100'000;
  for (const uint64_t after : {total, total - 1}) {
    auto per_call_ns = [&](auto call) {
      const absl::Time began = absl::Now();
      for (int i = 0; i < kCalls; ++i) call();
      return absl::ToDoubleNanoseconds(absl::Now() - began) / kCalls;
    };
    uint64_t seen = 0;
    const double scan_ns = per_call_ns([&] {
      Check(log->Scan(after,
                      [&](const v1::Envelope&, absl::string_view) {
                        ++seen;
                        return true;
                      }),
            "scan from the head");
    });
    const std::string from = PositionKey(after + 1);
    const double raw_ns = per_call_ns([&] {
      std::unique_ptr<rocksdb::Iterator> it(
          log->db()->NewIterator(rocksdb::ReadOptions(), log->events_cf()));
      for (it->Seek(from); it->Valid(); it->Next()) {
        seen += !it->value().empty();
      }
    });
    Check(seen == 2 * kCalls * (total - after)
              ? absl::OkStatus()
              : absl::InternalError(absl::StrCat("saw ", seen)),
          "scan from the head count");
    std::cout << absl::StrFormat(
        "RATIO Scan after head-%d, per call: %.0f ns, raw RocksDB seek %.0f "
        "ns: %.2fx raw\n",
        static_cast<int>(total - after), scan_ns, raw_ns, scan_ns / raw_ns);
  }
  // Rebuild in process (shadow: compare only), pipelined (the default: the
  // log verified on a second thread) and on one thread. First, while the
  // heap is fresh: the attribution phases below leave it fragmented.
  std::vector<std::pair<std::string, Phase>> rebuilds;
  for (int repeat = 0; repeat < rebuild_repeat; ++repeat) {
    for (const bool second_thread : {true, false}) {
      if (!(second_thread ? rebuild_modes & 1 : rebuild_modes & 2)) continue;
      if (!rebuilds.empty()) {
        // The previous run's shadow files, compacted away now rather than by
        // a background compaction during the next measurement.
        Check(log->db()
                      ->CompactRange(rocksdb::CompactRangeOptions(),
                                     log->projections_cf(), nullptr, nullptr)
                      .ok()
                  ? absl::OkStatus()
                  : absl::InternalError("compact"),
              "compact");
      }
      RebuildOptions options;
      options.shadow_only = true;
      options.verify_on_second_thread = second_thread;
      RebuildOptions::Stats stats;
      options.stats = &stats;
      absl::StatusOr<v1::RebuildSummary> summary;
      const std::string label = second_thread
                                    ? "rebuild --shadow, verify on a 2nd thread"
                                    : "rebuild --shadow, one thread";
      const Phase all = measure(label + " (all)", total, [&] {
        summary = Rebuild(log, options);
        Check(summary.status(), "rebuild");
      });
      std::cout << absl::StrFormat(
          "  replay phase %.3f s = %.0f events/s, %.3f s CPU = %.0f "
          "events/CPU-s; compare of %d keys %.3f s; %d differences; %d shadow "
          "puts, %d records read back, at most %d records in memory, filter "
          "%.1f MiB\n",
          stats.replay_seconds, total / stats.replay_seconds,
          stats.replay_cpu_seconds, total / stats.replay_cpu_seconds,
          summary->records_rebuilt(), all.seconds - stats.replay_seconds,
          summary->differences(), stats.shadow_keys_written, stats.reads_back,
          stats.cached_records_max, stats.filter_bytes / 1048576.0);
      Phase replay;
      replay.seconds = stats.replay_seconds;
      rebuilds.emplace_back(label, replay);
    }
  }
  // The log's verified scan (hash of every envelope, chain, contiguity).
  measure("EventLog::Scan (parse + SHA-256 + chain)", total, [&] {
    Check(log->Scan(
              0, [&](const v1::Envelope&, absl::string_view) { return true; }),
          "scan");
  });
  // Scan + Evolve into one in-memory overlay (no flushes, memory unbounded):
  // what the fold itself costs, to attribute the rebuild's time.
  measure("Scan + EvolveEnvelope into memory, no writes", total, [&] {
    StateOverlay state(&EmptyState());
    absl::Status evolve_status;
    Check(log->Scan(0,
                    [&](const v1::Envelope& envelope, absl::string_view) {
                      evolve_status = EvolveEnvelope(envelope, &state);
                      return evolve_status.ok();
                    }),
          "scan");
    Check(evolve_status, "evolve");
  });
  const Phase raw2 = measure("raw RocksDB scan of the events CF (2)", total,
                             [&] { raw_scan(); });
  // The faster of the two: a scan that had to read from the disk (a cold
  // page cache) is not the floor this compares against.
  const double raw_seconds = std::min(raw1.seconds, raw2.seconds);
  for (const auto& [label, replay] : rebuilds) {
    std::cout << absl::StrFormat(
        "RATIO %s: replay %.0f events/s, raw scan %.0f events/s: raw scan "
        "is %.2fx faster\n",
        label, total / replay.seconds, total / raw_seconds,
        replay.seconds / raw_seconds);
  }
  // Leave nothing for the child to replay from the WAL at open.
  Check(log->db()
                ->Flush(rocksdb::FlushOptions(),
                        {log->events_cf(), log->projections_cf()})
                .ok()
            ? absl::OkStatus()
            : absl::InternalError("flush"),
        "flush");
  ledger.reset();
  // The real CLI as a child process: wall time and peak RSS.
  ChildRun child = RunChild({SelfDir() + "/storeledger", "--db", dir, "rebuild",
                             "--shadow", "--no-progress"});
  std::cout << absl::StrFormat(
      "storeledger rebuild --shadow (child process): exit %d, %.2f s wall "
      "(%.0f events/s end to end), peak RSS %.1f MiB, load %.2f\n",
      child.exit_code, child.seconds, total / child.seconds,
      child.max_rss_kib / 1024.0, LoadAverage());
}

struct Latency {
  double p50_us = 0, p99_us = 0, max_us = 0;
};
Latency Percentiles(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  Latency l;
  if (us.empty()) return l;
  l.p50_us = us[us.size() / 2];
  l.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  l.max_us = us.back();
  return l;
}

void BenchAsOf(const std::string& dir, const std::vector<uint64_t>& sizes,
               int queries) {
  std::cout << "\n== as-of latency (FoldStoreState, random business times "
               "over the store's history), K = "
            << kSnapshotEveryEventsDefault << "\n";
  std::unique_ptr<Ledger> ledger = OpenLedger(dir);
  struct Target {
    std::string store;
    uint64_t events;
    absl::Time first, last;
  };
  std::vector<Target> targets;
  for (uint64_t size : sizes) {
    for (const char* shape : {"toggle", "orders"}) {
      Target t;
      t.store = absl::StrCat(shape, "-", size);
      t.events = size;
      t.first = China(9, 1);
      absl::Time at = t.first;
      if (std::string(shape) == "toggle") {
        TogglingWorkload workload(t.store);
        Fill(*ledger, size, t.store, [&] {
          at += absl::Seconds(1);
          return workload.Next(at);
        });
      } else {
        StoreWorkload workload(t.store);
        Fill(*ledger, size, t.store, [&] {
          at += absl::Seconds(1);
          return workload.Next(at);
        });
      }
      t.last = at;
      targets.push_back(t);
    }
  }
  std::mt19937_64 rng(42);
  std::cout << absl::StrFormat("%-16s %10s %10s %12s %12s %12s %14s %14s\n",
                               "store", "events", "records", "p50 us", "p99 us",
                               "max us", "no-snap p50 us", "no-snap max us");
  for (const Target& t : targets) {
    std::vector<absl::Time> times;
    for (int i = 0; i < queries; ++i) {
      const int64_t span = absl::ToInt64Seconds(t.last - t.first);
      times.push_back(
          t.first +
          absl::Seconds(std::uniform_int_distribution<int64_t>(1, span)(rng)));
    }
    std::vector<double> with, without;
    size_t records = 0;
    for (absl::Time at : times) {
      AsOf as_of;
      as_of.business_time = at;
      const absl::Time began = absl::Now();
      absl::StatusOr<v1::StoreState> state =
          FoldStoreState(ledger->log(), t.store, as_of, at, ledger->policy());
      with.push_back(absl::ToDoubleMicroseconds(absl::Now() - began));
      Check(state.status(), "as-of query");
      records = std::max<size_t>(records, state->products_size() +
                                              state->orders_size() +
                                              state->withdrawals_size());
    }
    // Without snapshots: a fold from the first event. Few queries for big
    // stores (each is a walk of the whole prefix).
    const int slow_queries = t.events >= 1'000'000 ? 3
                             : t.events >= 100'000 ? 10
                                                   : queries;
    {
      // The same query folded from the store's first event, as
      // FoldStoreState would without snapshots.
      for (int i = 0; i < slow_queries; ++i) {
        const absl::Time at = times[i];
        const absl::Time began = absl::Now();
        StateOverlay state(&EmptyState());
        absl::Status evolve_status;
        Check(ledger->log().ScanStream(StoreStream(t.store), 0,
                                       [&](const v1::Envelope& e) {
                                         if (ToTime(e.occurred_at()) > at)
                                           return false;
                                         evolve_status =
                                             EvolveEnvelope(e, &state);
                                         return evolve_status.ok();
                                       }),
              "fold");
        Check(evolve_status, "evolve");
        Check(BuildStoreState(state, t.store, at, ledger->policy()).status(),
              "build");
        without.push_back(absl::ToDoubleMicroseconds(absl::Now() - began));
      }
    }
    const Latency a = Percentiles(with), b = Percentiles(without);
    std::cout << absl::StrFormat(
        "%-16s %10d %10d %12.0f %12.0f %12.0f %14.0f %14.0f\n", t.store,
        t.events, records, a.p50_us, a.p99_us, a.max_us, b.p50_us, b.max_us);
  }
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  using namespace storeledger;
  if (argc > 3 && std::string(argv[1]) == "--measure-child") {
    return MeasureChild(argc, argv);
  }
  std::string dir;
  uint64_t events = 1'000'000;
  std::vector<uint64_t> sizes = {1'000, 100'000, 1'000'000};
  int queries = 200;
  int stores = 1000;
  bool keep = false;
  bool reuse = false;
  bool build_only = false;
  int rebuild_modes = 3;  // 1: pipelined, 2: one thread, 3: both
  int rebuild_repeat = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return FlagValue(argc, argv, i); };
    if (arg == "--dir") {
      dir = value();
    } else if (arg == "--events") {
      if (!absl::SimpleAtoi(value(), &events)) std::exit(2);
    } else if (arg == "--stores") {
      if (!absl::SimpleAtoi(value(), &stores) || stores < 1) std::exit(2);
    } else if (arg == "--queries") {
      if (!absl::SimpleAtoi(value(), &queries) || queries < 1) std::exit(2);
    } else if (arg == "--store-events") {
      sizes.clear();
      for (absl::string_view s :
           absl::StrSplit(value(), ',', absl::SkipEmpty())) {
        uint64_t n;
        if (!absl::SimpleAtoi(s, &n)) std::exit(2);
        sizes.push_back(n);
      }
    } else if (arg == "--keep") {
      keep = true;
    } else if (arg == "--rebuild-modes") {
      const std::string mode = value();
      rebuild_modes = mode == "pipelined" ? 1 : mode == "one-thread" ? 2 : 3;
    } else if (arg == "--rebuild-repeat") {
      // Measure the rebuild so many times in a row (a shared machine's
      // noise is seen in the spread).
      if (!absl::SimpleAtoi(value(), &rebuild_repeat) || rebuild_repeat < 1) {
        std::exit(2);
      }
    } else if (arg == "--build-only") {
      // Build (or keep) the rebuild ledger and stop: with --reuse, a later
      // run measures it.
      build_only = true;
    } else if (arg == "--reuse") {
      // Keep and reuse the rebuild ledger of an earlier --keep run in --dir
      // (when it holds at least --events events): measure without building.
      reuse = true;
      keep = true;
    } else {
      std::cerr << "usage: storeledger-replay-bench [--dir DIR] [--events N] "
                   "[--stores S] [--store-events A,B,C] [--queries Q] [--keep] "
                   "[--reuse] [--build-only] [--rebuild-modes "
                   "pipelined|one-thread|both] [--rebuild-repeat N]\n";
      return 2;
    }
  }
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() /
           absl::StrCat("storeledger-replay-bench-", getpid()))
              .string();
  }
  if (!reuse) std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::cout << "storeledger-replay-bench in " << dir << "\n";
  if (events > 0) {
    BenchRebuild(dir + "/rebuild", events, stores, reuse, build_only,
                 rebuild_modes, rebuild_repeat);
  }
  if (build_only) return 0;
  if (reuse) std::filesystem::remove_all(dir + "/asof");
  if (!sizes.empty()) BenchAsOf(dir + "/asof", sizes, queries);
  if (!keep) std::filesystem::remove_all(dir);
  return 0;
}
