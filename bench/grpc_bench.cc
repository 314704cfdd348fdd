// storeledger-grpc-bench: commands/s and latency p50/p99 through storeledgerd
// over loopback gRPC beside the embedded Ledger::Execute, at 1, 16 and 32
// clients, in the same run on the same machine, and each gRPC row against the
// embedded 16-client row (the yardstick for storeledgerd). Modes:
//   embedded     Ledger::Execute in-process, one command at a time per client;
//   grpc         unary Execute, one command at a time per client;
//   grpc-stream  one ExecuteStream per client with up to --window commands
//                awaiting their results (as `storeledger --server apply`),
//                which the server executes in batches.
//
//   storeledger-grpc-bench [--seconds S] [--clients 1,16,32] [--no-sync]
//                          [--window N] [--dir DIR]
//
// Each (mode, clients) run gets a fresh database; each client opens a store,
// adds 99 products to it, opens the next, ..., for S seconds. Latency is
// from sending a command to receiving its result.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_commands.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "core/policy.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {
namespace {

constexpr char kToken[] = "bench-writer-token-0123456789";
// A client moves to a fresh store every this many commands: an AddProduct
// costs more the more products its store has, and the figures are about
// the transport, not about big stores.
constexpr int kProductsPerStore = 100;

v1::Command OpenStore(const std::string& store) {
  v1::Command command;
  command.set_command_id(absl::StrCat("open-", store));
  *command.mutable_occurred_at() = ToProto(absl::FromUnixSeconds(1717207200));
  v1::OpenStore* body = command.mutable_open_store();
  body->set_store_id(store);
  body->set_merchant_id("bench-m");
  body->set_kind(v1::MINI_STORE);
  body->set_subject(v1::ENTERPRISE);
  return command;
}

// Client c's i-th command.
v1::Command CommandFor(int c, int i) {
  const std::string store =
      absl::StrCat("bench", c, "-", i / kProductsPerStore);
  return i % kProductsPerStore == 0 ? OpenStore(store)
                                    : BenchAddProduct(store, i);
}

struct Figures {
  uint64_t commands = 0;
  double seconds = 0;
  double p50_us = 0;
  double p99_us = 0;
};

// Throughput and latency percentiles of a run that started at `start`.
Figures Summarize(absl::Time start,
                  const std::vector<std::vector<double>>& latencies,
                  bool failed) {
  Figures figures;
  figures.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  if (failed) {
    std::cerr << "storeledger-grpc-bench: a command failed\n";
    std::exit(1);
  }
  std::sort(all.begin(), all.end());
  figures.commands = all.size();
  if (!all.empty()) {
    figures.p50_us = all[all.size() / 2];
    figures.p99_us = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  return figures;
}

// The Ledger::ExecuteBatch calls the server made for the row above.
void PrintBatches(const BatchStats& stats) {
  std::printf(
      "#   %llu ExecuteBatch calls, %.1f commands each on average, "
      "largest %llu\n",
      static_cast<unsigned long long>(stats.batches),
      stats.batches == 0 ? 0.0
                         : static_cast<double>(stats.commands) / stats.batches,
      static_cast<unsigned long long>(stats.largest_batch_commands));
}

// Runs `clients` threads, each calling execute(client, command) in a loop
// for `duration`; returns throughput and latency.
template <typename ExecuteFn>
Figures Run(int clients, absl::Duration duration, ExecuteFn execute) {
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = 0; !failed && absl::Now() < end; ++i) {
        const v1::Command command = CommandFor(c, i);
        const absl::Time t0 = absl::Now();
        if (!execute(c, command)) {
          failed = true;
          break;
        }
        latencies[c].push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return Summarize(start, latencies, failed);
}

// Each client pipelines its commands on one ExecuteStream, at most `window`
// of them awaiting their results, for `duration`.
Figures RunStreams(
    int clients, absl::Duration duration, int window,
    const std::vector<std::unique_ptr<v1::Ledger::Stub>>& stubs) {
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      grpc::ClientContext context;
      context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
      auto stream = stubs[c]->ExecuteStream(&context);
      std::deque<absl::Time> sent;  // of the commands awaiting results
      for (int i = 0;;) {
        if (!failed && absl::Now() < end &&
            sent.size() < static_cast<size_t>(window)) {
          sent.push_back(absl::Now());
          if (!stream->Write(CommandFor(c, i++))) {
            failed = true;
            break;
          }
          continue;
        }
        if (sent.empty()) break;
        v1::CommandResult result;
        if (!stream->Read(&result) || result.status() != v1::ACCEPTED) {
          failed = true;
          break;
        }
        latencies[c].push_back(
            absl::ToDoubleMicroseconds(absl::Now() - sent.front()));
        sent.pop_front();
      }
      stream->WritesDone();
      v1::CommandResult extra;
      while (stream->Read(&extra)) {
      }
      if (!stream->Finish().ok()) failed = true;
    });
  }
  for (std::thread& t : threads) t.join();
  return Summarize(start, latencies, failed);
}

struct Measured {
  std::string mode;
  int clients = 0;
  Figures figures;
};
std::vector<Measured>& AllMeasured() {
  static std::vector<Measured>* measured = new std::vector<Measured>();
  return *measured;
}

void Print(const char* mode, int clients, const Figures& f) {
  AllMeasured().push_back({mode, clients, f});
  std::printf("%-11s %7d %9llu %8.2f %11.0f %8.0f %8.0f\n", mode, clients,
              static_cast<unsigned long long>(f.commands), f.seconds,
              f.commands / f.seconds, f.p50_us, f.p99_us);
  std::fflush(stdout);
}

