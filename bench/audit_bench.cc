// storeledger-audit-bench: builds a ledger of 10^6 events (by default) and
// times `audit` over it, at 10^5 events and again at 10^6, each time beside
// two baselines on the same database: a raw RocksDB iterator over the events
// column family, and EventLog::Scan (parse + hash + chain, what `verify`
// does). Each measurement runs in a fresh child process (this binary,
// re-executed), so its peak RSS (getrusage ru_maxrss) is its own and not the
// builder's; if audit's memory does not grow with the log, its peak RSS at
// 10^6 events stays near the one at 10^5.
//
//   storeledger-audit-bench [--events N] [--checkpoint N] [--dir DIR] [--keep]
//
// The ledger: WeChat Stores opened and run through Ledger::Execute (sync off)
// in round-robin windows of kWindowStores stores, so that store streams
// interleave in the log as they would in production. Each store: open,
// qualify, deposit, one product listed, kOrdersPerStore orders placed, paid,
// shipped and settled, one refused over-withdrawal (a rejection event), one
// withdrawal requested and completed.
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replay/audit.h"
#include "rocksdb/db.h"
#include "rocksdb/iterator.h"
#include "rocksdb/options.h"
#include "storage/event_log.h"

namespace storeledger {
namespace {

constexpr uint64_t kEventsDefault = 1'000'000;
constexpr uint64_t kCheckpointDefault = 100'000;
constexpr int kWindowStores = 1000;
constexpr int kOrdersPerStore = 10;
constexpr int64_t kPriceFen = 10'000;
constexpr int64_t kCommissionFen = 500;
constexpr int64_t kDepositFen = 50'000;  // the default policy's requirement

// User + system CPU seconds of this process: on a shared machine, wall time
// also counts other processes' turns.
double CpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

int64_t PeakRssKb() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;  // kilobytes on Linux
}

[[noreturn]] void Die(const absl::Status& status) {
  std::cerr << "storeledger-audit-bench: " << status << "\n";
  std::exit(1);
}

// ------------------------------------------------------------------ builder

// The commands of one store, step by step; each store's business time only
// moves forward (R0).
class StoreScript {
 public:
  explicit StoreScript(int index)
      : id_(absl::StrFormat("b%06d", index)),
        at_(absl::FromCivil(absl::CivilMinute(2024, 9, 1, 0, 0),
                            absl::FixedTimeZone(8 * 3600)) +
            absl::Seconds(index)) {}

  static int Steps() { return 6 + 4 * kOrdersPerStore + 3; }

