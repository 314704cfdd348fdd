// storeledger-bench: how many durable commands storeledger takes per second,
// how long one waits for its acknowledgement, and how much memory it holds --
// beside the physical ceiling (raw RocksDB synced WriteBatches) and a real
// peer (an events table in PostgreSQL 15), on the same machine in the same
// run. Prints one table (README "Performance").
//
//   storeledger-bench [--stores N] [--seed S] [--seconds S] [--clients 1,16,64]
//                     [--pg-bin DIR] [--no-pg] [--memory-events N]
//                     [--only apply,ceiling,batch,clients,pg]
//                     [--dir DIR] [--keep] [--no-write-behind]
//
// Rows:
//   ceiling      raw RocksDB (default options, WAL synced): WriteBatches of
//                kBatch envelopes, as many and as large as the envelopes
//                storeledger wrote for the apply row, keyed by position.
//   layout       storeledger's own WriteBatches (recorded from an unsynced
//                ExecuteBatch of the same stream through
//                EventLogOptions::write_batch_tap), replayed synced into a
//                fresh EventLog's RocksDB: every key storeledger writes
//                (event, stream index and head, outcome, records), none of
//                the deciding, encoding or hashing -- the ceiling of the
//                key layout itself.
//   apply        `storeledger apply FILE` (in process, output discarded) of a
//                simulate stream (PlanMigration, --stores stores) written as
//                JSON lines: the batch path (Ledger::ExecuteBatch).
//   batch        the same commands through Ledger::ExecuteBatch in batches
//                of kBatch, without JSON (what apply costs minus parsing and
//                printing).
//   N clients    N threads, each executing its share of the stream (by store)
//                one command at a time with Ledger::Execute and waiting for
//                the durable acknowledgement; the stream is repeated with
//                fresh ids ("~r<round>" suffixes) until --seconds have passed.
//   PostgreSQL   a server started here (initdb + pg_ctl in a temporary
//                directory, Unix socket only, listen_addresses=''; as
//                `nobody` when run as root), fsync and synchronous_commit on
//                (the defaults). One table events(stream_id, version, ...)
//                with primary key (stream_id, version); each insert checks
//                the expected version (the stream's last version must be
//                version - 1, or any for the rejections stream, as
//                storeledger's appends do). Fed the events storeledger wrote
//                (same streams, versions and envelope bytes) through libpq
//                pipeline mode: in transactions of kBatch events (batch row),
//                and one command's events per transaction by N clients.
//
// Every measurement runs in a forked child of a parent that holds nothing
// big, so each row's peak RSS (getrusage of the child) is its own. For the
// PostgreSQL rows the RSS column is the server's: the peak over the run of
// the summed PSS of its processes (shared buffers counted once).
//
// --memory-events N adds the memory run: the stream repeated with fresh ids
// through ExecuteBatch until N events, sampling RSS; peak RSS after 10^6
// events (or N/10) against the peak at N shows whether memory grows with the
// log.
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "cli/simulate.h"
#include "core/streams.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/write_batch.h"
#include "storage/event_log.h"

namespace storeledger {
namespace {

// The PostgreSQL client rows: attempts of one command after lost races (the
// first kPgSpinAttempts at once, then 0.2 ms apart: about 10 s in all).
constexpr int kPgAttemptsMax = 50'000;
constexpr int kPgSpinAttempts = 10;

// Client rows: commands made before the clock starts, per second of the
// row and at most (about 0.5 KB each in memory).
constexpr double kClientCommandsMadePerSecond = 50'000;
constexpr size_t kClientCommandsMadeMax = 500'000;
constexpr size_t kBatch = 1000;  // events (ceiling, PostgreSQL) or commands
constexpr int kStoresDefault = 2000;
constexpr double kSecondsDefault = 10;
constexpr char kPgBinDefault[] = "/usr/lib/postgresql/15/bin";
constexpr absl::Duration kRssSampleEvery = absl::Milliseconds(50);
// Blocks at least this large are mmapped (and unmapped when freed).
constexpr int kMmapThresholdBytes = 256 << 10;

// ---------------------------------------------------------------- flags

struct Flags {
  int stores = kStoresDefault;
  uint64_t seed = 1;
  double seconds = kSecondsDefault;
  std::vector<int> clients = {1, 16, 64};
  std::string pg_bin = kPgBinDefault;
  bool no_pg = false;
  uint64_t memory_events = 0;
  std::string dir;
  bool keep = false;
  // Run each measurement in this process (for profilers); RSS is then
  // cumulative.
  bool no_fork = false;
  // Leave glibc's malloc tuning alone (see Main).
  bool malloc_default = false;
  // Ledgers without WAL sync: for CPU profiles only, the rows mean nothing.
  bool no_sync = false;
  // storeledger's rows with LedgerOptions::write_behind off (everything in
  // the synced WriteBatch, as before 2026-12-07), to set beside a run with
  // it (storage/FORMAT.md "Written behind the log").
  bool no_write_behind = false;
  // Rows to run (ceiling needs apply): a subset of kPhases.
  std::vector<std::string> only = {"apply", "ceiling", "batch", "clients",
                                   "pg"};
  bool Runs(absl::string_view phase) const {
    return std::find(only.begin(), only.end(), phase) != only.end();
  }
};

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "storeledger-bench: " << problem << "\n"
            << "usage: storeledger-bench [--stores N] [--seed S] [--seconds S]"
               " [--clients 1,16,64] [--pg-bin DIR] [--no-pg]"
               " [--memory-events N] [--only apply,ceiling,batch,clients,pg]"
               " [--dir DIR] [--keep] [--no-write-behind]\n";
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage(arg + " needs a value");
      return argv[++i];
    };
    auto number = [&](uint64_t* out) {
      const std::string text = value();
      if (!absl::SimpleAtoi(text, out)) Usage(arg + ": not a number: " + text);
    };
    uint64_t n = 0;
    if (arg == "--stores") {
      number(&n);
      if (n < 1 || n > static_cast<uint64_t>(kSimulateStoresMax)) {
        Usage("--stores must be 1.." + std::to_string(kSimulateStoresMax));
      }
      flags.stores = static_cast<int>(n);
    } else if (arg == "--seed") {
      number(&flags.seed);
    } else if (arg == "--seconds") {
      const std::string text = value();
      if (!absl::SimpleAtod(text, &flags.seconds) || flags.seconds <= 0) {
        Usage("--seconds: not a positive number: " + text);
      }
    } else if (arg == "--clients") {
      flags.clients.clear();
      for (absl::string_view part : absl::StrSplit(value(), ',')) {
        int c = 0;
        if (!absl::SimpleAtoi(part, &c) || c < 1 || c > 1024) {
          Usage("--clients: a list of 1..1024");
        }
        flags.clients.push_back(c);
      }
    } else if (arg == "--pg-bin") {
      flags.pg_bin = value();
    } else if (arg == "--no-pg") {
      flags.no_pg = true;
    } else if (arg == "--memory-events") {
      number(&flags.memory_events);
    } else if (arg == "--dir") {
      flags.dir = value();
    } else if (arg == "--only") {
      flags.only = absl::StrSplit(value(), ',');
    } else if (arg == "--no-sync") {
      flags.no_sync = true;
    } else if (arg == "--no-write-behind") {
      flags.no_write_behind = true;
    } else if (arg == "--malloc-default") {
      flags.malloc_default = true;
    } else if (arg == "--no-fork") {
      flags.no_fork = true;
    } else if (arg == "--keep") {
      flags.keep = true;
    } else {
      Usage("unknown flag " + arg);
    }
  }
  return flags;
}

// ---------------------------------------------------------------- rows

struct Row {
  std::string name;
  std::string kind;  // "ceiling", "batch", "one", "concurrent", "pg-batch",
                     // "pg-one", "pg-concurrent", "memory"
  int clients = 0;
  double seconds = 0;
  uint64_t events = 0;
  uint64_t commands = 0;
  double p50_ms = -1, p99_ms = -1, p999_ms = -1;
  double rss_mb = 0;
  double cpu_s = 0;  // user + system CPU of the measuring process (all rows)
  std::string note;
  std::string error;

  double events_per_s() const { return seconds > 0 ? events / seconds : 0; }
  double commands_per_s() const { return seconds > 0 ? commands / seconds : 0; }
};

// Rows cross the pipe from child to parent as one line each of
// tab-separated fields.
std::string Encode(const Row& row) {
  auto clean = [](std::string s) {
    std::replace(s.begin(), s.end(), '\t', ' ');
    std::replace(s.begin(), s.end(), '\n', ' ');
    return s;
  };
  return absl::StrCat(clean(row.name), "\t", row.kind, "\t", row.clients, "\t",
                      absl::StrFormat("%.6f", row.seconds), "\t", row.events,
                      "\t", row.commands, "\t", row.p50_ms, "\t", row.p99_ms,
                      "\t", row.p999_ms, "\t", row.rss_mb, "\t", row.cpu_s,
                      "\t", clean(row.note), "\t", clean(row.error), "\n");
}

