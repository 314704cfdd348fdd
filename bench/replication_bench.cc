// storeledger-replication-bench: the cost of replication on NATS JetStream.
// One run starts a real nats-server cluster on loopback (3
// servers, or 1 with --servers 1) and, for each mode -- no replication,
// --ack local, --ack replicated -- a fresh ledger in a temporary directory
// (synced RocksDB), and measures:
//   batch    ExecuteBatch of --batch-commands openStore commands: commands/s
//   1 client   sequential Execute: commands/s, p50 and p99 latency
//   16 clients concurrent Execute: commands/s, p50 and p99 latency
//
//   build/bin/storeledger-replication-bench [--servers 3] [--batch-commands 20000]
//                                           [--client-commands 200]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replication/replica.h"
#include "tests/support/nats_cluster.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

v1::Command OpenStore(const std::string& store) {
  return *ParseCommandJson(absl::StrCat(
      R"({"commandId":")", store,
      R"(","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":")",
      store, R"(","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})"));
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<size_t>(p * values.size()))];
}

int Run(int servers, int batch_commands, int client_commands) {
  absl::StatusOr<std::unique_ptr<testing::NatsCluster>> nats =
      testing::NatsCluster::Start(servers);
  if (!nats.ok()) {
    std::fprintf(stderr, "%s\n", std::string(nats.status().message()).c_str());
    return 1;
  }
  std::printf("mode,workload,commands,seconds,commands_per_s,p50_ms,p99_ms\n");
  const char* modes[] = {"none", "ack-local", "ack-replicated"};
  for (int mode = 0; mode < 3; ++mode) {
    testing::TempDir dir;
    std::unique_ptr<Replica> replica;
    LedgerOptions options;
    if (mode > 0) {
      ReplicaOptions replica_options;
      replica_options.nats_urls = (*nats)->urls();
      replica_options.partition = static_cast<uint32_t>(mode);
      replica_options.name = modes[mode];
      replica_options.ack = mode == 1 ? ReplicaOptions::Ack::kLocal
                                      : ReplicaOptions::Ack::kReplicated;
      absl::StatusOr<std::unique_ptr<Replica>> connected;
      const absl::Time deadline = absl::Now() + absl::Seconds(20);
      do {
        connected = Replica::Connect(replica_options);
      } while (!connected.ok() && absl::Now() < deadline &&
               (absl::SleepFor(absl::Milliseconds(200)), true));
      if (!connected.ok()) {
        std::fprintf(stderr, "%s\n",
                     std::string(connected.status().message()).c_str());
        return 1;
      }
      replica = *std::move(connected);
      options.before_write = replica->BeforeWrite();
    }
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(dir.Sub("db"), options);
    if (!ledger.ok()) return 1;
    if (replica != nullptr) {
      if (!replica->Start(ledger->get()).ok()) return 1;
      while (replica->status().role != ReplicaRole::kLeader) {
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    // Batch apply.
    std::vector<v1::Command> commands;
    for (int i = 0; i < batch_commands; ++i) {
      commands.push_back(OpenStore(absl::StrCat("b", i)));
    }
    absl::Time start = absl::Now();
    for (const auto& result : (*ledger)->ExecuteBatch(std::move(commands))) {
      if (!result.ok()) return 1;
    }
    double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf("%s,batch,%d,%.3f,%.0f,,\n", modes[mode], batch_commands,
                seconds, batch_commands / seconds);
    // 1 and 16 clients.
    for (int clients : {1, 16}) {
      std::vector<std::vector<double>> latencies(clients);
      std::vector<std::thread> threads;
      std::atomic<bool> failed{false};
      start = absl::Now();
      for (int c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
          for (int i = 0; i < client_commands; ++i) {
            const absl::Time t = absl::Now();
            if (!(*ledger)
                     ->Execute(OpenStore(absl::StrCat("c", clients, "-", c,
                                                      "-", i)))
                     .ok()) {
              failed = true;
              return;
            }
            latencies[c].push_back(absl::ToDoubleMilliseconds(absl::Now() - t));
          }
        });
      }
      for (std::thread& t : threads) t.join();
      if (failed) return 1;
      seconds = absl::ToDoubleSeconds(absl::Now() - start);
      std::vector<double> all;
      for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
      std::printf("%s,%d clients,%zu,%.3f,%.0f,%.2f,%.2f\n", modes[mode],
                  clients, all.size(), seconds, all.size() / seconds,
                  Percentile(all, 0.50), Percentile(all, 0.99));
    }
    replica.reset();  // before the ledger closes
  }
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  int servers = 3, batch = 20000, client = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--servers") == 0) servers = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--batch-commands") == 0) batch = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--client-commands") == 0) client = std::atoi(argv[i + 1]);
  }
  return storeledger::Run(servers, batch, client);
}