  v1::Command Step(int step) {
    at_ += absl::Minutes(1);
    std::string body;
    const int order = (step - 6) / 4 + 1;
    if (step == 0) {
      body = absl::StrCat(R"("openStore":{"storeId":")", id_,
                          R"(","merchantId":"m)", id_,
                          R"(","kind":"WECHAT_STORE","subject":"ENTERPRISE"})");
    } else if (step == 1) {
      body = absl::StrCat(R"("grantCategoryQualification":{"storeId":")", id_,
                          R"(","categoryId":"cat-1"})");
    } else if (step == 2) {
      body = absl::StrCat(R"("payDeposit":{"storeId":")", id_,
                          R"(","categoryId":"cat-1","amountFen":)", kDepositFen,
                          "}");
    } else if (step == 3) {
      body = absl::StrCat(
          R"("addProduct":{"storeId":")", id_,
          R"(","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":)",
          kPriceFen, "}");
    } else if (step == 4) {
      body = absl::StrCat(R"("listProduct":{"storeId":")", id_,
                          R"(","productId":"p1"})");
    } else if (step == 5) {
      body = absl::StrCat(R"("grantCategoryQualification":{"storeId":")", id_,
                          R"(","categoryId":"cat-2"})");
    } else if (step < 6 + 4 * kOrdersPerStore) {
      const std::string order_id = absl::StrCat("o-", id_, "-", order);
      switch ((step - 6) % 4) {
        case 0:
          body = absl::StrCat(
              R"("placeOrder":{"storeId":")", id_, R"(","orderId":")", order_id,
              R"(","lines":[{"productId":"p1","quantity":1,"unitPriceFen":)",
              kPriceFen, "}]}");
          break;
        case 1:
          body = absl::StrCat(R"("payOrder":{"storeId":")", id_,
                              R"(","orderId":")", order_id, R"(","amountFen":)",
                              kPriceFen, "}");
          break;
        case 2:
          body = absl::StrCat(R"("shipOrder":{"storeId":")", id_,
                              R"(","orderId":")", order_id, R"("})");
          break;
        default:
          body = absl::StrCat(R"("settleOrder":{"storeId":")", id_,
                              R"(","orderId":")", order_id,
                              R"(","commissionFen":)", kCommissionFen, "}");
      }
    } else {
      const int64_t available = kOrdersPerStore * (kPriceFen - kCommissionFen);
      const int last = step - (6 + 4 * kOrdersPerStore);
      if (last == 0) {  // refused (R14): one fen more than available
        body = absl::StrCat(R"("requestWithdrawal":{"storeId":")", id_,
                            R"(","withdrawalId":"w-)", id_,
                            R"(-x","amountFen":)", available + 1, "}");
      } else if (last == 1) {
        body = absl::StrCat(R"("requestWithdrawal":{"storeId":")", id_,
                            R"(","withdrawalId":"w-)", id_, R"(","amountFen":)",
                            available, "}");
      } else {
        body = absl::StrCat(R"("completeWithdrawal":{"storeId":")", id_,
                            R"(","withdrawalId":"w-)", id_, R"("})");
      }
    }
    const std::string json = absl::StrCat(
        R"({"commandId":"c-)", id_, "-", step, R"(","occurredAt":")",
        absl::FormatTime(absl::RFC3339_sec, at_, absl::UTCTimeZone()), R"(",)",
        body, "}");
    absl::StatusOr<v1::Command> command = ParseCommandJson(json);
    if (!command.ok()) Die(command.status());
    return *std::move(command);
  }

 private:
  std::string id_;
  absl::Time at_;
};

// Appends windows of stores until the log holds at least `target` events.
// Returns the index of the next store to create.
int BuildUntil(const std::string& dir, uint64_t target, int next_store) {
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir, options);
  if (!ledger.ok()) Die(ledger.status());
  const absl::Time started = absl::Now();
  const uint64_t first = (*ledger)->log().head().position;
  uint64_t commands = 0;
  while ((*ledger)->log().head().position < target) {
    std::vector<StoreScript> window;
    for (int i = 0; i < kWindowStores; ++i) window.emplace_back(next_store + i);
    next_store += kWindowStores;
    for (int step = 0; step < StoreScript::Steps(); ++step) {
      for (StoreScript& store : window) {
        absl::StatusOr<v1::CommandResult> result =
            (*ledger)->Execute(store.Step(step));
        if (!result.ok()) Die(result.status());
        const bool refusal_expected =
            step == 6 + 4 * kOrdersPerStore;  // the over-withdrawal
        if ((result->status() == v1::ACCEPTED) == refusal_expected) {
          Die(absl::InternalError(
              absl::StrCat("step ", step, ": ", ToJson(*result))));
        }
        ++commands;
      }
    }
    std::cerr << "\rbuilding: " << (*ledger)->log().head().position << " events"
              << std::flush;
  }
  // Flush the memtables, as a long-running ledger would have: otherwise
  // every reader replays the WAL into memory on open, and measures that.
  EventLog* log = (*ledger)->mutable_log();
  for (rocksdb::ColumnFamilyHandle* cf :
       {log->events_cf(), log->streams_cf(), log->commands_cf(), log->meta_cf(),
        log->projections_cf()}) {
    rocksdb::Status flushed = log->db()->Flush(rocksdb::FlushOptions(), cf);
    if (!flushed.ok()) Die(absl::InternalError(flushed.ToString()));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  const uint64_t events = (*ledger)->log().head().position - first;
  std::cerr << "\r";
  std::cout << absl::StrFormat(
      "built: %d events (head %d) from %d commands in %.1f s (%.0f events/s, "
      "sync off)\n",
      events, (*ledger)->log().head().position, commands, seconds,
      events / seconds);
  return next_store;
}

