// storeledger-replication-bench: the cost of replication on NATS JetStream.
// One run starts a real nats-server cluster on loopback (3
// servers, or 1 with --servers 1) and, for each mode -- no replication,
// --ack local, --ack replicated -- a fresh ledger in a temporary directory
// (synced RocksDB), and measures:
//   batch    ExecuteBatch of --batch-commands openStore commands: commands/s
//   1 client   sequential Execute: commands/s, p50 and p99 latency
//   16 clients concurrent Execute: commands/s, p50 and p99 latency
// With --ack replicated, a follower (an in-process read replica) follows
// the leader throughout: its lag in events behind the leader's head,
// sampled every 5 ms (p50, max), and how long after the last
// acknowledgement it holds the leader's head; then a fresh follower
// replays the whole stream: its apply rate in events/s.
// Then the failover loop (--kills N, 0 to skip): three storeledgerd
// --replicate processes (build/bin/storeledgerd, beside this program), 4
// clients writing through whoever leads; N times, at a random moment, the
// leader is killed with SIGKILL and the time to the first command
// acknowledged by another replica is measured (median, max); the killed
// one is restarted as a follower before the next round.
//
//   build/bin/storeledger-replication-bench [--servers 3] [--batch-commands
//   20000]
//                                           [--client-commands 200] [--kills
//                                           10]
//                                           [--seed S]
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_commands.h"
#include "grpcpp/grpcpp.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replication/jetstream.h"
#include "replication/replica.h"
#include "server/cluster_router.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/nats_cluster.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

// A store of its own merchant, as stores are: a merchant record lists its
// stores, and one merchant with every store of the run (as before
// 2026-12-07) made each openStore rewrite a list of tens of thousands.
v1::Command OpenStore(const std::string& store) {
  return BenchOpenStore(store, absl::StrCat("m-", store));
}

// A read replica in this process following `partition`, and its lag
// behind `leader` sampled every 5 ms until StopSampling.
class Follower {
 public:
  static std::unique_ptr<Follower> Start(const std::vector<std::string>& urls,
                                         uint32_t partition,
                                         const std::string& dir,
                                         const Ledger* leader) {
    auto follower = std::make_unique<Follower>();
    ReplicaOptions options;
    options.nats_urls = urls;
    options.partition = partition;
    options.name = "follower";
    options.follow_only = true;
    absl::StatusOr<std::unique_ptr<Replica>> replica =
        Replica::Connect(options);
    if (!replica.ok()) return nullptr;
    follower->replica_ = *std::move(replica);
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir);
    if (!ledger.ok()) return nullptr;
    follower->ledger_ = *std::move(ledger);
    if (!follower->replica_->Start(follower->ledger_.get()).ok())
      return nullptr;
    Follower* f = follower.get();
    follower->sampler_ = std::thread([f, leader] {
      while (!f->stop_) {
        const uint64_t ahead = leader->log().head().position;
        const uint64_t at = f->ledger_->log().head().position;
        f->lag_.push_back(ahead > at ? static_cast<double>(ahead - at) : 0);
        absl::SleepFor(absl::Milliseconds(5));
      }
    });
    return follower;
  }
  ~Follower() {
    StopSampling();
    replica_.reset();  // before its ledger closes
  }
  // True once the follower's head reaches `head` (at most 5 minutes).
  bool WaitFor(uint64_t head) const {
    const absl::Time deadline = absl::Now() + absl::Minutes(5);
    while (ledger_->log().head().position < head) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }
  std::vector<double> StopSampling() {
    stop_ = true;
    if (sampler_.joinable()) sampler_.join();
    return lag_;
  }

 private:
  std::unique_ptr<Replica> replica_;
  std::unique_ptr<Ledger> ledger_;
  std::atomic<bool> stop_{false};
  std::thread sampler_;
  std::vector<double> lag_;  // the sampler's
};

