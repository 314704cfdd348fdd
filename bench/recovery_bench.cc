// storeledger-recovery-bench: how long a ledger of N events takes to open
// after its writer was killed with SIGKILL in the middle of writing.
//
// The ledger (N events of WeChat Stores, bench/bench_ledger.h) is built once
// with sync off, or reused (--reuse). Then, round after round on that same
// ledger (it grows by what each writer appends):
//   - the real writer, `storeledger --db DIR apply -` (sync on, group
//     commit), is started as a child process and fed the commands of new
//     stores through its stdin;
//   - from its first acknowledged result it writes for about
//     --write-seconds (x 0.5-1.5, drawn from --seed), then gets SIGKILL;
//   - this process then opens the ledger as storeledgerd does
//     (LedgerServer::Start: Ledger::Open with the default options, sync on)
//     and answers a first read: the head, and the state of the store of the
//     last acknowledged command. That is the time reported, split into the
//     steps of EventLog::Open (EventLogOpenStats: rocksdb::DB::Open with the
//     WAL replay, the format marker, the head check, the Merkle tree's
//     right edge), the rest of Ledger::Open, and the first read; the
//     RocksDB open split further by the timestamps of its own info log
//     (ReadRocksDbLog); beside it the WAL bytes present in DIR before the
//     open (what RocksDB replays).
// Round 0 is the baseline: the writer's stdin is closed instead, and it
// exits cleanly before the open.
//
// Each round checks what it measures: the head after the open covers every
// acknowledged command (the largest acknowledged position) and the last
// acknowledged command's outcome is stored. The page cache keeps DIR's
// files across a SIGKILL (a process crash, not a power loss); --cold drops
// DIR's files from it (posix_fadvise, those files only) before each open.
//
// usage: storeledger-recovery-bench [--dir DIR] [--events N] [--reuse]
//            [--kills K] [--write-seconds S] [--seed SEED] [--cold]
// Without --reuse, DIR is emptied first and removed at the end; with it,
// a ledger of at least N events in DIR is used (built there otherwise) and
// kept.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_ledger.h"
#include "google/protobuf/util/json_util.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "storage/event_log.h"
#include "tests/support/child_process.h"
#include "tests/support/fault_env.h"

