// storeledgerd: the ledger over gRPC (DESIGN.md §6).
//
//   storeledgerd --db DIR [--listen 127.0.0.1:7450] [--http HOST:PORT]
//                [--tokens FILE]
//                [--tls-cert F --tls-key F] [--policy FILE] [--no-sync]
//                [--shutdown-grace-ms N] [--checkpoint-key FILE
//                [--checkpoint-every-events N] [--checkpoint-every-seconds T]]
//                [--replicate nats://HOST:PORT[,...] [--partition N]
//                 [--ack replicated|local] [--follow-only] [--replicas R]]
//                [--backup-dir DIR]
//
// With --replicate it is one replica of partition N (replication/replica.h,
// docs/cluster.md): it follows the partition's JetStream stream, and leads
// when it holds the partition's lease. Deposed (its publish refused by the
// fence, or its lease lost), it re-executes itself and comes back as a
// follower from its synced database.
//
// SIGTERM / SIGINT: stop accepting, finish the calls in flight, exit 0.
// Exit 1 when it cannot start with what it was given (a file, TLS, the port,
// the database; the message says why), 2 when the command line itself is
// wrong (an unknown flag, a missing --db, a value that is not a number).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "cli/ca_credentials.h"
#include "cluster/placement.h"
#include "cluster/router.h"
#include "replication/replica.h"
#include "server/server.h"
#include "storage/checkpoint.h"
#include "storage/diverged.h"

namespace storeledger {
namespace {

constexpr char kUsage[] =
    R"(usage: storeledgerd --db DIR [--listen HOST:PORT] [--http HOST:PORT]
                    [--tokens FILE]
                    [--tls-cert FILE --tls-key FILE] [--policy FILE]
                    [--no-sync] [--shutdown-grace-ms N]
                    [--checkpoint-key FILE [--checkpoint-every-events N]
                     [--checkpoint-every-seconds T]]
                    [--replicate nats://HOST:PORT[,...] [--partition N]
                     [--ack replicated|local] [--follow-only] [--replicas R]
                     [--peer-ca FILE]]
                    [--backup-dir DIR]

--listen defaults to 127.0.0.1:7450 (port 0: any free port, printed at start).
--http serves the console (pages, JSON API) and /metrics there.
A non-loopback address needs --tls-cert/--tls-key and --tokens.
--tokens FILE holds `TOKEN ROLE` lines (roles: writer, auditor, investigator,
merchant:<id>) and must not be readable by group or others.
--replicate makes this a replica of partition N (default 0) on those NATS
JetStream servers (docs/cluster.md): --ack replicated (default) answers a
command once it is synced here and acknowledged by JetStream; --ack local
once synced here. --follow-only never leads. --replicas: copies JetStream
keeps (default 3 with 3 servers or more, else 1). A follower refuses writes
with UNAVAILABLE naming the leader.
On servers where `storeledger cluster init` made a partitioned cluster, a
replica also routes: any command or store read it is sent goes to the
leader of the partition that holds it (docs/cluster.md "Partitions").
Routed calls carry their caller's token: they go over TLS, trusting the CAs
of --peer-ca FILE, or in plaintext to loopback addresses only; a node that
serves TLS in a partitioned cluster needs --peer-ca.
--backup-dir DIR lets auditors take online copies (the Backup RPC, or
`storeledger --server ADDR backup --name NAME`) into new directories under DIR.
)";

// --checkpoint-key FILE [--checkpoint-every-events N]
// [--checkpoint-every-seconds T]: sign checkpoints
// (server/checkpoint_signer.h).
absl::Status CheckpointFlags(const Flags& flags, ServerOptions* options) {
  std::optional<std::string> path = flags.Get("checkpoint-key");
  if (!path.has_value()) {
    if (flags.Has("checkpoint-every-events") ||
        flags.Has("checkpoint-every-seconds")) {
      return absl::InvalidArgumentError(
          "--checkpoint-every-* need --checkpoint-key FILE");
    }
    return absl::OkStatus();
  }
  std::ifstream file(*path);
  std::stringstream text;
  text << file.rdbuf();
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint-key ", *path, ": cannot read the file"));
  }
  absl::StatusOr<SigningKey> key = ParseSigningKey(text.str());
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint-key ", *path, ": ", key.status().message()));
  }
  CheckpointSignerOptions signer;
  signer.key = *std::move(key);
  ASSIGN_OR_RETURN(std::optional<uint64_t> events,
                   flags.GetUint("checkpoint-every-events"));
  ASSIGN_OR_RETURN(std::optional<uint64_t> seconds,
                   flags.GetUint("checkpoint-every-seconds"));
  if (events.value_or(1) == 0 || seconds.value_or(1) == 0) {
    return absl::InvalidArgumentError("--checkpoint-every-* must be >= 1");
  }
  signer.every_events = events.value_or(signer.every_events);
  if (seconds.has_value()) signer.every = absl::Seconds(*seconds);
  options->checkpoints = std::move(signer);
  return absl::OkStatus();
}