int Run(int servers, int batch_commands, int client_commands) {
  absl::StatusOr<std::unique_ptr<testing::NatsCluster>> nats =
      testing::NatsCluster::Start(servers);
  if (!nats.ok()) {
    std::fprintf(stderr, "%s\n", std::string(nats.status().message()).c_str());
    return 1;
  }
  std::printf("mode,workload,commands,seconds,commands_per_s,p50_ms,p99_ms\n");
  std::vector<std::string> follower_rows;
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
    // With --ack replicated, a read replica follows throughout.
    std::unique_ptr<Follower> follower;
    if (mode == 2) {
      follower = Follower::Start((*nats)->urls(), static_cast<uint32_t>(mode),
                                 dir.Sub("follower"), ledger->get());
      if (follower == nullptr) return 1;
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
                     ->Execute(
                         OpenStore(absl::StrCat("c", clients, "-", c, "-", i)))
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
    if (follower != nullptr) {
      const uint64_t head = (*ledger)->log().head().position;
      const absl::Time last_ack = absl::Now();
      if (!follower->WaitFor(head)) return 1;
      const double behind = absl::ToDoubleMilliseconds(absl::Now() - last_ack);
      std::vector<double> lag = follower->StopSampling();
      follower_rows.push_back(absl::StrFormat(
          "live (during the runs above),%d,,,%.0f,%.0f,%.1f", head,
          Percentile(lag, 0.50), Percentile(lag, 1.0), behind));
      follower.reset();
      // A fresh follower replays the whole stream.
      const absl::Time started = absl::Now();
      follower = Follower::Start((*nats)->urls(), static_cast<uint32_t>(mode),
                                 dir.Sub("fresh"), ledger->get());
      if (follower == nullptr || !follower->WaitFor(head)) return 1;
      const double replay_seconds =
          absl::ToDoubleSeconds(absl::Now() - started);
      follower->StopSampling();
      follower_rows.push_back(
          absl::StrFormat("replay from empty,%d,%.3f,%.0f,,,", head,
                          replay_seconds, head / replay_seconds));
      follower.reset();
    }
    replica.reset();  // before the ledger closes
  }
  std::printf(
      "\nfollower,events,seconds,events_per_s,lag_p50_events,"
      "lag_max_events,at_head_after_last_ack_ms\n");
  for (const std::string& row : follower_rows) std::printf("%s\n", row.c_str());
  return 0;
}

// ---- Failover: storeledgerd processes, leader killed with SIGKILL.

struct Replicad {
  std::string address;
  std::string db;
  std::string log;
  std::unique_ptr<testing::ChildProcess> process;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::Ledger::Stub> stub;
};