std::optional<Row> Decode(const std::string& line) {
  std::vector<std::string> f = absl::StrSplit(line, '\t');
  if (f.size() != 13) return std::nullopt;
  Row row;
  row.name = f[0];
  row.kind = f[1];
  if (!absl::SimpleAtoi(f[2], &row.clients) ||
      !absl::SimpleAtod(f[3], &row.seconds) ||
      !absl::SimpleAtoi(f[4], &row.events) ||
      !absl::SimpleAtoi(f[5], &row.commands) ||
      !absl::SimpleAtod(f[6], &row.p50_ms) ||
      !absl::SimpleAtod(f[7], &row.p99_ms) ||
      !absl::SimpleAtod(f[8], &row.p999_ms) ||
      !absl::SimpleAtod(f[9], &row.rss_mb) ||
      !absl::SimpleAtod(f[10], &row.cpu_s)) {
    return std::nullopt;
  }
  row.note = f[11];
  row.error = f[12];
  return row;
}

// CPU of this process so far, all threads (RocksDB's background ones too).
double CpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec * 1e-6 +
         usage.ru_stime.tv_sec + usage.ru_stime.tv_usec * 1e-6;
}

double PeakRssMbSelf() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

// A field ("VmRSS:", "VmHWM:", "Pss:") of a /proc file, in MB; -1 if absent.
double ProcFieldMb(const std::string& path, absl::string_view field) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, field)) {
      std::istringstream fields(line.substr(field.size()));
      double kb = 0;
      fields >> kb;
      return kb / 1024.0;
    }
  }
  return -1;
}

// Runs `fn` in a forked child; returns the rows it produced, each row's
// rss_mb defaulting to the child's peak RSS. The parent must hold no threads
// (fork copies only the calling thread) and little memory (the child starts
// with the parent's resident pages).
bool g_no_fork = false;
bool g_no_sync = false;
bool g_write_behind = true;

// --no-sync (profiling only: nothing is durable then), --no-write-behind.
LedgerOptions BenchLedgerOptions() {
  LedgerOptions options;
  options.sync = !g_no_sync;
  options.write_behind = g_write_behind;
  return options;
}

std::vector<Row> InChild(const std::string& what,
                         const std::function<std::vector<Row>()>& fn) {
  std::cerr << "storeledger-bench: " << what << " ..." << std::endl;
  if (g_no_fork) {
    std::vector<Row> rows = fn();
    for (Row& row : rows) {
      if (row.rss_mb == 0) row.rss_mb = PeakRssMbSelf();
    }
    return rows;
  }
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("pipe");
    std::exit(1);
  }
  std::cout.flush();
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    close(fds[0]);
    std::vector<Row> rows = fn();
    std::string text;
    for (const Row& row : rows) text += Encode(row);
    size_t written = 0;
    while (written < text.size()) {
      const ssize_t n =
          write(fds[1], text.data() + written, text.size() - written);
      if (n <= 0) break;
      written += static_cast<size_t>(n);
    }
    close(fds[1]);
    std::fflush(nullptr);
    _exit(0);  // no static destructors of the parent's copy
  }
  close(fds[1]);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  close(fds[0]);
  int status = 0;
  struct rusage usage;
  wait4(pid, &status, 0, &usage);
  std::vector<Row> rows;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::optional<Row> row = Decode(std::string(line) + "");
    if (!row.has_value()) continue;
    if (row->rss_mb == 0) row->rss_mb = usage.ru_maxrss / 1024.0;

    rows.push_back(*row);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Row failed;
    failed.name = what;
    failed.error =
        absl::StrCat("child exited abnormally (status ", status, ")");
    rows.push_back(failed);
  }
  return rows;
}

Row Failed(const std::string& name, const absl::Status& status) {
  Row row;
  row.name = name;
  row.error = status.ToString();
  return row;
}

struct Latencies {
  std::vector<double> ms;
  void Fill(Row* row) {
    if (ms.empty()) return;
    std::sort(ms.begin(), ms.end());
    auto at = [&](double q) {
      size_t i = static_cast<size_t>(q * static_cast<double>(ms.size()));
      return ms[std::min(i, ms.size() - 1)];
    };
    row->p50_ms = at(0.50);
    row->p99_ms = at(0.99);
    row->p999_ms = at(0.999);
  }
};

// ---------------------------------------------------------------- the stream

// The simulate stream, with amounts fixed, and its repetition with fresh ids.
class Stream {
 public:
  Stream(int stores, uint64_t seed)
      : commands_(PlanWrittenAhead(stores, seed)) {}

  size_t size() const { return commands_.size(); }
  const v1::Command& base(size_t i) const { return commands_[i]; }

  // Command i of round `round`: round 0 is the stream itself; later rounds
  // append "~r<round>" to every id but product and category ids (per store),
  // so they open new stores, merchants, orders and withdrawals. ApplyPolicy
  // walks every mini store, so it runs in round 0 only: repeating it would
  // make each round cost more than the one before.
  std::optional<v1::Command> Get(size_t round, size_t i) const {
    v1::Command command = commands_[i];
    if (round == 0) return command;
    if (command.has_apply_policy()) return std::nullopt;
    AddSuffix(absl::StrCat("~r", round), &command);
    return command;
  }

  // The store a command belongs to, from its id ("sim<seed>-s<index>-<n>"):
  // the partition key of the concurrent runs. -1 for the policy runs.
  static int StoreIndex(absl::string_view command_id) {
    const size_t at = command_id.find("-s");
    if (at == absl::string_view::npos) return -1;
    int index = 0;
    size_t i = at + 2;
    bool any = false;
    while (i < command_id.size() && command_id[i] >= '0' &&
           command_id[i] <= '9') {
      index = index * 10 + (command_id[i] - '0');
      ++i;
      any = true;
    }
    return any ? index : -1;
  }

 private:
  static void AddSuffix(const std::string& suffix,
                        google::protobuf::Message* message) {
    const google::protobuf::Descriptor* descriptor = message->GetDescriptor();
    const google::protobuf::Reflection* reflection = message->GetReflection();
    for (int f = 0; f < descriptor->field_count(); ++f) {
      const google::protobuf::FieldDescriptor* field = descriptor->field(f);
      if (field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
        if (field->is_repeated()) {
          for (int k = 0; k < reflection->FieldSize(*message, field); ++k) {
            AddSuffix(suffix,
                      reflection->MutableRepeatedMessage(message, field, k));
          }
        } else if (reflection->HasField(*message, field)) {
          AddSuffix(suffix, reflection->MutableMessage(message, field));
        }
        continue;
      }
      if (field->type() != google::protobuf::FieldDescriptor::TYPE_STRING ||
          field->is_repeated()) {
        continue;
      }
      const std::string& name = field->name();
      if (!absl::EndsWith(name, "_id") || name == "product_id" ||
          name == "category_id") {
        continue;
      }
      const std::string value = reflection->GetString(*message, field);
      if (!value.empty()) {
        reflection->SetString(message, field, value + suffix);
      }
    }
  }

  std::vector<v1::Command> commands_;
};

// ---------------------------------------------------------------- events file

// The envelopes storeledger wrote, as the ceiling and PostgreSQL rows replay
// them: stream id, stream version, command id and the stored bytes.
struct StoredEvent {
  std::string stream_id;
  uint64_t version = 0;
  std::string command_id;
  std::string bytes;
};

void PutString(std::ofstream& out, const std::string& s) {
  const uint32_t n = static_cast<uint32_t>(s.size());
  out.write(reinterpret_cast<const char*>(&n), sizeof(n));
  out.write(s.data(), n);
}
bool GetString(std::ifstream& in, std::string* s) {
  uint32_t n = 0;
  if (!in.read(reinterpret_cast<char*>(&n), sizeof(n))) return false;
  s->resize(n);
  return static_cast<bool>(in.read(s->data(), n));
}

absl::Status ExportEvents(const std::string& db, const std::string& path) {
  EventLogOptions options;
  options.read_only = true;
  options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(db, options);
  if (!log.ok()) return log.status();
  std::ofstream out(path, std::ios::binary);
  absl::Status status =
      (*log)->Scan(0, [&](const v1::Envelope& envelope, absl::string_view raw) {
        PutString(out, envelope.stream_id());
        const uint64_t version = envelope.stream_version();
        out.write(reinterpret_cast<const char*>(&version), sizeof(version));
        PutString(out, envelope.command_id());
        PutString(out, std::string(raw));
        return true;
      });
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return status;
}

std::vector<StoredEvent> LoadEvents(const std::string& path) {
  std::vector<StoredEvent> events;
  std::ifstream in(path, std::ios::binary);
  while (true) {
    StoredEvent event;
    if (!GetString(in, &event.stream_id)) break;
    in.read(reinterpret_cast<char*>(&event.version), sizeof(event.version));
    if (!GetString(in, &event.command_id) || !GetString(in, &event.bytes))
      break;
    events.push_back(std::move(event));
  }
  return events;
}

// ---------------------------------------------------------------- ceiling