// What a replica of a partitioned cluster adds (docs/cluster.md
// "Partitions"): the store directory its ledger decides with, and the
// router its service sends other partitions' calls through.
struct PartitionedCluster {
  std::unique_ptr<JetStream> js;  // the directory's connection
  std::unique_ptr<NatsStoreDirectory> directory;
  std::unique_ptr<Router> router;
};

// Joins the cluster `cluster init` created on `urls`, if it did: without
// it this is a replica of an unpartitioned ledger (issue 14).
// `peer_ca`: --peer-ca, the CAs that signed the other nodes' certificates.
absl::Status JoinPartitionedCluster(const std::vector<std::string>& urls,
                                    uint32_t partition,
                                    const std::optional<std::string>& peer_ca,
                                    Replica* replica,
                                    PartitionedCluster* cluster,
                                    ServerOptions* options) {
  ASSIGN_OR_RETURN(cluster->js, JetStream::Connect(urls));
  ASSIGN_OR_RETURN(std::optional<uint32_t> partitions,
                   ClusterPartitions(*cluster->js));
  if (!partitions.has_value()) {
    cluster->js.reset();
    if (peer_ca.has_value()) {
      return absl::InvalidArgumentError(
          "--peer-ca: these servers hold no partitioned cluster (`storeledger "
          "cluster init` never ran on them), so nothing is routed");
    }
    return absl::OkStatus();
  }
  RouterOptions router;
  if (peer_ca.has_value()) {
    ASSIGN_OR_RETURN(router.peer_credentials,
                     CaCredentials("--peer-ca", *peer_ca));
  } else if (!options->tls_cert_file.empty()) {
    return absl::FailedPreconditionError(
        "this node serves TLS in a partitioned cluster: give --peer-ca FILE, "
        "the CA that signed the other nodes' certificates, for the calls it "
        "routes to them");
  }
  router.nats_urls = urls;
  router.partition = partition;
  router.leads = [replica] { return replica->WriteGate().ok(); };
  ASSIGN_OR_RETURN(cluster->router, Router::Connect(std::move(router)));
  cluster->directory =
      std::make_unique<NatsStoreDirectory>(cluster->js.get(), partition);
  options->ledger.directory = cluster->directory.get();
  options->router = cluster->router.get();
  std::cout << "storeledgerd: partition " << partition << " of " << *partitions
            << std::endl;
  return absl::OkStatus();
}

// argv of this process, for the re-execution of a deposed replica.
std::vector<std::string> g_argv;