// ------------------------------------------------------------------ children

std::unique_ptr<EventLog> OpenReadOnly(const std::string& dir) {
  EventLogOptions options;
  options.read_only = true;
  options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir, options);
  if (!log.ok()) Die(log.status());
  return *std::move(log);
}

// Each child prints one line:
// "<items> <wall seconds> <peak rss kb> <ok> <cpu seconds>", the CPU time
// being that of the measured work only.
int ChildAudit(const std::string& dir) {
  std::unique_ptr<EventLog> log = OpenReadOnly(dir);
  const double cpu_started = CpuSeconds();
  const absl::Time started = absl::Now();
  // Time per pass: a pass ends when the next one reports first.
  std::string pass_now = "events";
  absl::Time pass_started = started;
  std::string passes;
  AuditOptions options;
  options.progress_every = 1000;
  options.progress = [&](absl::string_view pass, uint64_t, uint64_t) {
    if (pass == pass_now) return;
    const absl::Time now = absl::Now();
    absl::StrAppend(
        &passes, pass_now, " ",
        absl::StrFormat("%.2f", absl::ToDoubleSeconds(now - pass_started)),
        " s, ");
    pass_now = std::string(pass);
    pass_started = now;
  };
  absl::StatusOr<v1::AuditReport> report = Audit(*log, options);
  if (!report.ok()) Die(report.status());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  absl::StrAppend(&passes, pass_now, " ",
                  absl::StrFormat("%.2f", absl::ToDoubleSeconds(absl::Now() -
                                                                pass_started)),
                  " s");
  // Where the memory is: RocksDB's table readers (index and filter blocks,
  // which grow with the database's size) and block cache, beside the heap.
  uint64_t table_readers = 0, block_cache = 0;
  for (rocksdb::ColumnFamilyHandle* cf :
       {log->events_cf(), log->streams_cf(), log->commands_cf(), log->meta_cf(),
        log->projections_cf()}) {
    uint64_t value = 0;
    if (log->db()->GetIntProperty(cf, "rocksdb.estimate-table-readers-mem",
                                  &value)) {
      table_readers += value;
    }
  }
  log->db()->GetIntProperty("rocksdb.block-cache-usage", &block_cache);
  const struct mallinfo2 heap = mallinfo2();
  std::cerr << "  audit passes: " << passes << "\n"
            << absl::StrFormat(
                   "  at the end: RocksDB table readers %.1f MiB, block cache "
                   "%.1f MiB; heap in use %.1f MiB of %.1f MiB held\n",
                   table_readers / 1048576.0, block_cache / 1048576.0,
                   heap.uordblks / 1048576.0,
                   (heap.arena + heap.hblkhd) / 1048576.0);
  std::cout << report->events_checked() << " " << seconds << " " << PeakRssKb()
            << " " << (report->ok() ? 1 : 0) << " "
            << CpuSeconds() - cpu_started << "\n";
  if (!report->ok()) {
    std::cerr << "audit found " << report->violations_total()
              << " violations, the first: " << ToJson(report->violations(0))
              << "\n";
  }
  return 0;
}

int ChildRawScan(const std::string& dir) {
  std::unique_ptr<EventLog> log = OpenReadOnly(dir);
  const double cpu_started = CpuSeconds();
  const absl::Time started = absl::Now();
  rocksdb::ReadOptions read_options;
  read_options.fill_cache = false;
  read_options.readahead_size = 2 << 20;  // as audit's sequential passes
  std::unique_ptr<rocksdb::Iterator> it(
      log->db()->NewIterator(read_options, log->events_cf()));
  uint64_t entries = 0, bytes = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    ++entries;
    bytes += it->key().size() + it->value().size();
  }
  if (!it->status().ok()) Die(absl::InternalError(it->status().ToString()));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  std::cout << entries << " " << seconds << " " << PeakRssKb() << " "
            << (bytes > 0 ? 1 : 0) << " " << CpuSeconds() - cpu_started << "\n";
  return 0;
}