Row Ceiling(const std::string& dir, const std::string& events_path) {
  Row row;
  row.name =
      absl::StrFormat("ceiling: RocksDB, synced WriteBatch of %d", kBatch);
  row.kind = "ceiling";
  std::vector<size_t> sizes;
  for (const StoredEvent& event : LoadEvents(events_path)) {
    sizes.push_back(event.bytes.size());
  }
  if (sizes.empty()) return Failed(row.name, absl::NotFoundError("no events"));
  std::mt19937_64 rng(7);
  std::string random_bytes(1 << 20, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  size_t offset = 0;
  for (size_t i = 0; i < sizes.size(); i += kBatch) {
    rocksdb::WriteBatch batch;
    for (size_t j = i; j < std::min(sizes.size(), i + kBatch); ++j) {
      const size_t n = std::min(sizes[j], random_bytes.size());
      if (offset + n > random_bytes.size()) offset = 0;
      batch.Put(PositionKey(j + 1),
                rocksdb::Slice(random_bytes.data() + offset, n));
      offset += 97;  // a different slice each time
    }
    s = db->Write(write_options, &batch);
    if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
  }
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  row.events = sizes.size();
  uint64_t bytes = 0;
  for (size_t n : sizes) bytes += n;
  row.note = absl::StrFormat("%d envelopes, mean %d bytes", sizes.size(),
                             bytes / sizes.size());
  db.reset();
  return row;
}

// The floor under one client's latency: one small synced RocksDB write at a
// time (about the size of one command's writes).
Row SyncLatency(const std::string& dir, double seconds) {
  Row row;
  row.name = "ceiling: RocksDB, one synced 1 KB put at a time";
  row.kind = "sync";
  row.clients = 1;
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, dir, &raw);
  if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  const std::string value(1024, 'v');
  Latencies latencies;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  const absl::Time deadline = start + absl::Seconds(std::min(seconds, 5.0));
  for (uint64_t i = 1; absl::Now() < deadline; ++i) {
    const absl::Time t0 = absl::Now();
    s = db->Put(write_options, PositionKey(i), value);
    if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
    latencies.ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
  }
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  row.events = row.commands = latencies.ms.size();
  latencies.Fill(&row);
  row.note = "the WAL sync alone: the floor under the 1-client latency";
  return row;
}

// storeledger's WriteBatches of the stream, recorded without syncing, to
// `path` (length-prefixed); returns the events they hold.
absl::StatusOr<uint64_t> RecordWriteBatches(const std::string& db,
                                            const Stream& stream,
                                            const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  LedgerOptions options;
  options.sync = false;
  // Every key storeledger writes, the derived ones included (the layout
  // rows and their split by column family).
  options.write_behind = false;
  options.write_batch_tap = [&out](absl::string_view batch) {
    PutString(out, std::string(batch));
  };
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, options);
  if (!ledger.ok()) return ledger.status();
  std::vector<v1::Command> commands;
  commands.reserve(stream.size());
  for (size_t i = 0; i < stream.size(); ++i) commands.push_back(stream.base(i));
  for (auto& result : (*ledger)->ExecuteBatch(std::move(commands))) {
    if (!result.ok()) return result.status();
  }
  const uint64_t events = (*ledger)->log().head().position;
  ledger->reset();
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return events;
}

// The WriteBatches RecordWriteBatches wrote to `path`, in order.
std::vector<std::string> LoadWriteBatches(const std::string& path) {
  std::vector<std::string> batches;
  std::ifstream in(path, std::ios::binary);
  std::string batch;
  while (GetString(in, &batch)) batches.push_back(std::move(batch));
  return batches;
}

Row LayoutCeiling(const std::string& dir, const std::string& batches_path,
                  uint64_t events) {
  Row row;
  row.name = "ceiling: RocksDB, storeledger's own WriteBatches";
  row.kind = "layout";
  const std::vector<std::string> batches = LoadWriteBatches(batches_path);
  if (batches.empty()) {
    return Failed(row.name, absl::NotFoundError("no write batches recorded"));
  }
  // A fresh EventLog creates the column families in the same order, so the
  // column family ids inside the recorded batches name the same families.
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir);
  if (!log.ok()) return Failed(row.name, log.status());
  rocksdb::WriteOptions write_options;
  write_options.sync = true;
  uint64_t keys = 0;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  for (const std::string& rep : batches) {
    rocksdb::WriteBatch batch(rep);
    keys += batch.Count();
    rocksdb::Status s = (*log)->db()->Write(write_options, &batch);
    if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
  }
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  row.events = events;
  row.note = absl::StrFormat(
      "%d WriteBatches, %d keys (%.1f per event), storeledger's RocksDB "
      "options",
      batches.size(), keys,
      static_cast<double>(keys) / static_cast<double>(events));
  return row;
}

// The same WriteBatches split by column family, for the write-behind
// design (DESIGN.md §3 "What one append writes"): the part that cannot be
// recomputed from the log (events, head, Merkle nodes, outcomes) synced, and
// the derived part (stream index and heads, projections) either written
// after it without the WAL (`derived` = kUnlogged: RocksDB memtables as the
// write-behind memory, made durable by flushes) or left out (kLeftOut: what
// the synced path costs when the derived writes are made elsewhere, in bulk;
// an upper bound), or left out with the Merkle nodes too (kLeftOutWithTree:
// the tree is recomputable from the log as well, leaving the envelopes, the
// head and the outcomes). Measures what the contract change can give before
// it is built.
//
// kWindowed is the write-behind the design describes, as far as its writes
// go (docs/design-decisions.md): the derived writes kept in memory, newest
// value per key, and every kWindowEventsMax events written as one sorted
// SST file per column family, all ingested in one IngestExternalFiles call
// with the position they reach. It measures what collapsing a window's
// rewrites and skipping the memtables gives, the window's own inserts
// included, on the appending thread (a real one would move the SST writing
// to another; the CPU per event is the same).
enum class Derived { kUnlogged, kLeftOut, kLeftOutWithTree, kWindowed };

// The design's kWriteBehindEventsMax: events per window.
constexpr uint64_t kWindowEventsMax = 100'000;
// The derived position's key in "streams": no stream id starts with NUL.
constexpr char kWindowPositionKey[] = "\0derived";

class SplitByFamily : public rocksdb::WriteBatch::Handler {
 public:
  SplitByFamily(const std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& handles,
                std::set<uint32_t> derived, rocksdb::WriteBatch* logged,
                rocksdb::WriteBatch* behind)
      : handles_(handles),
        derived_(std::move(derived)),
        logged_(logged),
        behind_(behind) {}
  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    if (!handles_.count(cf)) return Unknown(cf);
    ++puts_[cf];
    return Target(cf)->Put(handles_.at(cf), key, value);
  }
  // Puts seen per column family (events: one per event).
  uint64_t puts(uint32_t cf) const {
    auto it = puts_.find(cf);
    return it == puts_.end() ? 0 : it->second;
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    if (!handles_.count(cf)) return Unknown(cf);
    return Target(cf)->Delete(handles_.at(cf), key);
  }

 private:
  static rocksdb::Status Unknown(uint32_t cf) {
    return rocksdb::Status::InvalidArgument("unknown column family " +
                                            std::to_string(cf));
  }
  rocksdb::WriteBatch* Target(uint32_t cf) {
    return derived_.count(cf) ? behind_ : logged_;
  }
  const std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& handles_;
  std::set<uint32_t> derived_;
  rocksdb::WriteBatch* logged_;
  rocksdb::WriteBatch* behind_;
  std::map<uint32_t, uint64_t> puts_;
};

// kWindowed's memory: per column family id, the newest value of each key
// written since the last ingestion (nullopt: deleted).
using Window =
    std::map<uint32_t,
             absl::btree_map<std::string, std::optional<std::string>>>;

class AddToWindow : public rocksdb::WriteBatch::Handler {
 public:
  explicit AddToWindow(Window* window) : window_(window) {}
  rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key,
                        const rocksdb::Slice& value) override {
    (*window_)[cf].insert_or_assign(key.ToString(), value.ToString());
    return rocksdb::Status::OK();
  }
  rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
    (*window_)[cf].insert_or_assign(key.ToString(), std::nullopt);
    return rocksdb::Status::OK();
  }

 private:
  Window* window_;
};

// Writes `window` as one SST file per column family in `dir` and ingests
// them in one call (atomic across the families), then empties it. Adds the
// keys written to *keys.
absl::Status IngestWindow(
    rocksdb::DB* db,
    const std::map<uint32_t, rocksdb::ColumnFamilyHandle*>& handles,
    const std::string& dir, Window* window, uint64_t* keys) {
  std::vector<rocksdb::IngestExternalFileArg> args;
  for (auto& [cf, entries] : *window) {
    if (entries.empty()) continue;
    rocksdb::ColumnFamilyHandle* handle = handles.at(cf);
    const rocksdb::Options options(db->GetDBOptions(), db->GetOptions(handle));
    rocksdb::SstFileWriter writer(rocksdb::EnvOptions(), options, handle);
    const std::string path = absl::StrCat(dir, "/window-", cf, ".sst");
    rocksdb::Status s = writer.Open(path);
    for (auto it = entries.begin(); s.ok() && it != entries.end(); ++it) {
      s = it->second.has_value() ? writer.Put(it->first, *it->second)
                                 : writer.Delete(it->first);
    }
    if (s.ok()) s = writer.Finish();
    if (!s.ok()) return absl::InternalError(s.ToString());
    *keys += entries.size();
    rocksdb::IngestExternalFileArg arg;
    arg.column_family = handle;
    arg.external_files = {path};
    arg.options.move_files = true;
    args.push_back(std::move(arg));
  }
  window->clear();
  if (args.empty()) return absl::OkStatus();
  rocksdb::Status s = db->IngestExternalFiles(args);
  if (!s.ok()) return absl::InternalError(s.ToString());
  return absl::OkStatus();
}

