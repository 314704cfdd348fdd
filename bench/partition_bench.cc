// storeledger-partition-bench: a partitioned cluster (issue 15,
// docs/cluster.md "Partitions") on this machine. For each P of
// --partitions: a fresh 3-server nats-server cluster on loopback (the tests'
// harness, tests/support/nats_cluster.h), the cluster created with P
// partitions (InitCluster, as `storeledger cluster init`), and one
// storeledgerd per partition (build/bin/storeledgerd, beside this program):
// one replica a partition, as in partition_test, so each is its partition's
// leader; --replicate with storeledgerd's default --ack replicated, synced
// RocksDB unless --no-sync. Every client knows node 0's address only, as a
// user who knows one address would, so about (P-1)/P of the commands are
// routed. Measured for each P:
//   batch openStore      --batch-commands openStore, stores of --merchants
//                        merchants (spread over the partitions by the
//                        placement hash), over one ExecuteStream to node 0:
//                        commands/s (each also creates its store directory
//                        entry, a NATS KV create)
//   batch addProduct     then one addProduct to each of those stores, the
//                        same way (no directory entry): commands/s
//   N clients via node 0 --clients clients, unary Execute to node 0, one
//                        command at a time, --client-commands each: each
//                        client opens a store (of a merchant drawn from
//                        --merchants), adds --products-per-store products
//                        to it, opens the next, as storeledger-grpc-bench:
//                        commands/s, p50 and p99 latency, and apart the p50
//                        of the openStore commands, which also create their
//                        store directory entry (a NATS KV create)
//   N clients to leader  the same load (same merchants, new store ids), each
//                        command sent to its partition's leader directly
//   ... marked routed    the same again, each call marked as a router marks
//                        the calls it sends on (PrepareRoutedCall), so the
//                        leader serves it itself without its router: what
//                        the router's path costs a unary call
// and the routing overhead: the p50 of the commands of partitions other
// than 0 (the routed ones) through node 0 beside the p50 of the same
// partitions' commands sent to their leader. First (unless --no-baseline),
// the same batch and clients against one storeledgerd --replicate on a
// nats-server cluster where `cluster init` never ran: an unpartitioned
// ledger, no router, no store directory. Rows are CSV; vs_1_partition and
// vs_unpartitioned are a row's rate over the same workload's there.
//
// The cores of this machine are shared by every partition's storeledgerd,
// the nats-servers and the clients: a cluster rate here is not P machines'
// worth. What carries to many machines is the per-partition rate and the
// routing overhead (docs/performance.md "Partitions").
//
//   build/bin/storeledger-partition-bench [--partitions 1,2,4]
//       [--batch-commands 4000] [--clients 16] [--client-commands 100]
//       [--products-per-store 9] [--merchants 1000] [--no-sync] [--no-baseline]
//       [--seed S]
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/bench_commands.h"
#include "cluster/placement.h"
#include "grpcpp/grpcpp.h"
#include "json/json.h"
#include "replication/jetstream.h"
#include "replication/replica.h"
#include "server/cluster_router.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/nats_cluster.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(30);
constexpr absl::Duration kCallDeadline = absl::Seconds(60);

struct BenchFlags {
  std::vector<uint32_t> partitions = {1, 2, 4};
  int batch_commands = 4000;
  int clients = 16;
  int client_commands = 100;
  int products_per_store = 9;
  int merchants = 1000;
  bool no_sync = false;
  bool baseline = true;
  uint64_t seed = std::random_device()();
};

// The last `bytes` of the file at `path` (a node's log, for an error).
std::string Tail(const std::string& path, size_t bytes = 2000) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

// Retries `attempt` until it succeeds or `timeout` passes: its last status.
absl::Status Retry(const std::function<absl::Status()>& attempt,
                   absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status status = attempt();
  while (!status.ok() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
    status = attempt();
  }
  return status;
}