int ChildVerifyScan(const std::string& dir) {
  std::unique_ptr<EventLog> log = OpenReadOnly(dir);
  const double cpu_started = CpuSeconds();
  const absl::Time started = absl::Now();
  uint64_t entries = 0;
  absl::Status status =
      log->Scan(0, [&](const v1::Envelope&, absl::string_view) {
        ++entries;
        return true;
      });
  if (!status.ok()) Die(status);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  std::cout << entries << " " << seconds << " " << PeakRssKb() << " 1 "
            << CpuSeconds() - cpu_started << "\n";
  return 0;
}

int ChildOpenOnly(const std::string& dir) {
  std::unique_ptr<EventLog> log = OpenReadOnly(dir);
  std::cout << log->head().position << " 0 " << PeakRssKb() << " 1 0\n";
  return 0;
}

struct Measured {
  uint64_t items = 0;
  double seconds = 0;
  double cpu_seconds = 0;
  int64_t rss_kb = 0;
  bool ok = false;
};

// Runs this binary with `args` in a child process; returns its stdout.
std::string RunSelf(const std::vector<std::string>& args) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) Die(absl::InternalError("pipe failed"));
  const pid_t pid = fork();
  if (pid < 0) Die(absl::InternalError("fork failed"));
  if (pid == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    std::vector<char*> argv = {const_cast<char*>("storeledger-audit-bench")};
    for (const std::string& arg : args) {
      argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string output;
  char buffer[256];
  ssize_t n;
  while ((n = read(pipe_fds[0], buffer, sizeof(buffer))) > 0) {
    output.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int wait_status = 0;
  waitpid(pid, &wait_status, 0);
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) {
    Die(absl::InternalError(
        absl::StrCat(args.front(), " child failed: ", output)));
  }
  return output;
}

// Runs this binary as `mode dir` in a child process and reads its line.
Measured RunChild(const std::string& mode, const std::string& dir) {
  const std::string output = RunSelf({mode, dir});
  std::vector<std::string> fields =
      absl::StrSplit(output, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  Measured m;
  int ok = 0;
  if (fields.size() != 5 || !absl::SimpleAtoi(fields[0], &m.items) ||
      !absl::SimpleAtod(fields[1], &m.seconds) ||
      !absl::SimpleAtoi(fields[2], &m.rss_kb) ||
      !absl::SimpleAtoi(fields[3], &ok) ||
      !absl::SimpleAtod(fields[4], &m.cpu_seconds)) {
    Die(absl::InternalError(absl::StrCat(mode, " child said: ", output)));
  }
  m.ok = ok == 1;
  return m;
}

struct Checkpoint {
  uint64_t events = 0;
  Measured open, raw, verify, audit;
};

Checkpoint MeasureAt(const std::string& dir) {
  Checkpoint c;
  c.open = RunChild("--child-open", dir);
  c.raw = RunChild("--child-raw-scan", dir);
  c.verify = RunChild("--child-verify-scan", dir);
  c.audit = RunChild("--child-audit", dir);
  c.events = c.open.items;
  if (!c.audit.ok) Die(absl::InternalError("audit found violations"));
  const auto row = [](absl::string_view name, const Measured& m) {
    return absl::StrFormat(
        "  %-27s %7.2f s wall %10.0f events/s | %7.2f s CPU %10.0f events/s "
        "| peak RSS %6.1f MiB\n",
        name, m.seconds, m.items / m.seconds, m.cpu_seconds,
        m.items / std::max(m.cpu_seconds, 1e-6), m.rss_kb / 1024.0);
  };
  std::cout << "at " << c.events << " events:\n"
            << row("raw RocksDB iterator scan:", c.raw)
            << row("EventLog::Scan (verify):", c.verify)
            << row("audit:", c.audit)
            << absl::StrFormat(
                   "  open only: peak RSS %.1f MiB; audit / raw scan: %.1fx "
                   "wall, %.1fx CPU; audit / verify: %.1fx wall, %.1fx CPU\n",
                   c.open.rss_kb / 1024.0, c.audit.seconds / c.raw.seconds,
                   c.audit.cpu_seconds / std::max(c.raw.cpu_seconds, 1e-6),
                   c.audit.seconds / c.verify.seconds,
                   c.audit.cpu_seconds / std::max(c.verify.cpu_seconds, 1e-6));
  std::cout.flush();
  return c;
}

// The builder runs in a child process too, so that this parent stays small:
// Linux carries a process's peak RSS across fork and exec into ru_maxrss, so
// a parent that had built the ledger would lend its size to every child.
int BuildInChild(const std::string& dir, uint64_t target, int next_store) {
  const std::string output = RunSelf(
      {"--child-build", dir, absl::StrCat(target), absl::StrCat(next_store)});
  std::vector<std::string> lines =
      absl::StrSplit(output, '\n', absl::SkipEmpty());
  int next = 0;
  if (lines.empty() || !absl::SimpleAtoi(lines.back(), &next)) {
    Die(absl::InternalError(absl::StrCat("builder said: ", output)));
  }
  lines.pop_back();
  for (const std::string& line : lines) std::cout << line << "\n";
  return next;
}

int Main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--child-build") {
    uint64_t target = 0;
    int first_store = 0;
    if (!absl::SimpleAtoi(argv[3], &target) ||
        !absl::SimpleAtoi(argv[4], &first_store)) {
      return 2;
    }
    std::cout << BuildUntil(argv[2], target, first_store) << "\n";
    return 0;
  }
  if (argc == 3) {
    const std::string mode = argv[1];
    if (mode == "--child-audit") return ChildAudit(argv[2]);
    if (mode == "--child-raw-scan") return ChildRawScan(argv[2]);
    if (mode == "--child-verify-scan") return ChildVerifyScan(argv[2]);
    if (mode == "--child-open") return ChildOpenOnly(argv[2]);
  }
  uint64_t events = kEventsDefault;
  uint64_t checkpoint = kCheckpointDefault;
  std::string dir;
  bool keep = false;
  bool made_dir = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--keep") {
      keep = true;
    } else if ((arg == "--events" || arg == "--checkpoint" || arg == "--dir") &&
               i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--dir") {
        dir = value;
      } else if (!absl::SimpleAtoi(value,
                                   arg == "--events" ? &events : &checkpoint)) {
        std::cerr << arg << " needs a number\n";
        return 2;
      }
    } else {
      std::cerr << "usage: storeledger-audit-bench [--events N] "
                   "[--checkpoint N] [--dir DIR] [--keep]\n";
      return 2;
    }
  }
  if (dir.empty()) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "audit-bench-XXXXXX")
            .string();
    if (mkdtemp(pattern.data()) == nullptr) {
      Die(absl::InternalError("mkdtemp failed"));
    }
    dir = pattern + "/db";
    made_dir = true;
  }
  std::cout << "storeledger-audit-bench: " << events << " events in " << dir
            << " (checkpoint at " << checkpoint << ")\n";
  int next_store = BuildInChild(dir, checkpoint, 0);
  const Checkpoint small = MeasureAt(dir);
  BuildInChild(dir, events, next_store);
  const Checkpoint large = MeasureAt(dir);
  std::cout << absl::StrFormat(
      "audit peak RSS: %.1f MiB at %d events, %.1f MiB at %d events "
      "(x%.2f for x%.1f events); raw scan's: %.1f -> %.1f MiB\n",
      small.audit.rss_kb / 1024.0, small.events, large.audit.rss_kb / 1024.0,
      large.events,
      static_cast<double>(large.audit.rss_kb) / small.audit.rss_kb,
      static_cast<double>(large.events) / small.events,
      small.raw.rss_kb / 1024.0, large.raw.rss_kb / 1024.0);
  if (made_dir && !keep) {
    std::error_code ignored;
    std::filesystem::remove_all(std::filesystem::path(dir).parent_path(),
                                ignored);
  }
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) { return storeledger::Main(argc, argv); }