namespace storeledger {
namespace {

using ::storeledger::testing::ChildOptions;
using ::storeledger::testing::ChildProcess;
using ::storeledger::testing::DescribeWaitStatus;
using ::storeledger::testing::ListWal;
using ::storeledger::testing::WalFiles;

// Stores each writer opens and drives (round-robin), new in every round.
constexpr int kWriterStores = 100;
// Commands written to the writer's stdin at a time.
constexpr int kFeedCommands = 256;
// How long the writer may take to open the ledger and acknowledge its first
// command (its own open recovers what the previous round left).
constexpr absl::Duration kFirstAckTimeout = absl::Minutes(10);

// Drops `dir`'s files from the page cache (written back first): the open
// that follows reads them from the disk.
void DropFromPageCache(const std::string& dir) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EPIPE: the writer is gone
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string SelfDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

// What a writer's run left: its acknowledged results, as printed.
struct WriterRun {
  double seconds_writing = 0;  // from its first acknowledgement to the end
  uint64_t acknowledged = 0;
  uint64_t acknowledged_position_max = 0;
  std::string last_command_id;  // of the last acknowledged result
  std::string last_store_id;
  std::string exit;  // "killed by signal 9", "exited 0", ...
};

// Runs `storeledger --db dir apply -` on commands of new stores ("r<round>-
// <seed>-<i>"), and from its first acknowledgement lets it write for
// `write_for`; then kills it with SIGKILL (`kill`), or closes its stdin and
// waits for it to finish.
WriterRun RunWriter(const std::string& dir, int round, uint64_t seed,
                    absl::Duration write_for, bool kill) {
  const std::string err_path =
      (std::filesystem::temp_directory_path() /
       absl::StrCat("storeledger-recovery-bench-writer-", getpid(), ".err"))
          .string();
  std::filesystem::remove(err_path);
  ChildOptions options;
  options.argv = {SelfDir() + "/storeledger", "--db", dir, "apply", "-"};
  options.stdin_pipe = true;
  options.stderr_path = err_path;
  options.out_bytes_max = size_t{1} << 30;
  absl::StatusOr<std::unique_ptr<ChildProcess>> started =
      ChildProcess::Start(options);
  Check(started.status(), "start the writer");
  ChildProcess& child = **started;

  std::atomic<bool> stop{false};
  std::atomic<bool> fed{false};
  std::thread feeder([&] {
    std::vector<StoreWorkload> stores;
    for (int i = 0; i < kWriterStores; ++i) {
      stores.emplace_back(absl::StrFormat("r%d-%d-%03d", round, seed, i));
    }
    absl::Time at = China(10, 1);
    size_t next = 0;
    std::string text;
    while (!stop.load()) {
      text.clear();
      for (int i = 0; i < kFeedCommands; ++i) {
        at += absl::Seconds(1);
        absl::StrAppend(&text, ToJson(stores[next].Next(at)), "\n");
        next = (next + 1) % stores.size();
      }
      if (!WriteAll(child.stdin_fd(), text)) break;
    }
    child.CloseStdin();
    fed.store(true);
  });

  WriterRun run;
  auto fail = [&](absl::string_view what) {
    child.Kill(SIGKILL);
    stop.store(true);
    feeder.join();
    const int status = child.Wait();
    std::cerr << "storeledger-recovery-bench: the writer " << what << " ("
              << DescribeWaitStatus(status) << "); its stderr is in "
              << err_path << "\n";
    std::exit(1);
  };
  const absl::Time began = absl::Now();
  while (child.lines_read() == 0) {
    if (child.ReadUntil(absl::Now() + absl::Milliseconds(20))) {
      fail("ended before its first result");
    }
    if (absl::Now() - began > kFirstAckTimeout) {
      fail("acknowledged nothing in time");
    }
  }
  const absl::Time first_ack = absl::Now();
  if (child.ReadUntil(first_ack + write_for)) fail("ended before the kill");
  if (kill) {
    child.Kill(SIGKILL);
    run.seconds_writing = absl::ToDoubleSeconds(absl::Now() - first_ack);
    feeder.join();  // its next write fails: the pipe has no reader
  } else {
    stop.store(true);
    run.seconds_writing = absl::ToDoubleSeconds(absl::Now() - first_ack);
    // Keep reading its results while the feeder finishes its last write:
    // a writer blocked on a full stdout reads no more of its stdin.
    while (!fed.load()) child.ReadUntil(absl::Now() + absl::Milliseconds(20));
    feeder.join();
  }
  const int status = child.Wait();
  run.exit = DescribeWaitStatus(status);
  const bool as_planned =
      kill ? WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL
           : WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!as_planned) {
    std::cerr << "storeledger-recovery-bench: the writer " << run.exit
              << "; its stderr is in " << err_path << "\n";
    std::exit(1);
  }
  std::filesystem::remove(err_path);
  for (const std::string& line : child.CompleteLines()) {
    v1::CommandResult result;
    const auto parsed =
        google::protobuf::util::JsonStringToMessage(line, &result);
    Check(
        parsed.ok() ? absl::OkStatus() : absl::InternalError(parsed.ToString()),
        absl::StrCat("a result of the writer: ", line));
    ++run.acknowledged;
    run.acknowledged_position_max = std::max<uint64_t>(
        run.acknowledged_position_max, result.last_position());
    run.last_command_id = result.command_id();
  }
  run.last_store_id =
      run.last_command_id.substr(0, run.last_command_id.rfind('-'));
  return run;
}

// rocksdb::DB::Open step by step, from the timestamps of the info log it
// starts (DIR/LOG; the previous one is renamed at every open): reading the
// MANIFEST (which opens every table file: max_open_files is -1), replaying
// the WAL into memtables, writing what it recovered as level-0 tables, and
// the rest (a new WAL and MANIFEST, obsolete files deleted). Zero for a
// step whose lines are not found.
struct RocksDbOpenSteps {
  absl::Duration manifest;
  absl::Duration wal_replay;
  absl::Duration level0;
  absl::Duration rest;
};

RocksDbOpenSteps ReadRocksDbLog(const std::string& dir) {
  std::ifstream in(dir + "/LOG");
  std::optional<absl::Time> manifest_began, manifest_done, replay_began,
      level0_began, recovered, opened;
  std::string line;
  while (std::getline(in, line)) {
    // "2026/12/07-10:16:14.022987 13337 ..."
    absl::Time at;
    std::string error;
    if (line.size() < 26 || !absl::ParseTime("%Y/%m/%d-%H:%M:%E*S",
                                             line.substr(0, 26), &at, &error)) {
      continue;
    }
    auto first = [&](std::optional<absl::Time>& mark, absl::string_view text) {
      if (!mark.has_value() && absl::StrContains(line, text)) mark = at;
    };
    first(manifest_began, "Recovering from manifest file");
    first(manifest_done, "Recovered from manifest file");
    first(replay_began, "\"event\": \"recovery_started\"");
    first(level0_began, "[WriteLevel0TableForRecovery]");
    first(recovered, "\"event\": \"recovery_finished\"");
    first(opened, "DB pointer");
  }
  RocksDbOpenSteps steps;
  auto span = [](const std::optional<absl::Time>& from,
                 const std::optional<absl::Time>& to) {
    return from.has_value() && to.has_value() ? *to - *from
                                              : absl::ZeroDuration();
  };
  steps.manifest = span(manifest_began, manifest_done);
  const std::optional<absl::Time> replay_done =
      level0_began.has_value() ? level0_began : recovered;
  steps.wal_replay = span(replay_began, replay_done);
  steps.level0 = span(level0_began, recovered);
  steps.rest = span(recovered, opened);
  return steps;
}

// User + system CPU time of this process so far (every thread).
absl::Duration ProcessCpu() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) +
         absl::DurationFromTimeval(usage.ru_stime);
}