// Whether `column_family` (a name) holds the same keys and values in the
// two logs, but for keys starting with `ignored_prefix`; an error names
// the first difference.
absl::Status SameFamily(const EventLog& a, const EventLog& b,
                        rocksdb::ColumnFamilyHandle* (EventLog::*family)()
                            const,
                        absl::string_view ignored_prefix) {
  std::unique_ptr<rocksdb::Iterator> x(
      a.db()->NewIterator(rocksdb::ReadOptions(), (a.*family)()));
  std::unique_ptr<rocksdb::Iterator> y(
      b.db()->NewIterator(rocksdb::ReadOptions(), (b.*family)()));
  auto skip = [&](rocksdb::Iterator* it) {
    while (it->Valid() && it->key().starts_with(rocksdb::Slice(
                              ignored_prefix.data(), ignored_prefix.size()))) {
      it->Next();
    }
  };
  const std::string name = (a.*family)()->GetName();
  for (x->SeekToFirst(), y->SeekToFirst();
       skip(x.get()), skip(y.get()), x->Valid() && y->Valid();
       x->Next(), y->Next()) {
    if (x->key() != y->key() || x->value() != y->value()) {
      return absl::InternalError(absl::StrCat(
          name, " differs at key \"", absl::CEscape(x->key().ToString()),
          "\" / \"", absl::CEscape(y->key().ToString()), "\""));
    }
  }
  if (!x->status().ok() || !y->status().ok()) {
    return absl::InternalError(absl::StrCat(name, ": ", x->status().ToString(),
                                            " ", y->status().ToString()));
  }
  if (x->Valid() != y->Valid()) {
    return absl::InternalError(absl::StrCat(name, ": one has more keys"));
  }
  return absl::OkStatus();
}

// `layout_dir`: LayoutCeiling's database, which kWindowed's result is
// compared with.
Row SplitLayoutCeiling(const std::string& dir, const std::string& batches_path,
                       uint64_t events, Derived derived,
                       const std::string& layout_dir = "") {
  Row row;
  row.name = derived == Derived::kUnlogged  ? "layout split: derived unlogged"
             : derived == Derived::kLeftOut ? "layout split: derived left out"
             : derived == Derived::kWindowed
                 ? "layout split: derived windowed, SST"
                 : "layout split: derived and Merkle left out";
  row.kind = "layout-split";
  const std::vector<std::string> batches = LoadWriteBatches(batches_path);
  if (batches.empty()) {
    return Failed(row.name, absl::NotFoundError("no write batches recorded"));
  }
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir);
  if (!log.ok()) return Failed(row.name, log.status());
  rocksdb::DB* db = (*log)->db();
  std::map<uint32_t, rocksdb::ColumnFamilyHandle*> handles;
  for (rocksdb::ColumnFamilyHandle* handle :
       {(*log)->events_cf(), (*log)->streams_cf(), (*log)->commands_cf(),
        (*log)->meta_cf(), (*log)->projections_cf(), (*log)->merkle_cf()}) {
    handles[handle->GetID()] = handle;
  }
  std::set<uint32_t> derived_families = {(*log)->streams_cf()->GetID(),
                                         (*log)->projections_cf()->GetID()};
  if (derived == Derived::kLeftOutWithTree) {
    derived_families.insert((*log)->merkle_cf()->GetID());
  }
  std::vector<rocksdb::WriteBatch> logged(batches.size());
  std::vector<rocksdb::WriteBatch> behind(batches.size());
  std::vector<uint64_t> batch_events(batches.size());
  uint64_t logged_keys = 0;
  uint64_t behind_keys = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    rocksdb::WriteBatch recorded(batches[i]);
    SplitByFamily split(handles, derived_families, &logged[i], &behind[i]);
    rocksdb::Status s = recorded.Iterate(&split);
    if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
    logged_keys += logged[i].Count();
    behind_keys += behind[i].Count();
    batch_events[i] = split.puts((*log)->events_cf()->GetID());
  }
  rocksdb::WriteOptions synced;
  synced.sync = true;
  rocksdb::WriteOptions unlogged;
  unlogged.disableWAL = true;
  Window window;
  uint64_t window_events = 0;
  uint64_t windows = 0;
  uint64_t ingested_keys = 0;
  uint64_t position = 0;
  auto ingest = [&] {
    window[(*log)->streams_cf()->GetID()].insert_or_assign(
        std::string(kWindowPositionKey, sizeof(kWindowPositionKey) - 1),
        PositionKey(position));
    ++windows;
    window_events = 0;
    return IngestWindow(db, handles, dir, &window, &ingested_keys);
  };
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  for (size_t i = 0; i < batches.size(); ++i) {
    rocksdb::Status s = db->Write(synced, &logged[i]);
    if (s.ok() && derived == Derived::kUnlogged && behind[i].Count() > 0) {
      s = db->Write(unlogged, &behind[i]);
    }
    if (s.ok() && derived == Derived::kWindowed) {
      AddToWindow add(&window);
      s = behind[i].Iterate(&add);
      position += batch_events[i];
      window_events += batch_events[i];
      if (s.ok() && window_events >= kWindowEventsMax) {
        if (absl::Status ingested = ingest(); !ingested.ok()) {
          return Failed(row.name, ingested);
        }
      }
    }
    if (!s.ok()) return Failed(row.name, absl::InternalError(s.ToString()));
  }
  if (derived == Derived::kWindowed && window_events > 0) {
    if (absl::Status ingested = ingest(); !ingested.ok()) {
      return Failed(row.name, ingested);
    }
  }
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  row.events = events;
  if (derived == Derived::kWindowed) {
    // Not timed: the windows left the derived families as the synced
    // layout row did.
    EventLogOptions read_only;
    read_only.read_only = true;
    absl::StatusOr<std::unique_ptr<EventLog>> layout =
        EventLog::Open(layout_dir, read_only);
    if (!layout.ok()) return Failed(row.name, layout.status());
    for (auto family : {&EventLog::streams_cf, &EventLog::projections_cf}) {
      absl::Status same =
          SameFamily(**log, **layout, family,
                     absl::string_view(kWindowPositionKey,
                                       sizeof(kWindowPositionKey) - 1));
      if (!same.ok()) return Failed(row.name, same);
    }
  }
  const bool tree_behind = derived == Derived::kLeftOutWithTree;
  const std::string fate =
      derived == Derived::kUnlogged ? "written unlogged after each"
      : derived == Derived::kWindowed
          ? absl::StrFormat(
                "collapsed in memory and ingested as SST files every %d "
                "events: %d windows, %.1f keys per event written, the "
                "same derived keys as the layout row",
                kWindowEventsMax, windows,
                static_cast<double>(ingested_keys) /
                    static_cast<double>(events))
          : "not written";
  row.note = absl::StrFormat(
      "%.1f keys per event synced (events, head, %soutcomes), %.1f derived "
      "(stream index and heads, projections%s) %s",
      static_cast<double>(logged_keys) / static_cast<double>(events),
      tree_behind ? "" : "Merkle, ",
      static_cast<double>(behind_keys) / static_cast<double>(events),
      tree_behind ? ", Merkle nodes" : "", fate);
  return row;
}

// ---------------------------------------------------------------- storeledger

Row Apply(const std::string& db, const std::string& jsonl, uint64_t commands) {
  Row row;
  row.name = "storeledger apply FILE (JSON, batch path)";
  row.kind = "batch";
  std::istringstream in;
  std::ofstream out("/dev/null");
  std::ostringstream err;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  const int code = RunCli({"--db", db, "apply", jsonl}, in, out, err);
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  if (code != kExitOk && code != kExitUsage) {  // 2: some lines INVALID
    row.error = absl::StrCat("apply exited ", code, ": ", err.str());
    return row;
  }
  EventLogOptions options;
  options.read_only = true;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(db, options);
  if (!log.ok()) return Failed(row.name, log.status());
  row.events = (*log)->head().position;
  row.commands = commands;
  row.note = "in process; parse + ExecuteBatch + print, output to /dev/null";
  return row;
}

// How the group commit spent its time (Ledger::stats()), and how long the
// appends waited for the write-behinds (EventLog::write_behind_stats()).
std::string StatsNote(const Ledger& ledger) {
  const GroupCommitStats stats = ledger.stats();
  if (stats.groups == 0) return "no groups";
  const EventLog::WriteBehindStats behind = ledger.log().write_behind_stats();
  std::string note = "no write-behind; ";
  if (behind.count > 0) {
    note = absl::StrFormat(
        "%d write-behinds of %.0f events, %.1f ms each, longest %.1f ms; ",
        behind.count, static_cast<double>(behind.events) / behind.count,
        absl::ToDoubleMilliseconds(behind.total) / behind.count,
        absl::ToDoubleMilliseconds(behind.longest));
  }
  absl::StrAppendFormat(
      &note,
      "%d groups of %.1f commands (%d written by their leader, %d apart "
      "syncs of %.0f us); per group: decide %.0f us, wait for the previous "
      "%.0f us, write %.0f us",
      stats.groups, static_cast<double>(stats.commands) / stats.groups,
      stats.written_by_leader, stats.syncs,
      stats.syncs > 0 ? absl::ToDoubleMicroseconds(stats.syncing) / stats.syncs
                      : 0.0,
      absl::ToDoubleMicroseconds(stats.deciding) / stats.groups,
      absl::ToDoubleMicroseconds(stats.waiting) / stats.groups,
      absl::ToDoubleMicroseconds(stats.writing) / stats.groups);
  return note;
}