// P storeledgerd processes, node p the only replica (so the leader) of
// partition p, on their own nats-server cluster; with `partitions` 0, one
// storeledgerd of an unpartitioned ledger (no `cluster init`).
class Cluster {
 public:
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(uint32_t partitions,
                                                        bool no_sync) {
    const uint32_t nodes = std::max(partitions, 1u);
    auto cluster = std::unique_ptr<Cluster>(new Cluster());
    absl::StatusOr<std::unique_ptr<testing::NatsCluster>> nats =
        testing::NatsCluster::Start(3);
    if (!nats.ok()) return nats.status();
    cluster->nats_ = *std::move(nats);
    absl::StatusOr<std::unique_ptr<JetStream>> js;
    // A fresh cluster elects its JetStream meta leader a moment after its
    // servers accept connections: connect and init until it answers.
    // Unpartitioned: the stream and the lease bucket first, as a
    // storeledgerd that finds the fresh cluster not ready to make them exits.
    absl::Status made = Retry(
        [&] {
          js = JetStream::Connect(cluster->nats_->urls());
          if (!js.ok()) return js.status();
          if (partitions > 0) return InitCluster(**js, partitions, 3).status();
          absl::Status s = (*js)->EnsureStream(0, 3);
          return s.ok() ? (*js)->EnsureLeaseBucket(kLeaseTtlDefault, 3) : s;
        },
        kStartTimeout);
    if (!made.ok()) return made;
    for (uint32_t p = 0; p < nodes; ++p) {
      absl::StatusOr<int> port = testing::FreeLoopbackPort();
      if (!port.ok()) return port.status();
      Node& node = cluster->nodes_.emplace_back();
      node.address = absl::StrCat("127.0.0.1:", *port);
      node.log = cluster->dir_.Sub(absl::StrCat("p", p, ".log"));
      testing::ChildOptions options;
      options.argv = {StoreledgerdPath(),
                      "--db",
                      cluster->dir_.Sub(absl::StrCat("p", p)),
                      "--listen",
                      node.address,
                      "--replicate",
                      cluster->nats_->urls_flag(),
                      "--partition",
                      absl::StrCat(p),
                      "--shutdown-grace-ms",
                      "500"};
      if (no_sync) options.argv.push_back("--no-sync");
      options.stderr_path = node.log;
      absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
          testing::ChildProcess::Start(options);
      if (!process.ok()) return process.status();
      node.process = *std::move(process);
    }
    for (uint32_t p = 0; p < nodes; ++p) {
      const Node& node = cluster->nodes_[p];
      absl::Status leads = Retry(
          [&] {
            absl::StatusOr<std::optional<std::string>> leader =
                (*js)->KvGet(kLeaderBucket, LeaseKey(p));
            if (!leader.ok()) return leader.status();
            if (leader->has_value() && **leader == node.address) {
              return absl::OkStatus();
            }
            return absl::UnavailableError("not the leader yet");
          },
          kStartTimeout);
      if (!leads.ok()) {
        return absl::UnavailableError(
            absl::StrCat("partition ", p, " has no leader after ",
                         absl::FormatDuration(kStartTimeout), ": ",
                         leads.message(), "; its log ends:\n", Tail(node.log)));
      }
    }
    return cluster;
  }

  ~Cluster() {
    for (Node& node : nodes_) {
      if (node.process != nullptr) node.process->Kill(SIGTERM);
    }
    for (Node& node : nodes_) {
      if (node.process != nullptr) node.process->Wait();
    }
  }

  uint32_t partitions() const { return static_cast<uint32_t>(nodes_.size()); }
  const std::string& address(uint32_t p) const { return nodes_[p].address; }

 private:
  struct Node {
    std::string address;
    std::string log;
    std::unique_ptr<testing::ChildProcess> process;
  };
  Cluster() = default;

  testing::TempDir dir_;
  std::unique_ptr<testing::NatsCluster> nats_;
  std::vector<Node> nodes_;
};

// A client's connection to each node: one channel each, as separate
// processes would have.
std::vector<std::unique_ptr<v1::Ledger::Stub>> Connect(const Cluster& cluster) {
  std::vector<std::unique_ptr<v1::Ledger::Stub>> stubs;
  for (uint32_t p = 0; p < cluster.partitions(); ++p) {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::Ledger::NewStub(grpc::CreateCustomChannel(
        cluster.address(p), grpc::InsecureChannelCredentials(), arguments)));
  }
  return stubs;
}