// One open, as storeledgerd does it, up to its first answer.
struct OpenTimes {
  WalFiles wal;
  EventLogOpenStats log;
  RocksDbOpenSteps rocksdb;    // within log.rocksdb_open
  absl::Duration ledger_rest;  // Ledger::Open beyond EventLog::Open
  absl::Duration first_read;   // the head and one store's state
  absl::Duration total;
  // CPU time of this process (every thread, RocksDB's included) over
  // `total`: what the open costs apart from waiting for the disk or for a
  // core of the shared machine.
  absl::Duration cpu;
  absl::Duration close;  // of the ledger afterwards (not in total)
  uint64_t head = 0;
};

OpenTimes TimeOpen(const std::string& dir, const WriterRun& writer, bool cold) {
  OpenTimes times;
  absl::StatusOr<WalFiles> wal = ListWal(dir);
  Check(wal.status(), "list the write-ahead log");
  times.wal = *wal;
  if (cold) DropFromPageCache(dir);
  LedgerOptions options;  // storeledgerd's defaults: sync on
  options.open_stats = &times.log;
  const absl::Duration cpu_began = ProcessCpu();
  const absl::Time began = absl::Now();
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir, options);
  const absl::Time opened = absl::Now();
  Check(ledger.status(), "open after the writer");
  times.head = (*ledger)->log().head().position;
  absl::StatusOr<v1::StoreState> state = (*ledger)->State(writer.last_store_id);
  times.total = absl::Now() - began;
  times.cpu = ProcessCpu() - cpu_began;
  Check(state.status(), absl::StrCat("state of ", writer.last_store_id));
  times.first_read = times.total - (opened - began);
  times.ledger_rest = (opened - began) - times.log.rocksdb_open -
                      times.log.initialize - times.log.load_head -
                      times.log.merkle - times.log.window;

  // What was measured is a ledger that lost nothing acknowledged.
  if (times.head < writer.acknowledged_position_max) {
    Check(absl::DataLossError(absl::StrCat(
              "the head is at ", times.head, " but position ",
              writer.acknowledged_position_max, " was acknowledged")),
          "after the open");
  }
  absl::StatusOr<std::optional<StoredOutcome>> outcome =
      (*ledger)->log().GetOutcome(writer.last_command_id);
  Check(outcome.status(), "read the last acknowledged outcome");
  if (!outcome->has_value()) {
    Check(absl::DataLossError(absl::StrCat("acknowledged command ",
                                           writer.last_command_id,
                                           " has no stored outcome")),
          "after the open");
  }
  const absl::Time closing = absl::Now();
  ledger->reset();
  times.close = absl::Now() - closing;
  times.rocksdb = ReadRocksDbLog(dir);
  return times;
}

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