Row Batch(const std::string& db, const Stream& stream) {
  Row row;
  row.name = absl::StrFormat("storeledger ExecuteBatch, groups of %d",
                             kGroupCommandsMax);
  row.kind = "batch";
  const double stream_mb = ProcFieldMb("/proc/self/status", "VmRSS:");
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open(db, BenchLedgerOptions());
  if (!ledger.ok()) return Failed(row.name, ledger.status());
  row.note = absl::StrFormat("RSS includes %.0f MB of commands held in memory",
                             stream_mb);
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  // All of it in one call: ExecuteBatch cuts it into groups of
  // kGroupCommandsMax and pipelines them (one decided while the one before
  // it is written).
  std::vector<v1::Command> commands;
  commands.reserve(stream.size());
  for (size_t i = 0; i < stream.size(); ++i) commands.push_back(stream.base(i));
  for (auto& result : (*ledger)->ExecuteBatch(std::move(commands))) {
    if (!result.ok()) return Failed(row.name, result.status());
  }
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  row.events = (*ledger)->log().head().position;
  row.commands = stream.size();
  row.note += "; " + StatsNote(**ledger);
  return row;
}

// The stream split among `clients` by store: client k runs the commands of
// stores with index % clients == k, in stream order, round after round.
std::vector<std::vector<uint32_t>> Partition(const Stream& stream,
                                             int clients) {
  std::vector<std::vector<uint32_t>> shares(clients);
  for (size_t i = 0; i < stream.size(); ++i) {
    const int store = Stream::StoreIndex(stream.base(i).command_id());
    shares[store < 0 ? 0 : store % clients].push_back(static_cast<uint32_t>(i));
  }
  return shares;
}

Row Clients(const std::string& db, const Stream& stream, int clients,
            double seconds) {
  Row row;
  row.name = absl::StrFormat("storeledger %d client%s, Execute, durable ack",
                             clients, clients == 1 ? "" : "s");
  row.kind = clients == 1 ? "one" : "concurrent";
  row.clients = clients;
  absl::StatusOr<std::unique_ptr<Ledger>> opened =
      Ledger::Open(db, BenchLedgerOptions());
  if (!opened.ok()) return Failed(row.name, opened.status());
  Ledger& ledger = **opened;
  const std::vector<std::vector<uint32_t>> shares = Partition(stream, clients);
  // The commands of the first rounds are made before the clock starts, so
  // that the clients' threads spend the run waiting for the ledger, not
  // building commands on the cores it runs on (a client past its share
  // builds the rest as it goes).
  const size_t made_max = static_cast<size_t>(
      std::min(seconds * kClientCommandsMadePerSecond,
               static_cast<double>(kClientCommandsMadeMax)));
  // made[k][j]: client k's j-th command (round j / share, command
  // shares[k][j % share]); nullopt where that round skips the command.
  std::vector<std::vector<std::optional<v1::Command>>> made(clients);
  for (int k = 0; k < clients && !shares[k].empty(); ++k) {
    const size_t mine = made_max / clients;
    for (size_t j = 0; j < mine; ++j) {
      made[k].push_back(
          stream.Get(j / shares[k].size(), shares[k][j % shares[k].size()]));
    }
  }
  row.note = absl::StrFormat(
      "RSS includes %.0f MB of the stream and the commands made before the "
      "clock started",
      ProcFieldMb("/proc/self/status", "VmRSS:"));
  std::vector<Latencies> latencies(clients);
  std::vector<uint64_t> counts(clients, 0);
  std::atomic<bool> stop{false};
  std::mutex error_mu;
  absl::Status error;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  const absl::Time deadline = start + absl::Seconds(seconds);
  std::vector<std::thread> threads;
  for (int k = 0; k < clients; ++k) {
    threads.emplace_back([&, k] {
      latencies[k].ms.reserve(1 << 16);
      if (shares[k].empty()) return;
      for (size_t j = 0; !stop.load(); ++j) {
        if (absl::Now() >= deadline) {
          stop.store(true);
          return;
        }
        std::optional<v1::Command> command =
            j < made[k].size() ? std::move(made[k][j])
                               : stream.Get(j / shares[k].size(),
                                            shares[k][j % shares[k].size()]);
        if (!command.has_value()) continue;
        const absl::Time t0 = absl::Now();
        absl::StatusOr<v1::CommandResult> result = ledger.Execute(*command);
        const absl::Time t1 = absl::Now();
        if (!result.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          error = result.status();
          stop.store(true);
          return;
        }
        latencies[k].ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
        ++counts[k];
      }
    });
  }
  for (std::thread& t : threads) t.join();
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  row.cpu_s = CpuSeconds() - cpu_start;
  if (!error.ok()) return Failed(row.name, error);
  Latencies all;
  for (int k = 0; k < clients; ++k) {
    all.ms.insert(all.ms.end(), latencies[k].ms.begin(), latencies[k].ms.end());
    row.commands += counts[k];
  }
  all.Fill(&row);
  row.events = ledger.log().head().position;
  row.note += "; " + StatsNote(ledger);
  return row;
}

// The heap: jemalloc's own statistics when the program runs on it (the
// default build, CMakeLists.txt), else glibc's mallinfo2.
struct HeapMb {
  const char* allocator = "malloc";
  double in_use = 0;
  double held = 0;
};
HeapMb Heap() {
  using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
  static const auto mallctl =
      reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  HeapMb heap;
  if (mallctl != nullptr) {
    uint64_t epoch = 1;
    size_t epoch_size = sizeof(epoch);
    mallctl("epoch", &epoch, &epoch_size, &epoch, epoch_size);  // refresh
    size_t allocated = 0, resident = 0, size = sizeof(size_t);
    if (mallctl("stats.allocated", &allocated, &size, nullptr, 0) == 0 &&
        mallctl("stats.resident", &resident, &size, nullptr, 0) == 0) {
      heap.allocator = "jemalloc";
      heap.in_use = allocated / 1048576.0;
      heap.held = resident / 1048576.0;
      return heap;
    }
  }
  const struct mallinfo2 info = mallinfo2();
  heap.in_use = (info.uordblks + info.hblkhd) / 1048576.0;
  heap.held = (info.arena + info.hblkhd) / 1048576.0;
  return heap;
}

// Peak RSS over a long apply, sampled as it grows.
std::vector<Row> Memory(const std::string& db, const Stream& stream,
                        uint64_t target_events) {
  std::vector<Row> rows;
  absl::StatusOr<std::unique_ptr<Ledger>> opened =
      Ledger::Open(db, BenchLedgerOptions());
  if (!opened.ok()) return {Failed("memory", opened.status())};
  Ledger& ledger = **opened;
  const uint64_t early = std::min<uint64_t>(1'000'000, target_events / 10);
  uint64_t next_report = early;
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  absl::Time segment_start = start;
  uint64_t segment_events = 0;
  std::vector<v1::Command> commands;
  for (size_t round = 0; ledger.log().head().position < target_events;
       ++round) {
    for (size_t i = 0; i < stream.size(); ++i) {
      std::optional<v1::Command> command = stream.Get(round, i);
      if (!command.has_value()) continue;
      commands.push_back(*std::move(command));
      // A few groups per call, so that they pipeline (as apply does).
      if (commands.size() < kQueuedCommandsMax && i + 1 < stream.size()) {
        continue;
      }
      for (auto& result : ledger.ExecuteBatch(std::move(commands))) {
        if (!result.ok()) return {Failed("memory", result.status())};
      }
      commands.clear();
      const uint64_t head = ledger.log().head().position;
      if (head >= next_report || head >= target_events) {
        Row row;
        row.kind = "memory";
        row.name = absl::StrFormat("after %d events", head);
        row.events = head;
        row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
        row.cpu_s = CpuSeconds() - cpu_start;
        row.rss_mb = ProcFieldMb("/proc/self/status", "VmHWM:");
        const double segment =
            absl::ToDoubleSeconds(absl::Now() - segment_start);
        // Where RocksDB's memory is (all column families).
        auto property_mb = [&](const char* name) {
          uint64_t total = 0;
          for (rocksdb::ColumnFamilyHandle* cf :
               {ledger.log().events_cf(), ledger.log().streams_cf(),
                ledger.log().commands_cf(), ledger.log().meta_cf(),
                ledger.log().projections_cf()}) {
            uint64_t value = 0;
            if (ledger.log().db()->GetIntProperty(cf, name, &value)) {
              total += value;
            }
          }
          return total / 1048576.0;
        };
        uint64_t block_cache = 0, pinned = 0;
        ledger.log().db()->GetIntProperty("rocksdb.block-cache-usage",
                                          &block_cache);
        ledger.log().db()->GetIntProperty("rocksdb.block-cache-pinned-usage",
                                          &pinned);
        const HeapMb heap = Heap();
        row.note = absl::StrFormat(
            "VmRSS %.0f MB (%s: %.0f in use of %.0f held; RocksDB: "
            "memtables %.0f, block cache %.0f of which pinned %.0f, table "
            "readers %.0f); %.0f events/s since the previous line",
            ProcFieldMb("/proc/self/status", "VmRSS:"), heap.allocator,
            heap.in_use, heap.held,
            property_mb("rocksdb.cur-size-all-mem-tables"),
            block_cache / 1048576.0, pinned / 1048576.0,
            property_mb("rocksdb.estimate-table-readers-mem"),
            (head - segment_events) / std::max(segment, 1e-9));
        rows.push_back(row);
        std::cerr << "storeledger-bench: memory " << row.name << ": peak "
                  << row.rss_mb << " MB; " << row.note << std::endl;
        segment_start = absl::Now();
        segment_events = head;
        next_report += early;
        if (head >= target_events) return rows;
      }
    }
  }
  return rows;
}