absl::Status Accepted(const v1::CommandResult& result) {
  if (result.status() == v1::ACCEPTED) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("command ", result.command_id(),
                                          " not accepted: ", result.message()));
}

// The batch: `commands` over one ExecuteStream to node 0; seconds.
absl::StatusOr<double> RunBatch(const Cluster& cluster,
                                const std::vector<v1::Command>& commands) {
  std::vector<std::unique_ptr<v1::Ledger::Stub>> stubs = Connect(cluster);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(5)));
  const absl::Time start = absl::Now();
  auto stream = stubs[0]->ExecuteStream(&context);
  std::thread writer([&] {
    for (const v1::Command& command : commands) {
      if (!stream->Write(command)) break;
    }
    stream->WritesDone();
  });
  size_t got = 0;
  absl::Status status;
  v1::CommandResult result;
  while (got < commands.size() && stream->Read(&result)) {
    ++got;
    if (status.ok()) status = Accepted(result);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  writer.join();
  const grpc::Status finished = stream->Finish();
  if (!status.ok()) return status;
  if (got < commands.size()) {
    return absl::UnavailableError(
        absl::StrCat("batch: ", got, " of ", commands.size(),
                     " answered: ", finished.error_message()));
  }
  return seconds;
}

// One client command: an openStore of `merchant`'s (when `open`) or an
// addProduct to the store it opened last; the partition the hash places
// the merchant in.
struct Planned {
  bool open = false;
  std::string merchant;
  uint32_t partition = 0;
};

struct Load {
  double seconds = 0;
  std::vector<double> all_ms;
  std::vector<double> routed_ms;  // of partitions other than 0
  std::vector<double> open_ms;    // of the openStore commands
};

// Where a client sends its unary calls.
enum class Target {
  kNode0,
  kLeader,
  // The leader, each call marked as a router marks the calls it sends on:
  // served there without going through its router.
  kLeaderMarkedRouted,
};
constexpr const char* kTargetNames[] = {"via node 0", "to the leader",
                                        "to the leader marked routed"};