std::string Load() {
  double load[3] = {-1, -1, -1};
  getloadavg(load, 3);
  return absl::StrFormat("load average: %.2f, %.2f, %.2f", load[0], load[1],
                         load[2]);
}

void PrintHeader() {
  std::cout << absl::StrFormat(
      "%-7s %6s %7s %9s %9s %3s %6s | %7s %6s %6s %6s %6s | %5s %5s %6s %6s "
      "%6s %6s | %7s %6s %6s %5s\n",
      "round", "wrote", "acked", "head-", "head+", "wal", "MiB", "rocksdb",
      "manif", "replay", "L0", "rest", "init", "head", "merkle", "fold",
      "ledger", "read", "TOTAL", "cpu", "close", "load");
}

void PrintRound(const std::string& label, uint64_t head_before,
                const WriterRun& writer, const OpenTimes& t) {
  std::cout << absl::StrFormat(
      "%-7s %5.1fs %7d %9d %9d %3d %6.1f | %7.1f %6.1f %6.1f %6.1f %6.1f | "
      "%5.1f %5.1f %6.1f %6.1f %6.1f %6.1f | %7.1f %6.1f %6.1f %5.2f\n",
      label, writer.seconds_writing, writer.acknowledged, head_before, t.head,
      t.wal.count, t.wal.bytes / 1048576.0, Ms(t.log.rocksdb_open),
      Ms(t.rocksdb.manifest), Ms(t.rocksdb.wal_replay), Ms(t.rocksdb.level0),
      Ms(t.rocksdb.rest), Ms(t.log.initialize), Ms(t.log.load_head),
      Ms(t.log.merkle), Ms(t.log.window), Ms(t.ledger_rest), Ms(t.first_read),
      Ms(t.total), Ms(t.cpu), Ms(t.close), LoadAverage());
}