// ---------------------------------------------------------------- PostgreSQL

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// Runs a shell command line; returns its exit status.
int Shell(const std::string& line) {
  const int status = std::system(line.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class PgServer {
 public:
  // Starts a server in `dir` (created), as `nobody` when we are root.
  static absl::StatusOr<std::unique_ptr<PgServer>> Start(
      const std::string& bin, const std::string& dir) {
    auto server = std::unique_ptr<PgServer>(new PgServer());
    server->bin_ = bin;
    server->dir_ = dir;
    std::filesystem::create_directories(dir);
    if (geteuid() == 0) {
      // PostgreSQL refuses to run as root; the directory (and the path to
      // it) must be usable by the user it runs as.
      struct passwd* nobody = getpwnam("nobody");
      if (nobody == nullptr) {
        return absl::FailedPreconditionError(
            "running as root and no user nobody");
      }
      if (chown(dir.c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
        return absl::InternalError(
            absl::StrCat("chown ", dir, ": ", std::strerror(errno)));
      }
      chmod(dir.c_str(), 0700);
      server->as_ = "runuser -u nobody -- ";
    }
    const std::string data = dir + "/data";
    const std::string log = dir + "/server.log";
    if (Shell(absl::StrCat(server->as_, bin, "/initdb -D ", data,
                           " -U bench --auth=trust -E UTF8 --no-locale >", dir,
                           "/initdb.log 2>&1")) != 0) {
      return absl::InternalError(
          absl::StrCat("initdb failed; see ", dir, "/initdb.log"));
    }
    if (Shell(absl::StrCat(
            server->as_, bin, "/pg_ctl -D ", data, " -l ", log, " -w -t 60",
            " -o \"-c listen_addresses='' -c unix_socket_directories='", dir,
            "' -c max_connections=200\" start >/dev/null 2>&1")) != 0) {
      return absl::InternalError(
          absl::StrCat("pg_ctl start failed; see ", log));
    }
    server->started_ = true;
    std::ifstream pid_file(data + "/postmaster.pid");
    pid_file >> server->postmaster_pid_;
    return server;
  }

  ~PgServer() {
    if (started_) {
      Shell(absl::StrCat(as_, bin_, "/pg_ctl -D ", dir_,
                         "/data -m fast -w stop >/dev/null 2>&1"));
    }
  }

  std::string conninfo() const {
    return absl::StrCat("host=", dir_, " user=bench dbname=postgres");
  }

  // Summed PSS of the postmaster and its children, in MB.
  double PssMb() const {
    double total = 0;
    DIR* proc = opendir("/proc");
    if (proc == nullptr) return 0;
    while (struct dirent* entry = readdir(proc)) {
      int pid = 0;
      if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
      if (pid != postmaster_pid_ && ParentOf(pid) != postmaster_pid_) continue;
      const double pss =
          ProcFieldMb(absl::StrCat("/proc/", pid, "/smaps_rollup"), "Pss:");
      if (pss > 0) total += pss;
    }
    closedir(proc);
    return total;
  }

 private:
  static int ParentOf(int pid) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "PPid:")) {
        int ppid = 0;
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(5)), &ppid);
        return ppid;
      }
    }
    return -1;
  }

  std::string bin_, dir_, as_;
  bool started_ = false;
  int postmaster_pid_ = -1;
};

// Samples the server's PSS in the background; peak() since the last reset.
class PssSampler {
 public:
  explicit PssSampler(const PgServer* server) : server_(server) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        const double pss = server_->PssMb();
        {
          std::lock_guard<std::mutex> lock(mu_);
          peak_ = std::max(peak_, pss);
        }
        absl::SleepFor(kRssSampleEvery);
      }
    });
  }
  ~PssSampler() {
    stop_.store(true);
    thread_.join();
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = 0;
  }
  double peak() {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  const PgServer* server_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  double peak_ = 0;
  std::thread thread_;
};

constexpr char kPgSchema[] =
    "CREATE TABLE events ("
    "  global_position bigserial NOT NULL,"
    "  stream_id text NOT NULL,"
    "  version bigint NOT NULL,"
    "  command_id text NOT NULL,"
    "  data bytea NOT NULL,"
    "  recorded_at timestamptz NOT NULL DEFAULT now(),"
    "  PRIMARY KEY (stream_id, version))";
// An append with an exact expected version (v - 1): the stream's last
// version must be that, else an error aborts the whole transaction. The
// primary key catches two writers racing for the same version.
constexpr char kPgAppendFunction[] =
    "CREATE FUNCTION append_exact(s text, v bigint, c text, d bytea) "
    "RETURNS void AS $$ BEGIN "
    "  IF COALESCE((SELECT max(version) FROM events WHERE stream_id = s), 0) "
    "     <> v - 1 THEN "
    "    RAISE EXCEPTION 'stream %: expected version %', s, v - 1 "
    "      USING ERRCODE = 'serialization_failure'; "
    "  END IF; "
    "  INSERT INTO events (stream_id, version, command_id, data) "
    "    VALUES (s, v, c, d); "
    "END $$ LANGUAGE plpgsql";
constexpr char kPgAppendExact[] = "SELECT append_exact($1, $2, $3, $4)";
// Expected version "any" (the rejections stream, as in storeledger).
constexpr char kPgAppendAny[] =
    "INSERT INTO events (stream_id, version, command_id, data) "
    "SELECT $1, COALESCE(max(version), 0) + 1, $3, $4 FROM events "
    "WHERE stream_id = $1";

class PgClient {
 public:
  static absl::StatusOr<std::unique_ptr<PgClient>> Connect(
      const std::string& conninfo) {
    auto client = std::unique_ptr<PgClient>(new PgClient());
    client->conn_ = PQconnectdb(conninfo.c_str());
    if (PQstatus(client->conn_) != CONNECTION_OK) {
      return absl::UnavailableError(PQerrorMessage(client->conn_));
    }
    for (const auto& [name, sql] :
         {std::pair{"exact", kPgAppendExact}, std::pair{"any", kPgAppendAny}}) {
      // text, int8, text, bytea ("any" does not use $2: name its type).
      static const Oid kTypes[4] = {25, 20, 25, 17};
      PGresult* r = PQprepare(client->conn_, name, sql, 4, kTypes);
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      if (!ok) return absl::InternalError(PQerrorMessage(client->conn_));
    }
    if (PQenterPipelineMode(client->conn_) != 1) {
      return absl::InternalError("libpq pipeline mode unavailable");
    }
    return client;
  }
  ~PgClient() {
    if (conn_ != nullptr) PQfinish(conn_);
  }

  static absl::Status Exec(const std::string& conninfo,
                           const std::string& sql) {
    PGconn* conn = PQconnectdb(conninfo.c_str());
    absl::Status status;
    if (PQstatus(conn) != CONNECTION_OK) {
      status = absl::UnavailableError(PQerrorMessage(conn));
    } else {
      PGresult* r = PQexec(conn, sql.c_str());
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        status = absl::InternalError(PQerrorMessage(conn));
      }
      PQclear(r);
    }
    PQfinish(conn);
    return status;
  }

  // One transaction appending `events` (pipelined: one round trip). Returns
  // kAborted on an expected-version conflict or a lost race (the caller may
  // retry), ok when committed.
  absl::Status Append(const std::vector<const StoredEvent*>& events,
                      const std::string& suffix) {
    Send("BEGIN");
    std::vector<std::string> streams(events.size()), commands(events.size()),
        versions(events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      const StoredEvent& e = *events[i];
      const bool any = e.stream_id == kRejectionsStream;
      streams[i] = any ? e.stream_id : e.stream_id + suffix;
      commands[i] = e.command_id + suffix;
      versions[i] = std::to_string(e.version);
      const char* values[4] = {streams[i].c_str(), versions[i].c_str(),
                               commands[i].c_str(), e.bytes.data()};
      const int lengths[4] = {0, 0, 0, static_cast<int>(e.bytes.size())};
      const int formats[4] = {0, 0, 0, 1};
      PQsendQueryPrepared(conn_, any ? "any" : "exact", 4, values, lengths,
                          formats, 0);
    }
    Send("COMMIT");
    PQpipelineSync(conn_);
    // Results: BEGIN, each insert, COMMIT (each followed by a null), then
    // the sync point. After an error the rest report PIPELINE_ABORTED.
    absl::Status status;
    const size_t expected = events.size() + 2;
    for (size_t i = 0; i < expected; ++i) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        if (status.ok())
          status = absl::InternalError("a pipeline result is missing");
        break;
      }
      if (PQresultStatus(r) == PGRES_FATAL_ERROR && status.ok()) {
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const std::string code = state != nullptr ? state : "";
        // 23505: lost a race for a version; 40001: expected version.
        status = (code == "23505" || code == "40001")
                     ? absl::AbortedError(PQresultErrorMessage(r))
                     : absl::InternalError(PQresultErrorMessage(r));
      }
      PQclear(r);
      if (PGresult* end = PQgetResult(conn_); end != nullptr) PQclear(end);
    }
    if (PGresult* sync = PQgetResult(conn_); sync != nullptr) PQclear(sync);
    if (!status.ok()) {
      // The transaction is aborted (an error) or must not commit (0 rows):
      // roll it back.
      PQexitPipelineMode(conn_);
      PGresult* r = PQexec(conn_, "ROLLBACK");
      PQclear(r);
      PQenterPipelineMode(conn_);
    }
    return status;
  }

 private:
  void Send(const char* sql) {
    PQsendQueryParams(conn_, sql, 0, nullptr, nullptr, nullptr, nullptr, 0);
  }
  PGconn* conn_ = nullptr;
};