int Main(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags = Flags::Parse(args, {"no-sync"});
  if (!flags.ok() ||
      !flags->CheckKnown({"seconds", "clients", "no-sync", "window", "dir"})
           .ok()) {
    std::cerr << "usage: storeledger-grpc-bench [--seconds S] [--clients "
                 "1,16,32] [--no-sync] [--window N] [--dir DIR]\n";
    return 2;
  }
  int window = static_cast<int>(kRemoteApplyWindow);
  if (std::optional<std::string> w = flags->Get("window")) {
    if (!absl::SimpleAtoi(*w, &window) || window < 1 || window > 4096) {
      std::cerr << "--window must be 1..4096\n";
      return 2;
    }
  }
  double seconds = 3;
  if (std::optional<std::string> s = flags->Get("seconds")) {
    if (!absl::SimpleAtod(*s, &seconds) || seconds <= 0) {
      std::cerr << "--seconds must be a positive number\n";
      return 2;
    }
  }
  std::vector<int> levels;
  for (absl::string_view part : absl::StrSplit(
           flags->GetOr("clients", "1,16,32"), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 1024) {
      std::cerr << "--clients takes a list of 1..1024\n";
      return 2;
    }
    levels.push_back(n);
  }
  const bool sync = !flags->Has("no-sync");
  std::string base = flags->GetOr("dir", "");
  bool remove_base = false;
  if (base.empty()) {
    char pattern[] = "/tmp/storeledger-grpc-bench-XXXXXX";
    if (mkdtemp(pattern) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    base = pattern;
    remove_base = true;
  }
  const absl::Duration duration = absl::Seconds(seconds);
  std::printf(
      "# %s, sync %s, %.1f s per run, grpc-stream window %d, %u "
      "hardware threads\n",
      "OpenStore + 99 AddProduct per store per client", sync ? "on" : "off",
      seconds, window, std::thread::hardware_concurrency());
  std::printf("%-11s %7s %9s %8s %11s %8s %8s\n", "mode", "clients", "commands",
              "seconds", "commands/s", "p50_us", "p99_us");
  int run = 0;
  for (int clients : levels) {
    {
      LedgerOptions options;
      options.sync = sync;
      absl::StatusOr<std::unique_ptr<Ledger>> ledger =
          Ledger::Open(absl::StrCat(base, "/run", ++run), options);
      if (!ledger.ok()) {
        std::cerr << ledger.status() << "\n";
        return 1;
      }
      Print("embedded", clients,
            Run(clients, duration, [&](int, const v1::Command& command) {
              absl::StatusOr<v1::CommandResult> r = (*ledger)->Execute(command);
              return r.ok() && r->status() == v1::ACCEPTED;
            }));
    }
    for (const bool streaming : {false, true}) {
      ServerOptions options;
      options.db_dir = absl::StrCat(base, "/run", ++run);
      options.listen = "127.0.0.1:0";
      options.tokens = *TokenTable::Parse(absl::StrCat(kToken, " writer"));
      options.ledger.sync = sync;
      absl::StatusOr<std::unique_ptr<LedgerServer>> server =
          LedgerServer::Start(std::move(options));
      if (!server.ok()) {
        std::cerr << server.status() << "\n";
        return 1;
      }
      // One connection per client, as separate processes would have.
      std::vector<std::unique_ptr<v1::Ledger::Stub>> stubs;
      for (int c = 0; c < clients; ++c) {
        grpc::ChannelArguments channel_args;
        channel_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
        stubs.push_back(v1::Ledger::NewStub(grpc::CreateCustomChannel(
            (*server)->address(), grpc::InsecureChannelCredentials(),
            channel_args)));
      }
      if (streaming) {
        Print("grpc-stream", clients,
              RunStreams(clients, duration, window, stubs));
        PrintBatches((*server)->service().stream_batch_stats());
      } else {
        Print("grpc", clients,
              Run(clients, duration, [&](int c, const v1::Command& command) {
                grpc::ClientContext context;
                context.AddMetadata("authorization",
                                    absl::StrCat("Bearer ", kToken));
                v1::CommandResult result;
                grpc::Status status =
                    stubs[c]->Execute(&context, command, &result);
                return status.ok() && result.status() == v1::ACCEPTED;
              }));
        PrintBatches((*server)->service().unary_batch_stats());
      }
      (*server)->Shutdown();
    }
  }
  // Every gRPC row against the embedded row with the most clients up to 16
  // (16 by default): what storeledgerd keeps of the ledger behind it.
  const Measured* yardstick = nullptr;
  for (const Measured& m : AllMeasured()) {
    if (m.mode == "embedded" && m.clients <= 16 &&
        (yardstick == nullptr || m.clients > yardstick->clients)) {
      yardstick = &m;
    }
  }
  if (yardstick != nullptr && yardstick->figures.seconds > 0) {
    const double base_rate =
        yardstick->figures.commands / yardstick->figures.seconds;
    for (const Measured& m : AllMeasured()) {
      if (m.mode == "embedded" || m.figures.seconds <= 0) continue;
      std::printf("# %-11s %3d clients: %.2fx the embedded %d-client row\n",
                  m.mode.c_str(), m.clients,
                  m.figures.commands / m.figures.seconds / base_rate,
                  yardstick->clients);
    }
  }
  if (remove_base) std::filesystem::remove_all(base);
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  return storeledger::Main(std::vector<std::string>(argv + 1, argv + argc));
}