void PrintSummary(const std::vector<OpenTimes>& rounds) {
  auto row = [&](absl::string_view label, auto value) {
    std::vector<double> v;
    for (const OpenTimes& t : rounds) v.push_back(value(t));
    std::sort(v.begin(), v.end());
    std::cout << absl::StrFormat("  %-44s %9.1f %9.1f %9.1f\n", label,
                                 v.front(), v[v.size() / 2], v.back());
  };
  std::cout << absl::StrFormat("\nover %d opens after SIGKILL:\n",
                               rounds.size())
            << absl::StrFormat("  %-44s %9s %9s %9s\n", "", "min", "median",
                               "max");
  row("WAL before the open (MiB)",
      [](const OpenTimes& t) { return t.wal.bytes / 1048576.0; });
  row("rocksdb::DB::Open (ms)",
      [](const OpenTimes& t) { return Ms(t.log.rocksdb_open); });
  row("  MANIFEST, table files opened (ms)",
      [](const OpenTimes& t) { return Ms(t.rocksdb.manifest); });
  row("  WAL replayed into memtables (ms)",
      [](const OpenTimes& t) { return Ms(t.rocksdb.wal_replay); });
  row("  recovered memtables written to L0 (ms)",
      [](const OpenTimes& t) { return Ms(t.rocksdb.level0); });
  row("  new WAL and MANIFEST, clean-up (ms)",
      [](const OpenTimes& t) { return Ms(t.rocksdb.rest); });
  row("format marker (ms)",
      [](const OpenTimes& t) { return Ms(t.log.initialize); });
  row("head check (ms)",
      [](const OpenTimes& t) { return Ms(t.log.load_head); });
  row("Merkle right edge (ms)",
      [](const OpenTimes& t) { return Ms(t.log.merkle); });
  row("write-behind window folded (ms)",
      [](const OpenTimes& t) { return Ms(t.log.window); });
  row("  events folded",
      [](const OpenTimes& t) { return t.log.window_events * 1.0; });
  row("rest of Ledger::Open (ms)",
      [](const OpenTimes& t) { return Ms(t.ledger_rest); });
  row("first read: head + a store (ms)",
      [](const OpenTimes& t) { return Ms(t.first_read); });
  row("TOTAL: open to first answer (ms)",
      [](const OpenTimes& t) { return Ms(t.total); });
  row("  CPU of the process meanwhile (ms)",
      [](const OpenTimes& t) { return Ms(t.cpu); });
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  using namespace storeledger;
  std::string dir;
  uint64_t events = 10'000'000;
  bool reuse = false;
  int kills = 5;
  double write_seconds = 5;
  uint64_t seed = std::random_device()();
  bool cold = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&] { return FlagValue(argc, argv, i); };
    auto bad = [&](absl::string_view what) {
      std::cerr << "storeledger-recovery-bench: " << arg << " takes " << what
                << "\n";
      std::exit(2);
    };
    if (arg == "--dir") {
      dir = value();
    } else if (arg == "--events") {
      if (!absl::SimpleAtoi(value(), &events)) bad("a count of events");
    } else if (arg == "--reuse") {
      reuse = true;
    } else if (arg == "--kills") {
      if (!absl::SimpleAtoi(value(), &kills) || kills < 1) {
        bad("a positive count");
      }
    } else if (arg == "--write-seconds") {
      if (!absl::SimpleAtod(value(), &write_seconds) || !(write_seconds > 0)) {
        bad("a positive number of seconds");
      }
    } else if (arg == "--seed") {
      if (!absl::SimpleAtoi(value(), &seed)) bad("a number");
    } else if (arg == "--cold") {
      cold = true;
    } else {
      std::cerr << "usage: storeledger-recovery-bench [--dir DIR] [--events N] "
                   "[--reuse] [--kills K] [--write-seconds S] [--seed SEED] "
                   "[--cold]\n";
      return 2;
    }
  }
  // A write to the pipe of a killed writer fails with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() /
           absl::StrCat("storeledger-recovery-bench-", getpid()))
              .string();
  }
  if (!reuse) std::filesystem::remove_all(dir);
  std::cout << "storeledger-recovery-bench in " << dir << ", " << events
            << " events, " << kills << " kills, --write-seconds "
            << write_seconds << ", seed " << seed << (cold ? ", --cold" : "")
            << "\n"
            << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(),
                                absl::UTCTimeZone())
            << ", " << Load() << "\n";
  uint64_t head = PrepareStoresLedger(dir, events, 1000, reuse);
  std::cout << "ledger: " << head << " events; " << Load() << "\n\n";
  std::cout << "times in ms; wrote = seconds the writer wrote after its first "
               "acknowledgement; head-/head+ = the head before the writer and "
               "after the open; wal = WAL files and MiB before the open\n";
  PrintHeader();

  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> stretch(0.5, 1.5);
  std::vector<OpenTimes> killed;
  for (int round = 0; round <= kills; ++round) {
    const bool kill = round > 0;  // round 0: the clean close
    const absl::Duration write_for =
        absl::Seconds(write_seconds * (kill ? stretch(rng) : 1.0));
    const WriterRun writer = RunWriter(dir, round, seed, write_for, kill);
    const OpenTimes times = TimeOpen(dir, writer, cold);
    PrintRound(kill ? absl::StrCat("kill ", round) : "clean", head, writer,
               times);
    head = times.head;
    if (kill) killed.push_back(times);
  }
  PrintSummary(killed);
  std::cout << "\n"
            << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(),
                                absl::UTCTimeZone())
            << ", " << Load() << "\n";
  if (!reuse) std::filesystem::remove_all(dir);
  return 0;
}