// Events grouped by the command that wrote them, in log order.
std::vector<std::vector<const StoredEvent*>> ByCommand(
    const std::vector<StoredEvent>& events) {
  std::vector<std::vector<const StoredEvent*>> commands;
  for (const StoredEvent& e : events) {
    if (commands.empty() ||
        commands.back().front()->command_id != e.command_id) {
      commands.emplace_back();
    }
    commands.back().push_back(&e);
  }
  return commands;
}

std::vector<Row> Postgres(const Flags& flags, const std::string& dir,
                          const std::string& events_path) {
  std::vector<Row> rows;
  absl::StatusOr<std::unique_ptr<PgServer>> server =
      PgServer::Start(flags.pg_bin, dir);
  if (!server.ok()) return {Failed("PostgreSQL", server.status())};
  const std::string conninfo = (*server)->conninfo();
  PssSampler sampler(server->get());
  const std::vector<StoredEvent> events = LoadEvents(events_path);
  const auto commands = ByCommand(events);

  auto reset_table = [&]() -> absl::Status {
    absl::Status s = PgClient::Exec(
        conninfo,
        "DROP FUNCTION IF EXISTS append_exact; DROP TABLE IF EXISTS events");
    if (!s.ok()) return s;
    s = PgClient::Exec(conninfo, kPgSchema);
    if (!s.ok()) return s;
    s = PgClient::Exec(conninfo, kPgAppendFunction);
    if (!s.ok()) return s;
    return PgClient::Exec(conninfo, "CHECKPOINT");
  };

  // Batch: transactions of kBatch events, one connection.
  {
    Row row;
    row.name = absl::StrFormat("PostgreSQL 15: txn of %d events", kBatch);
    row.kind = "pg-batch";
    if (absl::Status s = reset_table(); !s.ok()) return {Failed(row.name, s)};
    absl::StatusOr<std::unique_ptr<PgClient>> client =
        PgClient::Connect(conninfo);
    if (!client.ok()) return {Failed(row.name, client.status())};
    sampler.Reset();
    const absl::Time start = absl::Now();
    const double cpu_start = CpuSeconds();
    for (size_t i = 0; i < events.size(); i += kBatch) {
      std::vector<const StoredEvent*> batch;
      for (size_t j = i; j < std::min(events.size(), i + kBatch); ++j) {
        batch.push_back(&events[j]);
      }
      if (absl::Status s = (*client)->Append(batch, ""); !s.ok()) {
        return {Failed(row.name, s)};
      }
    }
    row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    row.cpu_s = CpuSeconds() - cpu_start;
    row.events = events.size();
    row.commands = commands.size();
    row.rss_mb = sampler.peak();
    row.note = "libpq pipeline mode; RSS: server processes, summed PSS";
    rows.push_back(row);
  }

  // Clients: one command's events per transaction.
  for (int clients : flags.clients) {
    Row row;
    row.name = absl::StrFormat("PostgreSQL 15: %d client%s, txn per command",
                               clients, clients == 1 ? "" : "s");
    row.kind = clients == 1 ? "pg-one" : "pg-concurrent";
    row.clients = clients;
    if (absl::Status s = reset_table(); !s.ok()) return {Failed(row.name, s)};
    std::vector<std::vector<size_t>> shares(clients);
    for (size_t i = 0; i < commands.size(); ++i) {
      const int store = Stream::StoreIndex(commands[i].front()->command_id);
      shares[store < 0 ? 0 : store % clients].push_back(i);
    }
    std::vector<Latencies> latencies(clients);
    std::vector<uint64_t> counts(clients, 0), event_counts(clients, 0),
        retries(clients, 0);
    std::atomic<bool> stop{false};
    std::mutex error_mu;
    absl::Status error;
    sampler.Reset();
    const absl::Time start = absl::Now();
    const double cpu_start = CpuSeconds();
    const absl::Time deadline = start + absl::Seconds(flags.seconds);
    std::vector<std::thread> threads;
    for (int k = 0; k < clients; ++k) {
      threads.emplace_back([&, k] {
        absl::StatusOr<std::unique_ptr<PgClient>> client =
            PgClient::Connect(conninfo);
        if (!client.ok()) {
          std::lock_guard<std::mutex> lock(error_mu);
          error = client.status();
          stop.store(true);
          return;
        }
        for (size_t round = 0; !stop.load(); ++round) {
          if (shares[k].empty()) return;
          const std::string suffix =
              round == 0 ? "" : absl::StrCat("~r", round);
          for (size_t i : shares[k]) {
            if (stop.load() || absl::Now() >= deadline) {
              stop.store(true);
              return;
            }
            const absl::Time t0 = absl::Now();
            absl::Status s;
            // A lost race is retried, as an application would: on the shared
            // rejections stream, and on a store stream another client's
            // command also appends to (applyPolicy delists products in many
            // stores; its client may not have written the version this one
            // expects yet). Log order is a total order, so the earliest
            // pending command can always go on: waiting cannot deadlock.
            for (int attempt = 0; attempt < kPgAttemptsMax; ++attempt) {
              s = (*client)->Append(commands[i], suffix);
              if (!absl::IsAborted(s)) break;
              // The client this one waits for may have stopped at the
              // deadline: then this command is not counted, not an error.
              if (stop.load() || absl::Now() >= deadline) {
                stop.store(true);
                return;
              }
              ++retries[k];
              if (attempt >= kPgSpinAttempts) {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
              }
            }
            const absl::Time t1 = absl::Now();
            if (!s.ok()) {
              std::lock_guard<std::mutex> lock(error_mu);
              error = s;
              stop.store(true);
              return;
            }
            latencies[k].ms.push_back(absl::ToDoubleMilliseconds(t1 - t0));
            ++counts[k];
            event_counts[k] += commands[i].size();
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    row.cpu_s = CpuSeconds() - cpu_start;
    if (!error.ok()) {
      rows.push_back(Failed(row.name, error));
      continue;
    }
    Latencies all;
    uint64_t retried = 0;
    for (int k = 0; k < clients; ++k) {
      all.ms.insert(all.ms.end(), latencies[k].ms.begin(),
                    latencies[k].ms.end());
      row.commands += counts[k];
      row.events += event_counts[k];
      retried += retries[k];
    }
    all.Fill(&row);
    row.rss_mb = sampler.peak();
    row.note = absl::StrFormat("%d retries after lost races", retried);
    rows.push_back(row);
  }
  return rows;
}

// ---------------------------------------------------------------- the table

std::string Ratio(double a, double b) {
  if (a <= 0 || b <= 0) return "-";
  return absl::StrFormat("%.2fx", a / b);
}
std::string Ms(double ms) { return ms < 0 ? "-" : absl::StrFormat("%.2f", ms); }

void PrintTable(const std::vector<Row>& rows, const std::string& pg_skipped) {
  const Row* ceiling = nullptr;
  const Row* layout = nullptr;      // storeledger's own WriteBatches
  const Row* sync_floor = nullptr;  // one synced put at a time
  const Row* pg_batch = nullptr;
  std::map<int, const Row*> pg_clients;
  for (const Row& row : rows) {
    if (!row.error.empty()) continue;
    if (row.kind == "ceiling") ceiling = &row;
    if (row.kind == "layout") layout = &row;
    if (row.kind == "sync") sync_floor = &row;
    if (row.kind == "pg-batch") pg_batch = &row;
    if (row.kind == "pg-one" || row.kind == "pg-concurrent") {
      pg_clients[row.clients] = &row;
    }
  }
  std::cout << absl::StrFormat("%-48s %10s %10s %8s %8s %8s %8s %9s %8s %9s\n",
                               "", "events/s", "commands/s", "p50 ms", "p99 ms",
                               "p999 ms", "RSS MB", "/ceiling", "/layout",
                               "/peer");
  for (const Row& row : rows) {
    if (row.kind == "memory") continue;
    if (!row.error.empty()) {
      std::cout << absl::StrFormat("%-48s FAILED: %s\n", row.name, row.error);
      continue;
    }
    // The peer of a batch row is the batch peer (events/s); of an N-client
    // row, PostgreSQL with N clients (commands/s).
    std::string vs_peer = "-";
    if (row.kind == "batch" && pg_batch != nullptr) {
      vs_peer = Ratio(row.events_per_s(), pg_batch->events_per_s());
    } else if ((row.kind == "one" || row.kind == "concurrent") &&
               pg_clients.count(row.clients)) {
      vs_peer = Ratio(row.commands_per_s(),
                      pg_clients[row.clients]->commands_per_s());
    }
    // The ceiling of a batch row is the batch ceiling (events/s); of a row
    // of clients waiting for each command, one synced put at a time
    // (commands/s against puts/s).
    std::string vs_ceiling = "-";
    const bool waits = row.kind == "one" || row.kind == "concurrent" ||
                       row.kind == "pg-one" || row.kind == "pg-concurrent";
    if (waits && sync_floor != nullptr) {
      vs_ceiling = Ratio(row.commands_per_s(), sync_floor->commands_per_s());
    } else if (!waits && row.kind != "sync" && ceiling != nullptr) {
      vs_ceiling = Ratio(row.events_per_s(), ceiling->events_per_s());
    }
    // Batch rows against the same writes without the deciding.
    std::string vs_layout = "-";
    if ((row.kind == "batch" || row.kind == "layout" ||
         row.kind == "layout-split") &&
        layout != nullptr) {
      vs_layout = Ratio(row.events_per_s(), layout->events_per_s());
    }
    std::cout << absl::StrFormat(
        "%-48s %10.0f %10s %8s %8s %8s %8.0f %9s %8s %9s\n", row.name,
        row.events_per_s(),
        row.commands > 0 ? absl::StrFormat("%.0f", row.commands_per_s()) : "-",
        Ms(row.p50_ms), Ms(row.p99_ms), Ms(row.p999_ms), row.rss_mb, vs_ceiling,
        vs_layout, vs_peer);
  }
  if (!pg_skipped.empty()) std::cout << pg_skipped << "\n";
  std::cout << "\n/ceiling: batch rows against the synced WriteBatch ceiling "
               "(events/s); client rows against one synced put at a time "
               "(commands/s).\n/layout: batch rows against storeledger's own "
               "WriteBatches replayed into RocksDB (events/s).\n/peer: batch "
               "rows against PostgreSQL's batch "
               "row (events/s); N-client rows against PostgreSQL with N "
               "clients (commands/s).\n";
  std::cout << "\nnotes:\n";
  for (const Row& row : rows) {
    if (row.kind == "memory" || !row.error.empty()) continue;
    std::string cpu;
    if (row.cpu_s > 0 && !absl::StartsWith(row.kind, "pg") && row.events > 0) {
      cpu = absl::StrFormat("; process CPU %.2f s (%.1f us/event)", row.cpu_s,
                            1e6 * row.cpu_s / row.events);
    }
    std::cout << absl::StrFormat(
        "  %s: %d commands, %d events in %.2f s%s%s%s\n", row.name,
        row.commands, row.events, row.seconds, cpu,
        row.note.empty() ? "" : "; ", row.note);
  }
  bool memory = false;
  double early_peak = 0;
  for (const Row& row : rows) {
    if (row.kind != "memory" || !row.error.empty()) continue;
    if (!memory) {
      std::cout
          << "\nmemory (ExecuteBatch of the stream repeated with fresh ids):\n";
      early_peak = row.rss_mb;
      memory = true;
    }
    std::cout << absl::StrFormat(
        "  %-24s peak RSS %6.0f MB (%+.1f%% vs first line); %s\n", row.name,
        row.rss_mb,
        early_peak > 0 ? 100.0 * (row.rss_mb - early_peak) / early_peak : 0.0,
        row.note);
  }
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  if (!flags.malloc_default) {
    // A fixed mmap threshold: glibc otherwise raises it each time a large
    // block is freed (a flushed memtable's arena, a group's WriteBatch), and
    // from then on serves such blocks from its heaps, which keep the freed
    // memory: RSS then creeps up with the log though live memory does not
    // (storeledger-bench --malloc-default shows it). See README.
    mallopt(M_MMAP_THRESHOLD, kMmapThresholdBytes);
  }
  g_no_fork = flags.no_fork;
  g_no_sync = flags.no_sync;
  g_write_behind = !flags.no_write_behind;
  std::string dir = flags.dir;
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                                       "/storeledger-bench-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = pattern;
  } else {
    std::filesystem::create_directories(dir);
  }
  chmod(dir.c_str(), 0755);  // the PostgreSQL user walks through it
  const std::string jsonl = dir + "/stream.jsonl";
  const std::string events_path = dir + "/events.bin";
  std::vector<Row> rows;
  auto add = [&](std::vector<Row> more) {
    for (Row& row : more) rows.push_back(std::move(row));
  };

  uint64_t stream_commands = 0;
  {
    // The stream, written once (in a child: the parent stays small).
    std::vector<Row> info = InChild("writing the simulate stream", [&] {
      Stream stream(flags.stores, flags.seed);
      std::ofstream out(jsonl);
      for (size_t i = 0; i < stream.size(); ++i)
        out << ToJson(stream.base(i)) << "\n";
      Row row;
      row.kind = "info";
      row.commands = stream.size();
      return std::vector<Row>{row};
    });
    for (const Row& row : info) stream_commands = row.commands;
  }
  std::cout << absl::StrFormat(
      "storeledger-bench: %d cores; stream: simulate --stores %d --seed %d "
      "(%d commands); work dir %s\n",
      std::thread::hardware_concurrency(), flags.stores, flags.seed,
      stream_commands, dir);

  if (flags.Runs("apply") || flags.Runs("ceiling") || flags.Runs("pg")) {
    std::vector<Row> apply = InChild("apply", [&] {
      return std::vector<Row>{Apply(dir + "/apply-db", jsonl, stream_commands)};
    });
    if (flags.Runs("apply")) add(apply);
    InChild("exporting the envelopes apply wrote", [&] {
      absl::Status s = ExportEvents(dir + "/apply-db", events_path);
      if (!s.ok()) std::cerr << "export: " << s << std::endl;
      return std::vector<Row>{};
    });
  }
  if (flags.Runs("ceiling")) {
    const std::string batches_path = dir + "/write-batches.bin";
    uint64_t recorded_events = 0;
    std::vector<Row> recorded =
        InChild("recording storeledger's WriteBatches (unsynced)", [&] {
          Stream stream(flags.stores, flags.seed);
          absl::StatusOr<uint64_t> events =
              RecordWriteBatches(dir + "/record-db", stream, batches_path);
          Row row;
          row.kind = "info";
          if (events.ok()) row.events = *events;
          return std::vector<Row>{row};
        });
    if (!recorded.empty()) recorded_events = recorded.front().events;
    std::vector<Row> ceiling = InChild("ceiling", [&] {
      return std::vector<Row>{
          Ceiling(dir + "/ceiling-db", events_path),
          LayoutCeiling(dir + "/layout-db", batches_path, recorded_events),
          SplitLayoutCeiling(dir + "/split-unlogged-db", batches_path,
                             recorded_events, Derived::kUnlogged),
          SplitLayoutCeiling(dir + "/split-left-out-db", batches_path,
                             recorded_events, Derived::kLeftOut),
          SplitLayoutCeiling(dir + "/split-no-tree-db", batches_path,
                             recorded_events, Derived::kLeftOutWithTree),
          SplitLayoutCeiling(dir + "/split-windowed-db", batches_path,
                             recorded_events, Derived::kWindowed,
                             dir + "/layout-db"),
          SyncLatency(dir + "/sync-db", flags.seconds)};
    });
    rows.insert(rows.begin(), ceiling.begin(), ceiling.end());
  }
  if (flags.Runs("batch")) {
    add(InChild("ExecuteBatch", [&] {
      Stream stream(flags.stores, flags.seed);
      return std::vector<Row>{Batch(dir + "/batch-db", stream)};
    }));
  }
  for (int clients : flags.clients) {
    if (!flags.Runs("clients")) break;
    add(InChild(absl::StrCat(clients, " client(s)"), [&] {
      Stream stream(flags.stores, flags.seed);
      return std::vector<Row>{
          Clients(absl::StrCat(dir, "/clients-", clients, "-db"), stream,
                  clients, flags.seconds)};
    }));
  }
  std::string pg_skipped;
  if (!flags.Runs("pg")) {
  } else if (flags.no_pg) {
    pg_skipped = "PostgreSQL peer: skipped (--no-pg)";
  } else if (!Exists(flags.pg_bin + "/initdb") ||
             !Exists(flags.pg_bin + "/pg_ctl")) {
    pg_skipped = absl::StrCat(
        "PostgreSQL peer: skipped -- no initdb/pg_ctl in ", flags.pg_bin,
        " (install PostgreSQL 15: scripts/bench installs it, or apt-get "
        "install postgresql-15; or pass --pg-bin DIR)");
  } else {
    add(InChild("PostgreSQL",
                [&] { return Postgres(flags, dir + "/pg", events_path); }));
  }
  if (flags.memory_events > 0) {
    add(InChild("memory", [&] {
      Stream stream(flags.stores, flags.seed);
      return Memory(dir + "/memory-db", stream, flags.memory_events);
    }));
  }
  PrintTable(rows, pg_skipped);
  if (!flags.keep) std::filesystem::remove_all(dir);
  for (const Row& row : rows) {
    if (!row.error.empty()) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) { return storeledger::Main(argc, argv); }