int Failover(int servers, int kills, uint64_t seed) {
  absl::StatusOr<std::unique_ptr<testing::NatsCluster>> nats =
      testing::NatsCluster::Start(servers);
  if (!nats.ok()) return 1;
  absl::StatusOr<std::unique_ptr<JetStream>> js;
  const absl::Time connect_deadline = absl::Now() + absl::Seconds(20);
  do {
    js = JetStream::Connect((*nats)->urls());
  } while (!js.ok() && absl::Now() < connect_deadline);
  if (!js.ok()) return 1;
  // The stream and the lease bucket first: a storeledgerd that finds the
  // fresh cluster not ready to make them exits.
  const int copies = servers >= 3 ? 3 : 1;
  absl::Status made;
  do {
    made = (*js)->EnsureStream(0, copies);
    if (made.ok()) made = (*js)->EnsureLeaseBucket(kLeaseTtlDefault, copies);
  } while (!made.ok() && absl::Now() < connect_deadline + absl::Seconds(20) &&
           (absl::SleepFor(absl::Milliseconds(200)), true));
  if (!made.ok()) {
    std::fprintf(stderr, "%s\n", std::string(made.message()).c_str());
    return 1;
  }
  testing::TempDir dir;
  std::vector<Replicad> replicas(3);
  auto start = [&](Replicad& r) {
    testing::ChildOptions options;
    options.argv = {StoreledgerdPath(),
                    "--db",
                    r.db,
                    "--listen",
                    r.address,
                    "--replicate",
                    (*nats)->urls_flag(),
                    "--shutdown-grace-ms",
                    "500"};
    options.stderr_path = r.log;
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
        testing::ChildProcess::Start(options);
    if (process.ok()) r.process = *std::move(process);
    return process.ok();
  };
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<int> port = testing::FreeLoopbackPort();
    if (!port.ok()) return 1;
    replicas[i].address = absl::StrCat("127.0.0.1:", *port);
    replicas[i].db = dir.Sub(absl::StrCat("r", i));
    replicas[i].log = dir.Sub(absl::StrCat("r", i, ".log"));
    replicas[i].channel =
        ReplicaChannel(replicas[i].address, grpc::InsecureChannelCredentials());
    replicas[i].stub = v1::Ledger::NewStub(replicas[i].channel);
    if (!start(replicas[i])) return 1;
  }
  std::atomic<int> leader{-1};
  std::atomic<bool> stop{false};
  std::thread watcher([&] {
    while (!stop) {
      absl::StatusOr<std::optional<LeaseEntry>> lease =
          (*js)->GetLease(LeaseKey(0));
      int found = -1;
      if (lease.ok() && lease->has_value()) {
        for (int i = 0; i < 3; ++i) {
          if (replicas[i].address == (*lease)->holder) found = i;
        }
      }
      leader = found;
      absl::SleepFor(absl::Milliseconds(10));
    }
  });
  std::mutex mu;
  std::vector<std::pair<absl::Time, int>> acks;  // when, by which replica
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        const int to = leader;
        if (to < 0) {
          absl::SleepFor(absl::Milliseconds(5));
          continue;
        }
        grpc::ClientContext context;
        context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
        v1::CommandResult result;
        if (AwaitReplica(*replicas[to].channel, kReplicaConnectWait) &&
            replicas[to]
                .stub
                ->Execute(&context, OpenStore(absl::StrCat("f", c, "-", i)),
                          &result)
                .ok()) {
          std::lock_guard<std::mutex> lock(mu);
          acks.emplace_back(absl::Now(), to);
        } else {
          absl::SleepFor(absl::Milliseconds(5));
        }
      }
    });
  }
  std::mt19937_64 random(seed);
  std::vector<double> seconds;
  int status = 0;
  for (int round = 0; round < kills && status == 0; ++round) {
    absl::SleepFor(absl::Milliseconds(500 + static_cast<int>(random() % 1500)));
    // Wait for a leader that is acknowledging.
    const absl::Time steady_deadline = absl::Now() + absl::Seconds(30);
    int victim = -1;
    while (absl::Now() < steady_deadline && victim < 0) {
      const int l = leader;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (l >= 0 && !acks.empty() && acks.back().second == l) victim = l;
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (victim < 0) {
      std::fprintf(stderr, "round %d: no leader acknowledging\n", round);
      status = 1;
      break;
    }
    const absl::Time killed_at = absl::Now();
    replicas[victim].process->Kill(SIGKILL);
    replicas[victim].process->Wait();
    std::optional<absl::Time> first;
    const absl::Time deadline = killed_at + absl::Seconds(30);
    while (!first.has_value() && absl::Now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mu);
        for (auto it = acks.rbegin();
             it != acks.rend() && it->first > killed_at; ++it) {
          if (it->second != victim) first = it->first;
        }
      }
      absl::SleepFor(absl::Milliseconds(1));
    }
    if (!first.has_value()) {
      std::fprintf(stderr, "round %d: no acknowledgement after the kill\n",
                   round);
      status = 1;
      break;
    }
    seconds.push_back(absl::ToDoubleSeconds(*first - killed_at));
    std::fprintf(stderr, "failover %d: %.3f s\n", round, seconds.back());
    if (!start(replicas[victim])) status = 1;
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  watcher.join();
  for (Replicad& r : replicas) {
    if (r.process != nullptr) {
      r.process->Kill(SIGTERM);
      r.process->Wait();
    }
  }
  if (status != 0) {
    std::fprintf(stderr, "failover loop failed (logs under %s)\n",
                 dir.Sub("").c_str());
    return status;
  }
  std::printf("\nfailover,kills,median_s,max_s,seed\n");
  std::printf(
      "leader SIGKILL to first ack on another replica,%zu,%.3f,%.3f,%llu\n",
      seconds.size(), Percentile(seconds, 0.50), Percentile(seconds, 1.0),
      static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  int servers = 3, batch = 20000, client = 200, kills = 10;
  uint64_t seed = std::random_device()();
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--servers") == 0)
      servers = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--batch-commands") == 0)
      batch = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--client-commands") == 0)
      client = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--kills") == 0) kills = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--seed") == 0)
      seed = std::strtoull(argv[i + 1], nullptr, 10);
  }
  if (batch > 0) {
    if (int status = storeledger::Run(servers, batch, client); status != 0) {
      return status;
    }
  }
  return kills > 0 ? storeledger::Failover(servers, kills, seed) : 0;
}