int Main(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags =
      Flags::Parse(args, {"no-sync", "help", "follow-only"});
  if (!flags.ok()) {
    std::cerr << "storeledgerd: " << flags.status().message() << "\n" << kUsage;
    return kExitUsage;
  }
  if (flags->Has("help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (absl::Status s = flags->CheckKnown(
          {"listen", "http", "tokens", "tls-cert", "tls-key", "no-sync",
           "shutdown-grace-ms", "checkpoint-key", "checkpoint-every-events",
           "checkpoint-every-seconds", "replicate", "partition", "ack",
           "follow-only", "replicas", "backup-dir", "peer-ca"});
      !s.ok() || !flags->positional().empty()) {
    std::cerr << "storeledgerd: "
              << (s.ok() ? "unexpected argument " + flags->positional().front()
                         : std::string(s.message()))
              << "\n"
              << kUsage;
    return kExitUsage;
  }
  std::optional<std::string> db = flags->Get("db");
  if (!db.has_value()) {
    std::cerr << "storeledgerd: --db is required\n" << kUsage;
    return kExitUsage;
  }
  absl::StatusOr<std::optional<uint64_t>> grace_ms =
      flags->GetUint("shutdown-grace-ms");
  if (!grace_ms.ok()) {
    std::cerr << "storeledgerd: " << grace_ms.status().message() << "\n";
    return kExitUsage;
  }
  ServerOptions options;
  options.db_dir = *db;
  options.listen = flags->GetOr("listen", "127.0.0.1:7450");
  options.http_listen = flags->GetOr("http", "");
  options.tokens_file = flags->GetOr("tokens", "");
  options.tls_cert_file = flags->GetOr("tls-cert", "");
  options.tls_key_file = flags->GetOr("tls-key", "");
  options.ledger.sync = !flags->Has("no-sync");
  options.backup_dir = flags->GetOr("backup-dir", "");
  if (std::optional<std::string> path = flags->Get("policy")) {
    std::ifstream file(*path);
    if (!file) {
      std::cerr << "storeledgerd: --policy " << *path
                << ": cannot read the file\n";
      return kExitCheckFailed;
    }
    std::stringstream text;
    text << file.rdbuf();
    absl::StatusOr<Policy> policy = ParsePolicyText(text.str());
    if (!policy.ok()) {
      std::cerr << "storeledgerd: --policy " << *path << ": "
                << policy.status().message() << "\n";
      return kExitCheckFailed;
    }
    options.ledger.policy = *std::move(policy);
  }

  if (absl::Status s = CheckpointFlags(*flags, &options); !s.ok()) {
    std::cerr << "storeledgerd: " << s.message() << "\n";
    return kExitUsage;
  }
  if (flags->Has("peer-ca") && !flags->Has("replicate")) {
    std::cerr << "storeledgerd: --peer-ca is for the calls a node of a "
                 "partitioned cluster routes: give --replicate too\n";
    return kExitUsage;
  }
  // A closed stdout (or a client socket) must not kill the server mid-way.
  signal(SIGPIPE, SIG_IGN);
  // Block the stop signals before any thread starts (libnats' and gRPC's
  // inherit the mask); this thread takes them with sigwait. A thread that
  // did not block them could take one whenever this thread is not inside
  // sigwait (just after a SIGCONT, say), and SIGUSR1's default action would
  // end the process where a deposed replica should restart as a follower.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGUSR1);  // a deposed replica
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::shared_ptr<Replica> replica;
  // Tails moved aside (counted once the ledger is open), for /metrics.
  auto diverged_records = std::make_shared<std::atomic<uint64_t>>(0);
  PartitionedCluster cluster;  // outlives the server, which uses it
  if (std::optional<std::string> urls = flags->Get("replicate")) {
    ReplicaOptions replica_options;
    replica_options.nats_urls = absl::StrSplit(*urls, ',', absl::SkipEmpty());
    absl::StatusOr<std::optional<uint64_t>> partition =
        flags->GetUint("partition");
    absl::StatusOr<std::optional<uint64_t>> replicas =
        flags->GetUint("replicas");
    const std::string ack = flags->GetOr("ack", "replicated");
    if (!partition.ok() || !replicas.ok() ||
        (ack != "replicated" && ack != "local")) {
      std::cerr << "storeledgerd: --partition and --replicas take a number, "
                   "--ack replicated or local\n";
      return kExitUsage;
    }
    replica_options.partition = static_cast<uint32_t>(partition->value_or(0));
    replica_options.replicas = static_cast<int>(replicas->value_or(0));
    replica_options.ack = ack == "local" ? ReplicaOptions::Ack::kLocal
                                         : ReplicaOptions::Ack::kReplicated;
    replica_options.follow_only = flags->Has("follow-only");
    replica_options.name = options.listen;
    replica_options.on_deposed = [](const absl::Status&) {
      kill(getpid(), SIGUSR1);  // main re-executes this process
    };
    absl::StatusOr<std::unique_ptr<Replica>> connected =
        Replica::Connect(std::move(replica_options));
    if (!connected.ok()) {
      std::cerr << "storeledgerd: --replicate: " << connected.status() << "\n";
      return kExitCheckFailed;
    }
    replica = *std::move(connected);
    // A tail the stream never held is moved aside before anything is
    // served from this database (docs/cluster.md "Diverged tail").
    if (absl::Status reconciled = replica->Reconcile(*db).status();
        !reconciled.ok()) {
      std::cerr << "storeledgerd: --replicate: " << reconciled << "\n";
      return kExitCheckFailed;
    }
    options.ledger.before_write = replica->BeforeWrite();
    options.write_gate = [r = replica.get()] { return r->WriteGate(); };
    options.replication_gauges = [weak = std::weak_ptr<Replica>(replica), ack,
                                  follow_only = flags->Has("follow-only"),
                                  partition_number = partition->value_or(0),
                                  diverged_records] {
      ReplicationGauges gauges;
      gauges.partition = static_cast<uint32_t>(partition_number);
      gauges.ack = ack;
      gauges.follow_only = follow_only;
      gauges.diverged_records = diverged_records->load();
      std::shared_ptr<Replica> r = weak.lock();
      if (r == nullptr) {
        gauges.role = "deposed";  // stopping
        return gauges;
      }
      const ReplicaStatus status = r->status();
      gauges.role = status.role == ReplicaRole::kLeader     ? "leader"
                    : status.role == ReplicaRole::kFollower ? "follower"
                                                            : "deposed";
      gauges.stream_sequence = status.stream_sequence;
      gauges.stream_last_sequence = status.stream_last_sequence;
      gauges.unpublished_events = r->publish_lag_events();
      gauges.data_loss = !status.data_loss.ok();
      return gauges;
    };
    if (absl::Status s = JoinPartitionedCluster(
            std::vector<std::string>(
                absl::StrSplit(*urls, ',', absl::SkipEmpty())),
            static_cast<uint32_t>(partition->value_or(0)),
            flags->Get("peer-ca"), replica.get(), &cluster, &options);
        !s.ok()) {
      std::cerr << "storeledgerd: --replicate: " << s << "\n";
      return kExitCheckFailed;
    }
  }

  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(std::move(options));
  if (!server.ok()) {
    // Whatever stops the start once the flags are understood (a file that
    // cannot be used, TLS, the port, the database) exits 1, as documented.
    std::cerr << "storeledgerd: " << server.status() << "\n";
    return kExitCheckFailed;
  }
  // One line for scripts and tests that listen on port 0.
  std::cout << "storeledgerd: listening on " << (*server)->address()
            << ((*server)->tls() ? " (TLS)" : " (plaintext, loopback)")
            << " db " << *db << " head "
            << (*server)->ledger().log().head().position << std::endl;
  if (const HttpConsole* http = (*server)->http()) {
    std::cout << "storeledgerd: console on " << (http->tls() ? "https" : "http")
              << "://" << http->address() << "/" << std::endl;
  }
  if (replica != nullptr) {
    absl::StatusOr<std::vector<v1::DivergedRecord>> diverged =
        ReadDivergedRecords((*server)->ledger().log());
    if (diverged.ok()) diverged_records->store(diverged->size());
    if (absl::Status started = replica->Start(&(*server)->ledger());
        !started.ok()) {
      std::cerr << "storeledgerd: --replicate: " << started << "\n";
      (*server)->Shutdown(absl::ZeroDuration());
      return kExitCheckFailed;
    }
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  if (signal_number == SIGUSR1) {
    std::cout << "storeledgerd: deposed; restarting as a follower" << std::endl;
    replica.reset();  // before the ledger it writes to closes
    (*server)->Shutdown(absl::Seconds(1));
    server->reset();
    std::vector<char*> argv;
    for (std::string& arg : g_argv) argv.push_back(arg.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    std::cerr << "storeledgerd: cannot re-execute itself\n";
    return kExitCheckFailed;
  }
  std::cout << "storeledgerd: signal " << signal_number
            << ", finishing calls in flight" << std::endl;
  replica.reset();
  (*server)->Shutdown(grace_ms->has_value() ? absl::Milliseconds(**grace_ms)
                                            : kShutdownGraceDefault);
  std::cout << "storeledgerd: stopped" << std::endl;
  return kExitOk;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) {
  storeledger::g_argv.assign(argv, argv + argc);
  return storeledger::Main(std::vector<std::string>(argv + 1, argv + argc));
}