// Every client's `plan` as unary Execute, one command at a time each, its
// stores named `tag`-client-index, sent to `target`.
absl::StatusOr<Load> RunClients(const Cluster& cluster,
                                const std::vector<std::vector<Planned>>& plan,
                                const std::string& tag, Target target) {
  const int clients = static_cast<int>(plan.size());
  std::vector<std::vector<std::unique_ptr<v1::Ledger::Stub>>> stubs;
  for (int c = 0; c < clients; ++c) stubs.push_back(Connect(cluster));
  std::vector<std::vector<double>> all(clients), routed(clients),
      opened(clients);
  std::vector<absl::Status> failed(clients);
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      std::string store;
      for (size_t i = 0; i < plan[c].size(); ++i) {
        const Planned& command = plan[c][i];
        if (command.open) store = absl::StrCat(tag, "-", c, "-", i);
        v1::Ledger::Stub& stub =
            *stubs[c][target == Target::kNode0 ? 0 : command.partition];
        grpc::ClientContext context;
        if (target == Target::kLeaderMarkedRouted) {
          PrepareRoutedCall(&context, "");
        }
        context.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
        v1::CommandResult result;
        const absl::Time t = absl::Now();
        const grpc::Status s = stub.Execute(
            &context,
            command.open ? BenchOpenStore(store, command.merchant)
                         : BenchAddProduct(store, static_cast<int>(i)),
            &result);
        const double ms = absl::ToDoubleMilliseconds(absl::Now() - t);
        failed[c] = s.ok() ? Accepted(result)
                           : absl::UnavailableError(s.error_message());
        if (!failed[c].ok()) return;
        all[c].push_back(ms);
        if (command.partition != 0) routed[c].push_back(ms);
        if (command.open) opened[c].push_back(ms);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  Load load;
  load.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (int c = 0; c < clients; ++c) {
    if (!failed[c].ok()) return failed[c];
    load.all_ms.insert(load.all_ms.end(), all[c].begin(), all[c].end());
    load.routed_ms.insert(load.routed_ms.end(), routed[c].begin(),
                          routed[c].end());
    load.open_ms.insert(load.open_ms.end(), opened[c].begin(), opened[c].end());
  }
  return load;
}

int Run(const BenchFlags& flags) {
  std::printf(
      "# storeledger-partition-bench --seed %llu: %u hardware threads shared "
      "by every partition, 3 nats-servers and the clients; RocksDB %s\n",
      static_cast<unsigned long long>(flags.seed),
      std::thread::hardware_concurrency(),
      flags.no_sync ? "--no-sync" : "synced");
  std::printf(
      "partitions,workload,commands,seconds,commands_per_s,p50_ms,p99_ms,"
      "vs_1_partition,vs_unpartitioned,open_store_p50_ms\n");
  std::mt19937_64 random(flags.seed);
  std::vector<std::string> routing_rows;
  // Each workload's rate unpartitioned and with P = 1, for the ratios
  // (index: the two batches, then the clients' Target).
  std::optional<double> unpartitioned[5], one_partition[5];
  auto ratios = [&](int workload, double rate) {
    std::string text;
    for (const auto* peer :
         {&one_partition[workload], &unpartitioned[workload]}) {
      absl::StrAppend(&text, ",");
      if (peer->has_value()) {
        absl::StrAppend(&text, absl::StrFormat("%.2f", rate / **peer));
      }
    }
    return text;
  };
  auto remember = [&](uint32_t partitions, int workload, double rate) {
    if (partitions == 0) unpartitioned[workload] = rate;
    if (partitions == 1) one_partition[workload] = rate;
  };
  std::vector<uint32_t> runs = flags.partitions;
  if (flags.baseline) runs.insert(runs.begin(), 0);
  for (const uint32_t partitions : runs) {
    const std::string label =
        partitions == 0 ? "unpartitioned" : absl::StrCat(partitions);
    const uint32_t placed = std::max(partitions, 1u);
    auto fail = [&](const absl::Status& status) {
      std::fprintf(stderr, "%s: %s\n", label.c_str(),
                   std::string(status.message()).c_str());
      return 1;
    };
    absl::StatusOr<std::unique_ptr<Cluster>> cluster =
        Cluster::Start(partitions, flags.no_sync);
    if (!cluster.ok()) return fail(cluster.status());
    // The openStore batch, then as many addProduct to its stores (which
    // create no directory entry).
    std::vector<v1::Command> batches[2];
    std::vector<int> per_partition(placed);
    for (int i = 0; i < flags.batch_commands; ++i) {
      const std::string merchant =
          absl::StrCat("m", random() % flags.merchants);
      ++per_partition[PartitionOfMerchant(merchant, placed)];
      batches[0].push_back(BenchOpenStore(absl::StrCat("b", i), merchant));
      batches[1].push_back(BenchAddProduct(absl::StrCat("b", i), i));
    }
    for (int b = 0; b < 2; ++b) {
      absl::StatusOr<double> seconds = RunBatch(**cluster, batches[b]);
      if (!seconds.ok()) return fail(seconds.status());
      const double rate = flags.batch_commands / *seconds;
      remember(partitions, b, rate);
      std::printf("%s,batch %s via node 0,%d,%.3f,%.0f,,%s,\n", label.c_str(),
                  b == 0 ? "openStore" : "addProduct", flags.batch_commands,
                  *seconds, rate, ratios(b, rate).c_str());
    }
    if (partitions > 1) {
      std::string spread;
      for (uint32_t p = 0; p < partitions; ++p) {
        absl::StrAppend(&spread, p == 0 ? "" : " ", per_partition[p]);
      }
      std::printf("# P=%u: the batch's commands per partition: %s\n",
                  partitions, spread.c_str());
    }
    std::vector<std::vector<Planned>> plan(flags.clients);
    for (std::vector<Planned>& client : plan) {
      for (int i = 0; i < flags.client_commands; ++i) {
        Planned& command = client.emplace_back();
        command.open = i % (flags.products_per_store + 1) == 0;
        command.merchant = command.open
                               ? absl::StrCat("m", random() % flags.merchants)
                               : client[i - 1].merchant;
        command.partition = PartitionOfMerchant(command.merchant, placed);
      }
    }
    // Unpartitioned, node 0 is every command's leader: one run.
    Load loads[3];
    for (int t = 0; t < (partitions == 0 ? 1 : 3); ++t) {
      absl::StatusOr<Load> load = RunClients(
          **cluster, plan, std::string(1, "vdr"[t]), static_cast<Target>(t));
      if (!load.ok()) return fail(load.status());
      loads[t] = *std::move(load);
      const Load& l = loads[t];
      const double rate = l.all_ms.size() / l.seconds;
      remember(partitions, 2 + t, rate);
      if (partitions == 0) {
        remember(partitions, 3, rate);
        remember(partitions, 4, rate);
      }
      std::printf("%s,%d clients %s,%zu,%.3f,%.0f,%.2f,%.2f%s,%.2f\n",
                  label.c_str(), flags.clients, kTargetNames[t],
                  l.all_ms.size(), l.seconds, rate, Percentile(l.all_ms, 0.50),
                  Percentile(l.all_ms, 0.99), ratios(2 + t, rate).c_str(),
                  Percentile(l.open_ms, 0.50));
    }
    if (partitions == 0) continue;
    // With one partition nothing is routed: both runs send everything to
    // node 0, so their difference is the noise floor.
    const bool none_routed = loads[0].routed_ms.empty();
    const std::vector<double>& via =
        none_routed ? loads[0].all_ms : loads[0].routed_ms;
    const std::vector<double>& to_leader =
        none_routed ? loads[1].all_ms : loads[1].routed_ms;
    const double via_p50 = Percentile(via, 0.50);
    const double leader_p50 = Percentile(to_leader, 0.50);
    routing_rows.push_back(
        absl::StrFormat("%u,%s,%zu,%.2f,%.2f,%.2f,%.2f", partitions,
                        none_routed ? "all (none routed)" : "partitions 1..P-1",
                        via.size(), leader_p50, via_p50, via_p50 - leader_p50,
                        leader_p50 > 0 ? via_p50 / leader_p50 : 0));
  }
  std::printf(
      "\npartitions,commands_compared,count,leader_p50_ms,via_node0_p50_ms,"
      "routing_ms,via_over_leader\n");
  for (const std::string& row : routing_rows) std::printf("%s\n", row.c_str());
  std::printf(
      "# The partitions share this machine's cores: a rate with P > 1 is "
      "not P machines' worth.\n");
  return 0;
}

// Parses the command line into `flags`; false (with the reason on stderr)
// on anything it does not know.
bool ParseFlags(int argc, char** argv, BenchFlags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--no-sync" || flag == "--no-baseline") {
      (flag == "--no-sync" ? flags->no_sync : flags->baseline) =
          flag == "--no-sync";
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", flag.c_str());
      return false;
    }
    const std::string value = argv[++i];
    int* number = flag == "--batch-commands"       ? &flags->batch_commands
                  : flag == "--clients"            ? &flags->clients
                  : flag == "--client-commands"    ? &flags->client_commands
                  : flag == "--merchants"          ? &flags->merchants
                  : flag == "--products-per-store" ? &flags->products_per_store
                                                   : nullptr;
    bool ok = true;
    if (number != nullptr) {
      ok = absl::SimpleAtoi(value, number) && *number >= 1;
    } else if (flag == "--seed") {
      ok = absl::SimpleAtoi(value, &flags->seed);
    } else if (flag == "--partitions") {
      flags->partitions.clear();
      for (absl::string_view p : absl::StrSplit(value, ',')) {
        uint32_t count = 0;
        ok = ok && absl::SimpleAtoi(p, &count) && count >= 1 &&
             count <= kPartitionsMax;
        flags->partitions.push_back(count);
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return false;
    }
    if (!ok) {
      std::fprintf(stderr, "%s: not a valid value for %s\n", value.c_str(),
                   flag.c_str());
      return false;
    }
  }
  return true;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  // A row as soon as it is measured, also into a file.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  storeledger::BenchFlags flags;
  if (!storeledger::ParseFlags(argc, argv, &flags)) return 2;
  return storeledger::Run(flags);
}
