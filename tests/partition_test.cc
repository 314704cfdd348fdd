// Partitions (issue 15, DESIGN.md §7, docs/cluster.md "Partitions"): a
// 4-partition cluster of storeledgerd processes (one replica a partition)
// on a 3-server nats-server cluster on loopback, driven through ONE node's
// address, against a single-node ledger given the same seeded command
// stream (the migration simulator's, its merchants folded into fewer).
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/flags.h"
#include "cli/simulate.h"
#include "cluster/placement.h"
#include "cluster/router.h"
#include "core/decide.h"
#include "core/streams.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replay/finance.h"
#include "replay/lookup.h"
#include "replay/projection_keys.h"
#include "replay/projection_store.h"
#include "replication/jetstream.h"
#include "rocksdb/db.h"
#include "storage/event_log.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/cli_json.h"
#include "tests/support/nats_cluster.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using testing::NatsCluster;
using testing::TempDir;
using testing::WaitFor;

// STORELEDGER_PARTITION_COUNT (default 4) sets it for a benchmark run of
// the differential test alone (docs/performance.md); the other tests need
// at least 3.
const uint32_t kPartitions = [] {
  const char* count = std::getenv("STORELEDGER_PARTITION_COUNT");
  return count != nullptr ? static_cast<uint32_t>(std::atoi(count)) : 4u;
}();
constexpr absl::Duration kStartTimeout = absl::Seconds(30);
// How often a wait asks again (each ask may spawn a CLI process).
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

// `storeledger ARGS...`: its exit status, stdout and stderr.
struct CliRun {
  int status = -1;
  std::string out;
  std::string err;
};
CliRun RunStoreledger(const std::vector<std::string>& args,
                      const TempDir& dir) {
  testing::ChildOptions options;
  options.argv = {STORELEDGER_BIN};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  const std::string err_path = dir.Sub(
      absl::StrCat("cli-", ::getpid(), "-", absl::ToUnixNanos(absl::Now())));
  options.stderr_path = err_path;
  CliRun run;
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
      testing::ChildProcess::Start(options);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) return run;
  const int status = (*process)->Wait();
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  run.out = (*process)->out();
  std::ifstream err(err_path);
  std::stringstream text;
  text << err.rdbuf();
  run.err = text.str();
  return run;
}

// One storeledgerd: the only replica of its partition.
class Node {
 public:
  Node(std::string urls, std::string db, std::string log, uint32_t partition)
      : urls_(std::move(urls)),
        db_(std::move(db)),
        log_(std::move(log)),
        partition_(partition) {
    absl::StatusOr<int> port = testing::FreeLoopbackPort();
    EXPECT_TRUE(port.ok());
    address_ = absl::StrCat("127.0.0.1:", *port);
    absl::StatusOr<int> http_port = testing::FreeLoopbackPort();
    EXPECT_TRUE(http_port.ok());
    http_port_ = *http_port;
    stub_ = v1::Ledger::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  ~Node() {
    if (process_ != nullptr) {
      process_->Kill(SIGKILL);
      process_->Wait();
    }
  }
  // `extra`: flags after the ones every node here gets.
  void Start(const std::vector<std::string>& extra = {}) {
    testing::ChildOptions options;
    options.argv = {STORELEDGERD_BIN,
                    "--db",
                    db_,
                    "--listen",
                    address_,
                    "--replicate",
                    urls_,
                    "--partition",
                    absl::StrCat(partition_),
                    "--http",
                    absl::StrCat("127.0.0.1:", http_port_),
                    "--no-sync",
                    "--shutdown-grace-ms",
                    "500"};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    options.stderr_path = log_;
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
        testing::ChildProcess::Start(options);
    ASSERT_TRUE(process.ok()) << process.status();
    process_ = *std::move(process);
  }
  void KillHard() {
    process_->Kill(SIGKILL);
    process_->Wait();
    process_.reset();
  }
  // The exit status of a node that stops by itself (-1: killed).
  int Exited() {
    const int status = process_->Wait();
    process_.reset();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  const std::string& address() const { return address_; }
  v1::Ledger::Stub& stub() { return *stub_; }
  // GET `path` of this node's console: {status, body}; status 0 when the
  // request failed.
  std::pair<int, std::string> HttpGet(const std::string& path) const {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(30);
    httplib::Result result = client.Get(path.c_str());
    if (!result) return {0, httplib::to_string(result.error())};
    return {result->status, result->body};
  }

 private:
  const std::string urls_, db_, log_;
  const uint32_t partition_;
  std::string address_;
  int http_port_ = 0;
  std::unique_ptr<v1::Ledger::Stub> stub_;
  std::unique_ptr<testing::ChildProcess> process_;
};

// Until partition p's lease names `node` (a node restarted on its address
// finds the lease of the one killed) and `client` gets a Digest from it,
// with `token` ("": none). `log`: the node's stderr, shown on a miss.
void AwaitLeaderAt(const NatsCluster& nats, uint32_t p, const Node& node,
                   v1::Ledger::Stub& client, absl::string_view token,
                   const std::string& log) {
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect(nats.urls());
  ASSERT_TRUE(js.ok()) << js.status();
  const bool leads = WaitFor(
      [&] {
        absl::StatusOr<std::optional<std::string>> leader =
            (*js)->KvGet(kLeaderBucket, LeaseKey(p));
        if (!leader.ok() || !leader->has_value() ||
            **leader != node.address()) {
          return false;
        }
        grpc::ClientContext context;
        if (!token.empty()) {
          context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
        }
        context.set_deadline(
            absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
        v1::Digest digest;
        return client.Digest(&context, v1::DigestRequest(), &digest).ok();
      },
      kStartTimeout, kPollInterval);
  if (!leads) {
    std::ifstream file(log);
    std::stringstream text;
    text << file.rdbuf();
    FAIL() << "partition " << p << " has no leader; " << log << ":\n"
           << text.str();
  }
}

// The cluster every test here shares: started once (it takes seconds).
class PartitionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(3);
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = nats->release();
    // A fresh cluster elects its JetStream meta leader a moment after its
    // servers accept connections: init until it answers.
    CliRun init;
    ASSERT_TRUE(WaitFor(
        [&] {
          init =
              RunStoreledger({"cluster", "init", "--nats", nats_->urls_flag(),
                              "--partitions", absl::StrCat(kPartitions)},
                             *dir_);
          return init.status == 0;
        },
        kStartTimeout, kPollInterval))
        << init.err;
    for (uint32_t p = 0; p < kPartitions; ++p) {
      nodes_.push_back(new Node(nats_->urls_flag(),
                                dir_->Sub(absl::StrCat("p", p)),
                                dir_->Sub(absl::StrCat("p", p, ".log")), p));
      nodes_.back()->Start();
    }
    for (uint32_t p = 0; p < kPartitions; ++p) AwaitLeader(p);
  }
  // Until partition p's node leads it and answers (AwaitLeaderAt).
  static void AwaitLeader(uint32_t p) {
    AwaitLeaderAt(*nats_, p, *nodes_[p], nodes_[p]->stub(), "",
                  dir_->Sub(absl::StrCat("p", p, ".log")));
  }
  static void TearDownTestSuite() {
    for (Node* node : nodes_) delete node;
    nodes_.clear();
    delete nats_;
    nats_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  // The one node every client here knows.
  static v1::Ledger::Stub& Entry() { return nodes_[0]->stub(); }

  static grpc::Status Execute(const v1::Command& command,
                              v1::CommandResult* result) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    return Entry().Execute(&context, command, result);
  }

  static TempDir* dir_;
  static NatsCluster* nats_;
  static std::vector<Node*> nodes_;
};
TempDir* PartitionTest::dir_ = nullptr;
NatsCluster* PartitionTest::nats_ = nullptr;
std::vector<Node*> PartitionTest::nodes_;

v1::Command OpenStore(const std::string& id, const std::string& store,
                      const std::string& merchant) {
  absl::StatusOr<v1::Command> command = ParseCommandJson(absl::StrCat(
      R"({"commandId":")", id,
      R"(","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":")",
      store, R"(","merchantId":")", merchant,
      R"(","kind":"MINI_STORE","subject":"ENTERPRISE"}})"));
  EXPECT_TRUE(command.ok()) << command.status();
  return *command;
}

// A merchant id placed in `partition` of kPartitions.
std::string MerchantIn(uint32_t partition, int nth = 0) {
  int found = 0;
  for (int i = 0;; ++i) {
    std::string merchant = absl::StrCat("merchant-", i);
    if (PartitionOfMerchant(merchant, kPartitions) == partition &&
        found++ == nth) {
      return merchant;
    }
  }
}

TEST(PlacementTest, HashIsTheFirstEightBytesOfSha256BigEndian) {
  // python3 -c "import hashlib; print(hashlib.sha256(b'm1').hexdigest()[:16])"
  EXPECT_EQ(PlacementHash("m1"), 0xca0df2c95aa144c1u);
  EXPECT_EQ(PartitionOfMerchant("m1", 4), 0xca0df2c95aa144c1u % 4);
  EXPECT_EQ(PartitionOfMerchant("anything", 1), 0u);
}

// `storeledger cluster [init|status] --help` prints the usage on stdout and
// exits 0, as every verb's --help (no NATS needed).
TEST(ClusterVerbTest, HelpIsTheUsage) {
  TempDir dir;
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"cluster", "--help"},
                                             {"cluster", "init", "--help"},
                                             {"cluster", "status", "--help"}}) {
    const CliRun help = RunStoreledger(args, dir);
    EXPECT_EQ(help.status, 0) << absl::StrJoin(args, " ") << "\n" << help.err;
    EXPECT_TRUE(absl::StrContains(help.out, "--partitions P [--replicas R]"))
        << help.out;
    EXPECT_EQ(help.err, "");
  }
}

// A cluster of its own for each test (one NATS server, two partitions,
// nodes started by the test): routing over TLS, each node presenting one
// self-signed certificate for 127.0.0.1 and trusting it as --peer-ca (a
// routed call carries its caller's token, so it never goes in plaintext
// but to a loopback address), and routing to a partition with no leader.
class TwoPartitionTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kTwo = 2;

  void SetUp() override {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
      GTEST_SKIP() << "the openssl tool is not installed";
    }
    cert_ = dir_.Sub("node.pem");
    key_ = dir_.Sub("node.key");
    ASSERT_EQ(
        std::system(absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes "
                                 "-days 2 -subj /CN=localhost -addext "
                                 "subjectAltName=IP:127.0.0.1 -keyout ",
                                 key_, " -out ", cert_, " 2>/dev/null")
                        .c_str()),
        0);
    tokens_ = dir_.Sub("tokens");
    std::ofstream(tokens_) << kWriter << " writer\n"
                           << kAuditor << " auditor\n";
    ASSERT_EQ(::chmod(tokens_.c_str(), 0600), 0);
    absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
    CliRun init;
    ASSERT_TRUE(WaitFor(
        [&] {
          init =
              RunStoreledger({"cluster", "init", "--nats", nats_->urls_flag(),
                              "--partitions", absl::StrCat(kTwo)},
                             dir_);
          return init.status == 0;
        },
        kStartTimeout, kPollInterval))
        << init.err;
  }

  std::unique_ptr<Node> MakeNode(uint32_t partition) {
    return std::make_unique<Node>(
        nats_->urls_flag(), dir_.Sub(absl::StrCat("p", partition)),
        dir_.Sub(absl::StrCat("p", partition, ".log")), partition);
  }
  std::vector<std::string> TlsFlags(bool peer_ca) const {
    std::vector<std::string> flags = {"--tls-cert", cert_,      "--tls-key",
                                      key_,         "--tokens", tokens_};
    if (peer_ca) flags.insert(flags.end(), {"--peer-ca", cert_});
    return flags;
  }
  // A client of `node` over TLS, trusting the nodes' certificate.
  std::unique_ptr<v1::Ledger::Stub> TlsClient(const Node& node) const {
    std::ifstream file(cert_);
    std::stringstream pem;
    pem << file.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    return v1::Ledger::NewStub(
        grpc::CreateChannel(node.address(), grpc::SslCredentials(ssl)));
  }
  static constexpr char kWriter[] = "tls-writer-token-0123";
  static constexpr char kAuditor[] = "tls-auditor-token-0123";
  static void Authorize(grpc::ClientContext* context,
                        absl::string_view token = kWriter) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    context->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  }
  // Until partition p's lease names `node` and the node answers.
  void AwaitLeader(uint32_t p, Node& node, v1::Ledger::Stub& client) {
    AwaitLeaderAt(*nats_, p, node, client, kAuditor,
                  dir_.Sub(absl::StrCat("p", p, ".log")));
  }
  std::string Log(uint32_t partition) const {
    std::ifstream file(dir_.Sub(absl::StrCat("p", partition, ".log")));
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }
  static std::string MerchantOf(uint32_t partition) {
    for (int i = 0;; ++i) {
      std::string merchant = absl::StrCat("tls-merchant-", i);
      if (PartitionOfMerchant(merchant, kTwo) == partition) return merchant;
    }
  }

  TempDir dir_;
  std::unique_ptr<NatsCluster> nats_;
  std::string cert_, key_, tokens_;
};

TEST_F(TwoPartitionTest, NodesServingTlsRouteOverTlsAndNeedPeerCa) {
  // Without --peer-ca a node that serves TLS could not reach its peers:
  // it refuses to start, saying what to give.
  {
    std::unique_ptr<Node> alone = MakeNode(0);
    alone->Start(TlsFlags(/*peer_ca=*/false));
    EXPECT_EQ(alone->Exited(), 1);
    EXPECT_TRUE(absl::StrContains(Log(0), "give --peer-ca FILE")) << Log(0);
  }
  // A private key given as the CA is named as such.
  {
    std::unique_ptr<Node> wrong = MakeNode(0);
    wrong->Start({"--tls-cert", cert_, "--tls-key", key_, "--tokens", tokens_,
                  "--peer-ca", key_});
    EXPECT_EQ(wrong->Exited(), 1);
    EXPECT_TRUE(absl::StrContains(
        Log(0), absl::StrCat("--peer-ca ", key_, ": not a PEM certificate")))
        << Log(0);
  }

  std::unique_ptr<Node> nodes[kTwo] = {MakeNode(0), MakeNode(1)};
  std::unique_ptr<v1::Ledger::Stub> clients[kTwo];
  for (uint32_t p = 0; p < kTwo; ++p) {
    nodes[p]->Start(TlsFlags(/*peer_ca=*/true));
    clients[p] = TlsClient(*nodes[p]);
  }
  for (uint32_t p = 0; p < kTwo; ++p) AwaitLeader(p, *nodes[p], *clients[p]);

  // Through node 0, a store of partition 1: opened there, and read back.
  grpc::ClientContext context;
  Authorize(&context);
  v1::CommandResult result;
  grpc::Status s = clients[0]->Execute(
      &context, OpenStore("tls-open", "tls-store", MerchantOf(1)), &result);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
  EXPECT_EQ(result.partition(), 1u);
  grpc::ClientContext read;
  Authorize(&read, kAuditor);
  v1::GetStoreRequest request;
  request.set_store_id("tls-store");
  v1::StoreState state;
  s = clients[0]->GetStore(&read, request, &state);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(state.merchant_id(), MerchantOf(1));
}

TEST_F(TwoPartitionTest, PlaintextRoutesOnlyToLoopbackAddresses) {
  std::unique_ptr<Node> node = MakeNode(0);
  node->Start();
  AwaitLeader(0, *node, node->stub());
  // Partition 1's lease names an address off this machine (TEST-NET-1,
  // RFC 5737: nothing answers there): node 0, routing in plaintext, must
  // not send a caller's token there.
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect(nats_->urls());
  ASSERT_TRUE(js.ok()) << js.status();
  absl::StatusOr<bool> created =
      (*js)->KvCreate(kLeaderBucket, LeaseKey(1), "192.0.2.1:7450");
  ASSERT_TRUE(created.ok()) << created.status();
  ASSERT_TRUE(*created);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::CommandResult result;
  const grpc::Status s = node->stub().Execute(
      &context, OpenStore("far-open", "far-store", MerchantOf(1)), &result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(),
                                "192.0.2.1:7450, not a loopback address"))
      << s.error_message();
}

// A partition with no leader (its node never started) keeps the commands
// routed to it waiting for up to kRouteRetryDefault. Meanwhile the node
// they came through serves everything else: they wait on the router's
// threads, not on the gRPC threads that receive every call.
TEST_F(TwoPartitionTest, CommandsWaitingForALeaderHoldUpNothingElse) {
  std::unique_ptr<Node> node = MakeNode(0);
  node->Start();
  AwaitLeader(0, *node, node->stub());
  constexpr int kWaiting = 24;
  std::vector<std::thread> clients;
  std::atomic<int> refused{0};
  for (int i = 0; i < kWaiting; ++i) {
    clients.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(4)));
      v1::CommandResult result;
      const grpc::Status s = node->stub().Execute(
          &context,
          OpenStore(absl::StrCat("wait-open-", i), absl::StrCat("wait-", i),
                    MerchantOf(1)),
          &result);
      refused += !s.ok();
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  // Node 0's own partition: a command and a read, each answered at once.
  for (int round = 0; round < 3; ++round) {
    const absl::Time asked = absl::Now();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(asked + absl::Seconds(2)));
    v1::CommandResult result;
    grpc::Status s = node->stub().Execute(
        &context,
        OpenStore(absl::StrCat("near-open-", round),
                  absl::StrCat("near-", round), MerchantOf(0)),
        &result);
    EXPECT_TRUE(s.ok()) << "round " << round << ": " << s.error_message();
    grpc::ClientContext read;
    read.set_deadline(absl::ToChronoTime(asked + absl::Seconds(2)));
    v1::Digest digest;
    s = node->stub().Digest(&read, v1::DigestRequest(), &digest);
    EXPECT_TRUE(s.ok()) << "round " << round << ": " << s.error_message();
    std::cout << "round " << round << ": answered in "
              << absl::FormatDuration(absl::Now() - asked) << "\n";
  }
  for (std::thread& client : clients) client.join();
  EXPECT_EQ(refused.load(), kWaiting) << "partition 1 has no leader";
}

TEST_F(TwoPartitionTest, PeerCaNeedsAPartitionedCluster) {
  // Without --replicate there is nothing to route: a usage error.
  testing::ChildOptions options;
  options.argv = {
      STORELEDGERD_BIN, "--db", dir_.Sub("lone"), "--listen", "127.0.0.1:0",
      "--peer-ca",      cert_};
  options.stderr_path = dir_.Sub("lone.log");
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> lone =
      testing::ChildProcess::Start(options);
  ASSERT_TRUE(lone.ok()) << lone.status();
  const int status = (*lone)->Wait();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::ifstream file(dir_.Sub("lone.log"));
  std::stringstream text;
  text << file.rdbuf();
  EXPECT_TRUE(absl::StrContains(text.str(), "give --replicate too"))
      << text.str();
}

TEST_F(PartitionTest, InitIsFixedOnceMade) {
  ASSERT_EQ(kPartitions, 4u);
  CliRun same = RunStoreledger(
      {"cluster", "init", "--nats", nats_->urls_flag(), "--partitions", "4"},
      *dir_);
  EXPECT_EQ(same.status, 0) << same.err;
  CliRun other = RunStoreledger(
      {"cluster", "init", "--nats", nats_->urls_flag(), "--partitions", "8"},
      *dir_);
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("created with 4 partitions"), std::string::npos)
      << other.err;
  CliRun status = RunStoreledger(
      {"cluster", "status", "--nats", nats_->urls_flag()}, *dir_);
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_NE(status.out.find("partition 3: leader " + nodes_[3]->address()),
            std::string::npos)
      << status.out;
}

// A client that knows only node 0 opens a store in every partition, and
// reads each back through node 0.
TEST_F(PartitionTest, OneNodeReachesEveryPartition) {
  for (uint32_t p = 0; p < kPartitions; ++p) {
    const std::string store = absl::StrCat("reach-", p);
    v1::CommandResult result;
    grpc::Status s =
        Execute(OpenStore(absl::StrCat("reach-open-", p), store, MerchantIn(p)),
                &result);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
    EXPECT_EQ(result.partition(), p);
    // Sent to the partition's own node, it is executed there (the queue of
    // unary calls) and answered with the partition too.
    {
      grpc::ClientContext own;
      own.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      v1::CommandResult direct;
      s = nodes_[p]->stub().Execute(
          &own,
          OpenStore(absl::StrCat("reach-own-open-", p),
                    absl::StrCat("reach-own-", p), MerchantIn(p, 1)),
          &direct);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(direct.status(), v1::ACCEPTED) << direct.message();
      EXPECT_EQ(direct.partition(), p);
    }

    grpc::ClientContext context;
    v1::GetStoreRequest request;
    request.set_store_id(store);
    v1::StoreState state;
    s = Entry().GetStore(&context, request, &state);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(state.merchant_id(), MerchantIn(p));

    // A diff is routed as a store read: the store's partition answers.
    grpc::ClientContext diff_context;
    v1::GetDiffRequest diff_request;
    diff_request.set_store_id(store);
    diff_request.mutable_from()->set_position(0);
    v1::StoreDiff diff;
    s = Entry().GetDiff(&diff_context, diff_request, &diff);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_FALSE(diff.store_existed_before());
    EXPECT_EQ(diff.store_id(), store);

    grpc::ClientContext digest_context;
    v1::DigestRequest digest_request;
    digest_request.set_partition(p);
    v1::Digest digest;
    s = Entry().Digest(&digest_context, digest_request, &digest);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(digest.partition(), p);
    EXPECT_GE(digest.position(), 1u);
  }
}

// A partition's feed, as `stub` sends it (catch-up only; `partition` unset:
// the log of the node asked), each envelope serialized.
std::vector<std::string> FeedOf(v1::Ledger::Stub& stub,
                                std::optional<uint32_t> partition,
                                grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  v1::SubscribeRequest request;
  request.set_catch_up_only(true);
  if (partition.has_value()) request.set_partition(*partition);
  std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
      stub.Subscribe(&context, request);
  std::vector<std::string> feed;
  v1::Envelope envelope;
  while (reader->Read(&envelope)) feed.push_back(envelope.SerializeAsString());
  *status = reader->Finish();
  return feed;
}

// Every partition's feed through node 0 is the one its own node sends, and
// `tail --partition all` merges them whole, each partition in its order.
TEST_F(PartitionTest, EveryPartitionsFeedThroughOneNode) {
  for (uint32_t p = 0; p < kPartitions; ++p) {
    // As many in each partition: the other tests of this cluster expect
    // node 0's log to stay the longest.
    for (int i = 0; i < 2; ++i) {
      v1::CommandResult result;
      grpc::Status s =
          Execute(OpenStore(absl::StrCat("feed-open-", p, "-", i),
                            absl::StrCat("feed-", p, "-", i), MerchantIn(p, i)),
                  &result);
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
    }
  }
  std::vector<std::vector<std::string>> direct(kPartitions);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    grpc::Status s;
    direct[p] = FeedOf(nodes_[p]->stub(), std::nullopt, &s);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_FALSE(direct[p].empty()) << "partition " << p;
    std::vector<std::string> routed = FeedOf(Entry(), p, &s);
    ASSERT_TRUE(s.ok()) << "partition " << p << ": " << s.error_message();
    EXPECT_EQ(routed, direct[p]) << "partition " << p;
  }

  const std::string server = nodes_[0]->address();
  CliRun one = RunStoreledger(
      {"--server", server, "tail", "--from-position", "1", "--partition", "2"},
      *dir_);
  ASSERT_EQ(one.status, 0) << one.err;
  std::vector<std::string> one_lines =
      absl::StrSplit(one.out, '\n', absl::SkipEmpty());
  EXPECT_EQ(one_lines.size(), direct[2].size() - 1);

  CliRun all = RunStoreledger({"--server", server, "tail", "--from-position",
                               "0", "--partition", "all"},
                              *dir_);
  ASSERT_EQ(all.status, 0) << all.err;
  // Each line: {"partition":P, then the envelope's own JSON members.
  std::vector<std::vector<std::string>> merged(kPartitions);
  for (absl::string_view line :
       absl::StrSplit(all.out, '\n', absl::SkipEmpty())) {
    const size_t comma = line.find(',');
    uint32_t p;
    ASSERT_TRUE(absl::ConsumePrefix(&line, "{\"partition\":") &&
                comma != absl::string_view::npos &&
                absl::SimpleAtoi(line.substr(0, line.find(',')), &p) &&
                p < kPartitions)
        << line;
    merged[p].push_back(testing::FromJson<v1::Envelope>(
                            absl::StrCat("{", line.substr(line.find(',') + 1)))
                            .SerializeAsString());
  }
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(merged[p], direct[p]) << "partition " << p;
  }
  // Resumed per partition: one position each, the head of each but the
  // last, which gives its last envelope again.
  std::vector<std::string> from;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    from.push_back(absl::StrCat(direct[p].size() - (p + 1 == kPartitions)));
  }
  CliRun resumed =
      RunStoreledger({"--server", server, "tail", "--from-position",
                      absl::StrJoin(from, ","), "--partition", "all"},
                     *dir_);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  std::vector<std::string> resumed_lines =
      absl::StrSplit(resumed.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(resumed_lines.size(), 1u) << resumed.out;
  EXPECT_EQ(resumed_lines[0].rfind(
                absl::StrCat("{\"partition\":", kPartitions - 1, ","), 0),
            0u)
      << resumed_lines[0];

  CliRun wrong = RunStoreledger({"--server", server, "tail", "--from-position",
                                 "0,0", "--partition", "all"},
                                *dir_);
  EXPECT_EQ(wrong.status, kExitUsage) << wrong.out;
  EXPECT_NE(wrong.err.find("one per partition"), std::string::npos)
      << wrong.err;
  // Each refusal names what was wrong, and nothing is printed.
  for (const auto& [args, says] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--from-position", "x"}, "'x' is not a position (partition 0)"},
           {{"--from-position", "0", "--format", "delimited"},
            "no place for each envelope's partition"},
           {{"--from-position", "0", "--at-least", "1"},
            "every partition has its own"},
       }) {
    std::vector<std::string> argv = {"--server", server, "tail", "--partition",
                                     "all"};
    argv.insert(argv.end(), args.begin(), args.end());
    CliRun refused = RunStoreledger(argv, *dir_);
    EXPECT_EQ(refused.status, kExitUsage) << refused.err;
    EXPECT_NE(refused.err.find(says), std::string::npos) << refused.err;
    EXPECT_EQ(refused.out, "");
  }
}

// The CLI against one node: balances sums every partition (a position
// line per partition, then one report with every store); every store's
// postings need --partition; a store's statement comes from its partition.
TEST_F(PartitionTest, CliFinanceReadsThroughOneNode) {
  for (uint32_t p = 0; p < kPartitions; ++p) {
    v1::CommandResult result;
    grpc::Status s = Execute(OpenStore(absl::StrCat("cli-open-", p),
                                       absl::StrCat("cli-", p), MerchantIn(p)),
                             &result);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  // Node 0's log ahead of the others, so that a position of the wrong
  // partition shows below.
  for (int i = 0; i < 3; ++i) {
    v1::CommandResult result;
    grpc::Status s =
        Execute(OpenStore(absl::StrCat("cli-extra-open-", i),
                          absl::StrCat("cli-extra-", i), MerchantIn(0, i + 1)),
                &result);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const std::string server = nodes_[0]->address();
  CliRun balances = RunStoreledger({"--server", server, "balances"}, *dir_);
  ASSERT_EQ(balances.status, 0) << balances.err;
  std::vector<std::string> lines =
      absl::StrSplit(balances.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), kPartitions + 1) << balances.out;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(lines[p].rfind(absl::StrCat("{\"partition\":", p, ","), 0), 0u)
        << lines[p];
  }
  const v1::BalancesReport report =
      testing::FromJson<v1::BalancesReport>(lines.back());
  std::set<std::string> stores;
  for (const v1::StoreBalances& store : report.stores()) {
    stores.insert(store.store_id());
  }
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_TRUE(stores.count(absl::StrCat("cli-", p))) << "cli-" << p;
  }
  uint64_t mini_stores = 0;
  for (const v1::KindTotals& totals : report.totals()) {
    if (totals.kind() == v1::MINI_STORE) mini_stores = totals.stores();
  }
  EXPECT_GE(mini_stores, kPartitions);

  CliRun all = RunStoreledger({"--server", server, "postings"}, *dir_);
  EXPECT_EQ(all.status, kExitUsage) << all.err;
  EXPECT_NE(all.err.find("--partition N"), std::string::npos) << all.err;
  CliRun one = RunStoreledger(
      {"--server", server, "postings", "--partition", "1"}, *dir_);
  EXPECT_EQ(one.status, 0) << one.err;
  // Bad partitions and positions are refused, naming what was wrong.
  const std::string beyond = absl::StrCat(kPartitions + 5);
  CliRun missing = RunStoreledger(
      {"--server", server, "postings", "--partition", beyond}, *dir_);
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(
      missing.err.find(absl::StrCat("partition ", beyond, ": the cluster has ",
                                    kPartitions, " partitions")),
      std::string::npos)
      << missing.err;
  CliRun both = RunStoreledger(
      {"--server", server, "postings", "--store", "cli-1", "--partition", "1"},
      *dir_);
  EXPECT_EQ(both.status, kExitUsage);
  EXPECT_NE(both.err.find("--partition is for every store's postings"),
            std::string::npos)
      << both.err;
  CliRun position = RunStoreledger(
      {"--server", server, "balances", "--position", "1"}, *dir_);
  EXPECT_EQ(position.status, kExitUsage);
  EXPECT_NE(position.err.find("use --known-at T"), std::string::npos)
      << position.err;

  CliRun statement =
      RunStoreledger({"--server", server, "statement", "--store",
                      absl::StrCat("cli-", kPartitions - 1), "--from",
                      "2024-01-01", "--to", "2025-01-01"},
                     *dir_);
  EXPECT_EQ(statement.status, 0) << statement.err;
  // As of the head of the store's partition, not of node 0's.
  grpc::ClientContext context;
  v1::DigestRequest request;
  request.set_partition(kPartitions - 1);
  v1::Digest digest;
  grpc::Status s = Entry().Digest(&context, request, &digest);
  ASSERT_TRUE(s.ok()) << s.error_message();
  grpc::ClientContext own_context;
  v1::Digest own;
  s = Entry().Digest(&own_context, v1::DigestRequest(), &own);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_NE(own.position(), digest.position());
  EXPECT_NE(statement.out.find(
                absl::StrCat("as of position ", digest.position(), " (")),
            std::string::npos)
      << statement.out << "partition " << kPartitions - 1 << " head "
      << digest.position();
}

// digest, audit and explain through one node: a line per partition and
// the cluster's line; a command of another partition explained from its
// partition; a partition that does not answer, or whose audit fails,
// fails audit (and digest) naming it.
TEST_F(PartitionTest, CliDigestAuditExplainThroughOneNode) {
  ASSERT_GE(kPartitions, 3u);
  for (uint32_t p = 0; p < kPartitions; ++p) {
    v1::CommandResult result;
    grpc::Status s = Execute(OpenStore(absl::StrCat("ade-open-", p),
                                       absl::StrCat("ade-", p), MerchantIn(p)),
                             &result);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  // One command id in two partitions (ids are unique per partition).
  for (uint32_t p : {1u, 2u}) {
    v1::CommandResult result;
    grpc::Status s = Execute(
        OpenStore("ade-twice", absl::StrCat("ade-twice-", p), MerchantIn(p)),
        &result);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  const std::string server = nodes_[0]->address();
  auto lines_of = [](const CliRun& run) -> std::vector<std::string> {
    return absl::StrSplit(run.out, '\n', absl::SkipEmpty());
  };
  const std::string summary = absl::StrCat("{\"partitions\":", kPartitions);

  CliRun digest = RunStoreledger({"--server", server, "digest"}, *dir_);
  ASSERT_EQ(digest.status, 0) << digest.err;
  std::vector<std::string> lines = lines_of(digest);
  ASSERT_EQ(lines.size(), kPartitions + 1) << digest.out;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(lines[p].rfind(absl::StrCat("{\"partition\":", p, ","), 0), 0u)
        << lines[p];
  }
  EXPECT_EQ(lines.back().rfind(summary, 0), 0u) << lines.back();
  EXPECT_NE(lines.back().find("\"ok\":true,\"failed\":[]"), std::string::npos)
      << lines.back();

  CliRun audit = RunStoreledger({"--server", server, "audit"}, *dir_);
  ASSERT_EQ(audit.status, 0) << audit.err;
  lines = lines_of(audit);
  ASSERT_EQ(lines.size(), kPartitions + 1) << audit.out;
  uint64_t events = 0;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    const v1::AuditReport report = testing::FromJson<v1::AuditReport>(lines[p]);
    EXPECT_EQ(report.partition(), p);
    EXPECT_TRUE(report.ok()) << lines[p];
    EXPECT_GE(report.head_position(), 1u);
    events += report.events_checked();
  }
  EXPECT_EQ(lines.back(), absl::StrCat(summary, ",\"events\":", events,
                                       ",\"ok\":true,\"failed\":[]}"));
  CliRun one =
      RunStoreledger({"--server", server, "audit", "--partition", "2"}, *dir_);
  ASSERT_EQ(one.status, 0) << one.err;
  ASSERT_EQ(lines_of(one).size(), 1u) << one.out;
  EXPECT_EQ(testing::FromJson<v1::AuditReport>(one.out).partition(), 2u);

  // Partition 3's command through node 0: what partition 3 itself answers.
  const uint32_t last = kPartitions - 1;
  CliRun explain =
      RunStoreledger({"--server", server, "explain", "--command-id",
                      absl::StrCat("ade-open-", last)},
                     *dir_);
  ASSERT_EQ(explain.status, 0) << explain.err;
  grpc::ClientContext context;
  v1::ExplainRequest request;
  request.set_command_id(absl::StrCat("ade-open-", last));
  request.set_partition(last);
  v1::Explanation there;
  grpc::Status s = nodes_[last]->stub().Explain(&context, request, &there);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(explain.out, ToJson(there) + "\n");
  EXPECT_EQ(there.outcome().partition(), last);
  EXPECT_TRUE(std::any_of(there.events().begin(), there.events().end(),
                          [&](const v1::Envelope& e) {
                            return e.stream_id() ==
                                   StoreStream(absl::StrCat("ade-", last));
                          }))
      << explain.out;
  CliRun elsewhere =
      RunStoreledger({"--server", server, "explain", "--command-id",
                      absl::StrCat("ade-open-", last), "--partition", "1"},
                     *dir_);
  EXPECT_EQ(elsewhere.status, 1);
  EXPECT_NE(elsewhere.err.find("NOT_FOUND"), std::string::npos)
      << elsewhere.err;
  CliRun twice = RunStoreledger(
      {"--server", server, "explain", "--command-id", "ade-twice"}, *dir_);
  EXPECT_EQ(twice.status, 1);
  EXPECT_NE(twice.err.find("is in partitions 1, 2"), std::string::npos)
      << twice.err;
  CliRun chosen = RunStoreledger({"--server", server, "explain", "--command-id",
                                  "ade-twice", "--partition", "2"},
                                 *dir_);
  ASSERT_EQ(chosen.status, 0) << chosen.err;
  EXPECT_EQ(
      testing::FromJson<v1::Explanation>(chosen.out).outcome().partition(), 2u);

  // The last partition's only replica stopped: audit and digest print
  // every other partition, and fail naming it.
  nodes_[last]->KillHard();
  for (const char* verb : {"audit", "digest"}) {
    CliRun down = RunStoreledger({"--server", server, verb}, *dir_);
    EXPECT_EQ(down.status, kExitCheckFailed) << verb << ": " << down.err;
    lines = lines_of(down);
    ASSERT_EQ(lines.size(), kPartitions + 1) << down.out;
    EXPECT_EQ(lines[last].rfind(absl::StrCat("{\"partition\":", last,
                                             ",\"error\":\"UNAVAILABLE"),
                                0),
              0u)
        << lines[last];
    EXPECT_NE(lines.back().find(
                  absl::StrCat("\"ok\":false,\"failed\":[", last, "]}")),
              std::string::npos)
        << lines.back();
    EXPECT_NE(down.err.find(absl::StrCat("FAILED: partition ", last, " of ",
                                         kPartitions)),
              std::string::npos)
        << down.err;
  }
  // A command id could be in the partition that does not answer too.
  CliRun unsure = RunStoreledger(
      {"--server", server, "explain", "--command-id", "ade-open-0"}, *dir_);
  EXPECT_EQ(unsure.status, 1);
  EXPECT_NE(unsure.err.find(absl::StrCat("UNAVAILABLE: partition ", last)),
            std::string::npos)
      << unsure.err;

  // While it is stopped, a store record no event accounts for goes into
  // its database: audit prints every partition's report and fails naming
  // that partition; taken out again, the partition audits sound.
  auto ghost = [&](bool present) {
    absl::StatusOr<std::unique_ptr<EventLog>> log =
        EventLog::Open(dir_->Sub(absl::StrCat("p", last)));
    ASSERT_TRUE(log.ok()) << log.status();
    rocksdb::DB& db = *(*log)->db();
    StoreRecord record;
    record.set_store_id("ghost");
    record.set_kind(v1::WECHAT_STORE);
    const rocksdb::Status written =
        present ? db.Put(rocksdb::WriteOptions(), (*log)->projections_cf(),
                         StoreKey("ghost"), SerializeDeterministic(record))
                : db.Delete(rocksdb::WriteOptions(), (*log)->projections_cf(),
                            StoreKey("ghost"));
    ASSERT_TRUE(written.ok()) << written.ToString();
  };
  ghost(true);
  nodes_[last]->Start();
  AwaitLeader(last);
  CliRun damaged = RunStoreledger({"--server", server, "audit"}, *dir_);
  EXPECT_EQ(damaged.status, kExitCheckFailed) << damaged.err;
  lines = lines_of(damaged);
  ASSERT_EQ(lines.size(), kPartitions + 1) << damaged.out;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    const v1::AuditReport report = testing::FromJson<v1::AuditReport>(lines[p]);
    EXPECT_EQ(report.partition(), p);
    EXPECT_EQ(report.ok(), p != last) << lines[p];
  }
  EXPECT_NE(
      lines.back().find(absl::StrCat("\"ok\":false,\"failed\":[", last, "]}")),
      std::string::npos)
      << lines.back();
  EXPECT_NE(damaged.err.find(absl::StrCat("storeledger audit: partition ", last,
                                          ": FAILED: 1 violation")),
            std::string::npos)
      << damaged.err;
  EXPECT_NE(damaged.err.find("a record of store ghost"), std::string::npos)
      << damaged.err;
  nodes_[last]->KillHard();
  ghost(false);
  nodes_[last]->Start();
  AwaitLeader(last);
  CliRun sound = RunStoreledger(
      {"--server", server, "audit", "--partition", absl::StrCat(last)}, *dir_);
  EXPECT_EQ(sound.status, 0) << sound.err;
}

// The same store id opened at once by merchants of two partitions: exactly
// one wins; the other is refused by R1 as if the store were its own.
// A node's console (--http) reads its own partition's log; it is not
// routed as the gRPC calls are. It says so: /api/whoami names the
// partition, and a store (or command) of another partition is not found
// "in partition 0 of 4", not as if no partition had it. The console of the
// store's partition shows it.
TEST_F(PartitionTest, ANodesConsoleReadsItsOwnPartitionAndSaysSo) {
  v1::CommandResult opened;
  ASSERT_TRUE(
      Execute(OpenStore("console-open", "console-2", MerchantIn(2)), &opened)
          .ok());
  ASSERT_EQ(opened.status(), v1::ACCEPTED) << ToJson(opened);
  ASSERT_EQ(opened.partition(), 2u);

  auto [who_status, who] = nodes_[0]->HttpGet("/api/whoami");
  EXPECT_EQ(who_status, 200) << who;
  EXPECT_NE(who.find("\"partition\":0,\"partitions\":4"), std::string::npos)
      << who;
  for (const char* path :
       {"/api/store?id=console-2", "/api/explain?commandId=console-open",
        "/api/search?q=console-2"}) {
    auto [status, body] = nodes_[0]->HttpGet(path);
    EXPECT_EQ(status, 404) << path << ": " << body;
    EXPECT_NE(body.find("this console reads partition 0 of 4"),
              std::string::npos)
        << path << ": " << body;
  }
  auto [there_status, there] = nodes_[2]->HttpGet("/api/store?id=console-2");
  EXPECT_EQ(there_status, 200) << there;
  EXPECT_NE(there.find("\"storeId\":\"console-2\""), std::string::npos)
      << there;
  auto [explained_status, explained] =
      nodes_[2]->HttpGet("/api/explain?commandId=console-open");
  EXPECT_EQ(explained_status, 200) << explained;
}

TEST_F(PartitionTest, ConcurrentOpenStoreOfOneIdExactlyOneWins) {
  ASSERT_GE(kPartitions, 3u);
  constexpr int kIds = 12;
  for (int i = 0; i < kIds; ++i) {
    const std::string store = absl::StrCat("contested-", i);
    v1::CommandResult a, b;
    grpc::Status sa, sb;
    std::thread first([&] {
      sa = Execute(
          OpenStore(absl::StrCat(store, "-a"), store, MerchantIn(1, i)), &a);
    });
    std::thread second([&] {
      sb = Execute(
          OpenStore(absl::StrCat(store, "-b"), store, MerchantIn(2, i)), &b);
    });
    first.join();
    second.join();
    ASSERT_TRUE(sa.ok() && sb.ok()) << sa.error_message() << sb.error_message();
    ASSERT_EQ((a.status() == v1::ACCEPTED) + (b.status() == v1::ACCEPTED), 1)
        << store << ": " << a.ShortDebugString() << " / "
        << b.ShortDebugString();
    const v1::CommandResult& lost = a.status() == v1::ACCEPTED ? b : a;
    EXPECT_EQ(lost.rule(), "R1");
    EXPECT_EQ(lost.code(), v1::ALREADY_EXISTS);
    EXPECT_EQ(lost.message(), absl::StrCat("store ", store, " already exists"));
    // A retry of the loser is answered from its stored outcome.
    v1::CommandResult again;
    ASSERT_TRUE(
        Execute(OpenStore(lost.command_id(), store,
                          MerchantIn(a.status() == v1::ACCEPTED ? 2 : 1, i)),
                &again)
            .ok());
    EXPECT_TRUE(again.replayed());
    EXPECT_EQ(again.rule(), "R1");
  }
}

// What routing costs: one command at a time to partition 1, sent to node 0
// (routed) and to partition 1's leader itself. Printed, not asserted (a
// figure for docs/performance.md).
TEST_F(PartitionTest, RoutedCommandCost) {
  ASSERT_GE(kPartitions, 2u);
  constexpr int kCommands = 200;
  auto run = [&](v1::Ledger::Stub& stub, const std::string& tag) {
    std::vector<double> ms;
    for (int i = 0; i < kCommands; ++i) {
      const std::string store = absl::StrCat("cost-", tag.size(), "-", i);
      grpc::ClientContext context;
      v1::CommandResult result;
      const absl::Time start = absl::Now();
      grpc::Status s = stub.Execute(
          &context, OpenStore(store, store, MerchantIn(1, i % 7)), &result);
      ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
      EXPECT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
    }
    std::sort(ms.begin(), ms.end());
    double sum = 0;
    for (double m : ms) sum += m;
    std::cout << tag << ": " << kCommands << " openStore one at a time, "
              << absl::StrFormat("%.0f commands/s, p50 %.2f ms, p99 %.2f ms",
                                 1000.0 * kCommands / sum, ms[ms.size() / 2],
                                 ms[ms.size() * 99 / 100])
              << "\n";
  };
  run(nodes_[1]->stub(), "to the leader");
  run(Entry(), "routed via node 0");
}

// ------------------------------------------------------------ differential

// The simulator's steps for `stores` stores, with store i's merchant m<i>
// folded into one of `merchants` per subject: several stores a merchant,
// whose opens and upgrades then meet R1's subject check and R8's too.
std::vector<SimulatedStep> FoldedMigration(int stores, int merchants,
                                           uint64_t seed) {
  std::vector<SimulatedStep> steps = PlanMigration(stores, seed);
  auto fold = [&](const std::string& merchant, v1::Subject subject) {
    const int index = std::stoi(merchant.substr(1));
    return absl::StrCat("m", index % merchants, "-", v1::Subject_Name(subject));
  };
  for (SimulatedStep& step : steps) {
    v1::Command& c = step.command;
    if (c.has_open_store()) {
      c.mutable_open_store()->set_merchant_id(
          fold(c.open_store().merchant_id(), c.open_store().subject()));
    } else if (c.has_register_individual_business()) {
      c.mutable_register_individual_business()->set_merchant_id(
          fold(c.register_individual_business().merchant_id(), v1::PERSONAL));
    }
  }
  return steps;
}

// The commands as the single-node ledger executed them (withdrawal amounts
// resolved from the balance then, as `storeledger simulate` does), and its
// results.
struct Reference {
  std::vector<v1::Command> commands;
  std::vector<v1::CommandResult> results;
};

Reference RunSingleNode(const std::vector<SimulatedStep>& steps,
                        Ledger& ledger) {
  Reference ref;
  std::vector<v1::Command> chunk;
  std::set<std::string> skipped_withdrawals;
  auto flush = [&] {
    if (chunk.empty()) return;
    for (absl::StatusOr<v1::CommandResult>& r : ledger.ExecuteBatch(chunk)) {
      EXPECT_TRUE(r.ok()) << r.status();
      ref.results.push_back(r.ok() ? *r : v1::CommandResult());
    }
    for (v1::Command& c : chunk) ref.commands.push_back(std::move(c));
    chunk.clear();
  };
  for (const SimulatedStep& step : steps) {
    v1::Command command = step.command;
    if (step.amount != SimulatedStep::Amount::kAsWritten) {
      flush();
      auto* request = command.mutable_request_withdrawal();
      absl::StatusOr<v1::StoreState> state = ledger.State(request->store_id());
      const int64_t available =
          state.ok() ? state->balances().available_fen() : 0;
      if (step.amount == SimulatedStep::Amount::kTooMuch) {
        request->set_amount_fen(available + 1);
      } else if (available == 0) {
        skipped_withdrawals.insert(request->withdrawal_id());
        continue;
      } else {
        request->set_amount_fen(available);
      }
    }
    if ((command.has_complete_withdrawal() &&
         skipped_withdrawals.count(
             command.complete_withdrawal().withdrawal_id())) ||
        (command.has_fail_withdrawal() &&
         skipped_withdrawals.count(
             command.fail_withdrawal().withdrawal_id()))) {
      continue;
    }
    chunk.push_back(std::move(command));
  }
  flush();
  return ref;
}

// "o:ID" / "w:ID" for the order or withdrawal `command` names; "" if none.
std::string OrderOrWithdrawalId(const v1::Command& c) {
  switch (c.body_case()) {
    case v1::Command::kPlaceOrder:
      return "o:" + c.place_order().order_id();
    case v1::Command::kCancelOrder:
      return "o:" + c.cancel_order().order_id();
    case v1::Command::kPayOrder:
      return "o:" + c.pay_order().order_id();
    case v1::Command::kShipOrder:
      return "o:" + c.ship_order().order_id();
    case v1::Command::kSettleOrder:
      return "o:" + c.settle_order().order_id();
    case v1::Command::kRefundOrder:
      return "o:" + c.refund_order().order_id();
    case v1::Command::kRequestWithdrawal:
      return "w:" + c.request_withdrawal().withdrawal_id();
    case v1::Command::kCompleteWithdrawal:
      return "w:" + c.complete_withdrawal().withdrawal_id();
    case v1::Command::kFailWithdrawal:
      return "w:" + c.fail_withdrawal().withdrawal_id();
    default:
      return "";
  }
}

// Sends `indexes` of `commands` over one ExecuteStream to `stub`, results
// into `results` at the same indexes.
void StreamThrough(v1::Ledger::Stub& stub,
                   const std::vector<v1::Command>& commands,
                   const std::vector<size_t>& indexes,
                   std::vector<absl::StatusOr<v1::CommandResult>>* results,
                   std::atomic<size_t>* progress) {
  if (indexes.empty()) return;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
  auto stream = stub.ExecuteStream(&context);
  std::thread writer([&] {
    for (size_t i : indexes) {
      if (!stream->Write(commands[i])) break;
    }
    stream->WritesDone();
  });
  size_t got = 0;
  v1::CommandResult result;
  while (got < indexes.size() && stream->Read(&result)) {
    (*results)[indexes[got++]] = result;
    progress->fetch_add(1);
  }
  writer.join();
  grpc::Status finished = stream->Finish();
  for (; got < indexes.size(); ++got) {
    (*results)[indexes[got]] = absl::UnavailableError(
        absl::StrCat("no result: ", finished.error_message()));
  }
}

// Positions and event ids name places in a log; one ledger and a cluster
// number theirs apart. Everything else of a posting must be the same.
void ClearLogPlace(v1::PostingLine* line) {
  line->clear_position();
  line->clear_event_id();
}

// Every PostingLine a ListPostings call streams, with their log places
// cleared (ClearLogPlace) when `clear`, or the call's error.
absl::StatusOr<std::vector<v1::PostingLine>> ListPostings(
    v1::Ledger::Stub& entry, const v1::ListPostingsRequest& request,
    bool clear) {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::PostingLine>> reader =
      entry.ListPostings(&context, request);
  std::vector<v1::PostingLine> lines;
  v1::PostingLine line;
  while (reader->Read(&line)) {
    if (clear) ClearLogPlace(&line);
    lines.push_back(line);
  }
  grpc::Status s = reader->Finish();
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  }
  return lines;
}

// The finance reads through node 0 (routed to the store's partition, or
// one partition at a time) against the same reads of one ledger.
void CompareFinanceReads(v1::Ledger::Stub& entry, const Ledger& single,
                         const std::set<std::string>& store_ids) {
  const EventLog& log = single.log();
  // Balances: one partition an answer; merged, one ledger's.
  {
    grpc::ClientContext context;
    v1::BalancesReport report;
    grpc::Status s = entry.GetBalances(&context, {}, &report);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
        << s.error_message();
  }
  std::vector<v1::BalancesReport> reports;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    grpc::ClientContext context;
    v1::GetBalancesRequest request;
    request.set_partition(p);
    grpc::Status s =
        entry.GetBalances(&context, request, &reports.emplace_back());
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // Only the stores of this stream: the suite's other tests opened more.
  for (v1::BalancesReport& report : reports) {
    auto* stores = report.mutable_stores();
    stores->erase(std::remove_if(stores->begin(), stores->end(),
                                 [&](const v1::StoreBalances& store) {
                                   return !store_ids.count(store.store_id());
                                 }),
                  stores->end());
  }
  absl::StatusOr<v1::BalancesReport> merged = MergePartitionBalances(reports);
  ASSERT_TRUE(merged.ok()) << merged.status();
  absl::StatusOr<v1::BalancesReport> want = BalancesFromProjections(log);
  ASSERT_TRUE(want.ok()) << want.status();
  want->clear_position();
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(*want, *merged))
      << "one ledger: " << want->ShortDebugString()
      << "\ncluster:    " << merged->ShortDebugString();

  // Statements, a store's postings and find, for some stores of each
  // partition.
  const absl::Time from =
      absl::FromCivil(absl::CivilDay(2024, 1, 1), absl::UTCTimeZone());
  const absl::Time to =
      absl::FromCivil(absl::CivilDay(2027, 1, 1), absl::UTCTimeZone());
  size_t compared = 0;
  uint64_t postings_compared = 0;
  for (const std::string& id : store_ids) {
    if (compared == 24) break;
    absl::StatusOr<std::vector<v1::Statement>> statements =
        StatementsOf(log, id, /*pair=*/false, from, to);
    if (!statements.ok()) continue;  // never opened
    ++compared;
    grpc::ClientContext context;
    v1::GetStatementRequest request;
    request.set_store_id(id);
    *request.mutable_from() = ToProto(from);
    *request.mutable_to() = ToProto(to);
    v1::Statements have;
    grpc::Status s = entry.GetStatement(&context, request, &have);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    ASSERT_EQ(have.statements_size(), 1) << id;
    v1::Statement want_statement = statements->front();
    v1::Statement have_statement = have.statements(0);
    for (v1::Statement* st : {&want_statement, &have_statement}) {
      for (v1::StatementLine& line : *st->mutable_lines()) {
        ClearLogPlace(line.mutable_posting());
      }
    }
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        want_statement, have_statement))
        << "statement of " << id;

    std::vector<std::string> want_lines, have_lines;
    PostingFilter filter;
    filter.store_id = id;
    ASSERT_TRUE(ForEachPosting(log, filter, [&](const v1::PostingLine& line) {
                  v1::PostingLine copy = line;
                  ClearLogPlace(&copy);
                  want_lines.push_back(copy.SerializeAsString());
                  return true;
                }).ok());
    v1::ListPostingsRequest postings_request;
    postings_request.set_store_id(id);
    absl::StatusOr<std::vector<v1::PostingLine>> listed =
        ListPostings(entry, postings_request, /*clear=*/true);
    ASSERT_TRUE(listed.ok()) << id << ": " << listed.status();
    for (const v1::PostingLine& line : *listed) {
      have_lines.push_back(line.SerializeAsString());
    }
    EXPECT_EQ(want_lines, have_lines) << "postings of " << id;
    postings_compared += want_lines.size();

    grpc::ClientContext find_context;
    v1::FindRequest find_request;
    find_request.set_id(id);
    v1::FindResult found;
    s = entry.Find(&find_context, find_request, &found);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    EXPECT_TRUE(
        std::any_of(found.matches().begin(), found.matches().end(),
                    [](const v1::IdMatch& m) { return m.kind() == "store"; }))
        << "find " << id << ": " << found.ShortDebugString();
  }
  EXPECT_GT(compared, 0u);
  EXPECT_GT(postings_compared, 0u);

  // Every store's postings: one partition at a time, all of them together
  // (those of this stream's stores) one ledger's count.
  uint64_t want_count = 0, have_count = 0;
  ASSERT_TRUE(ForEachPosting(log, {}, [&](const v1::PostingLine&) {
                ++want_count;
                return true;
              }).ok());
  // (Every posting of one ledger is of a store of this stream.)
  for (uint32_t p = 0; p < kPartitions; ++p) {
    v1::ListPostingsRequest request;
    request.set_partition(p);
    absl::StatusOr<std::vector<v1::PostingLine>> lines =
        ListPostings(entry, request, /*clear=*/false);
    ASSERT_TRUE(lines.ok()) << "partition " << p << ": " << lines.status();
    for (const v1::PostingLine& line : *lines) {
      have_count += store_ids.count(line.store_id());
    }
  }
  {
    v1::ListPostingsRequest request;  // every store, no partition named
    EXPECT_TRUE(absl::IsFailedPrecondition(
        ListPostings(entry, request, /*clear=*/false).status()));
  }
  EXPECT_EQ(want_count, have_count);
  std::cout << "finance reads through node 0: balances of " << kPartitions
            << " partitions merged, " << compared << " statements, "
            << postings_compared << " postings of those stores, " << have_count
            << " postings in all, as one ledger's\n";
}

TEST_F(PartitionTest, SameStreamSameOutcomesAsOneLedger) {
  const uint64_t seed = testing::SeedFromEnvironment();
  const char* stores_env = std::getenv("STORELEDGER_PARTITION_STORES");
  const int stores = stores_env != nullptr ? std::atoi(stores_env) : 400;
  const int merchants = std::max(1, stores / 8);
  std::cout << "seed " << seed << " (STORELEDGER_SEED), " << stores
            << " stores (STORELEDGER_PARTITION_STORES), " << merchants
            << " merchants a subject\n";
  const absl::Time started = absl::Now();
  const std::vector<SimulatedStep> steps =
      FoldedMigration(stores, merchants, seed);

  TempDir single_dir;
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> single =
      Ledger::Open(single_dir.Sub("db"), options);
  ASSERT_TRUE(single.ok()) << single.status();
  const Reference ref = RunSingleNode(steps, **single);
  const std::vector<v1::Command>& commands = ref.commands;
  const absl::Time single_done = absl::Now();

  // The cluster, through node 0 only: commands that touch a common
  // merchant or store (a store reopened by another merchant, an upgrade)
  // in stream order on one client stream, kClients streams at once, every
  // applyPolicy alone between what comes before and after it.
  constexpr size_t kClients = 8;
  std::map<std::string, std::string> parent;  // union-find over m:/s: keys
  std::function<std::string(const std::string&)> find =
      [&](const std::string& key) -> std::string {
    auto it = parent.find(key);
    if (it == parent.end() || it->second == key) return key;
    return it->second = find(it->second);
  };
  auto join = [&](const std::string& a, const std::string& b) {
    const std::string ra = find(a), rb = find(b);
    if (ra != rb) parent[ra] = rb;
  };
  std::vector<std::string> first_key(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    const v1::Command& c = commands[i];
    std::vector<std::string> keys;
    if (c.has_open_store()) {
      keys.push_back("m:" + c.open_store().merchant_id());
    } else if (c.has_register_individual_business()) {
      keys.push_back("m:" + c.register_individual_business().merchant_id());
    }
    for (const std::string& id : StoreIdsOf(c)) keys.push_back("s:" + id);
    // An order or withdrawal named under another store (R13) runs after
    // its own store's commands, as on one ledger.
    if (const std::string id = OrderOrWithdrawalId(c); !id.empty()) {
      keys.push_back(id);
    }
    if (keys.empty()) keys.push_back("c:" + c.command_id());
    for (size_t k = 1; k < keys.size(); ++k) join(keys[0], keys[k]);
    first_key[i] = keys[0];
  }
  std::vector<size_t> client_of(commands.size());
  for (size_t i = 0; i < commands.size(); ++i) {
    client_of[i] = PlacementHash(find(first_key[i])) % kClients;
  }
  std::vector<absl::StatusOr<v1::CommandResult>> got(
      commands.size(), absl::UnknownError("not sent"));
  size_t begin = 0;
  std::thread killer;
  // STORELEDGER_PARTITION_NO_KILL=1: no kill (to tell a routing fault from
  // a failover one).
  const bool kill_leader =
      std::getenv("STORELEDGER_PARTITION_NO_KILL") == nullptr &&
      kPartitions >= 3;
  // Partition 2's leader killed (SIGKILL) a third of the way into the
  // largest epoch, and started again 300 ms later: the run completes
  // through the routers' retries (its lease lapses first: ~2 s).
  std::atomic<size_t> progress{0};
  size_t kill_at = 0, largest = 0, before = 0, epoch_size = 0;
  for (size_t i = 0; i <= commands.size(); ++i) {
    if (i < commands.size() && !commands[i].has_apply_policy()) {
      ++epoch_size;
      continue;
    }
    if (epoch_size > largest) {
      largest = epoch_size;
      kill_at = before + epoch_size / 3;
    }
    before += epoch_size;
    epoch_size = 0;
  }
  std::atomic<size_t> killed_at{0};
  if (kill_leader) {
    killer = std::thread([&] {
      while (progress.load() < kill_at) absl::SleepFor(absl::Milliseconds(5));
      killed_at = progress.load();
      nodes_[2]->KillHard();
      absl::SleepFor(absl::Milliseconds(300));
      nodes_[2]->Start();
    });
  }
  auto send_epoch = [&](size_t end) {
    std::vector<std::vector<size_t>> per_client(kClients);
    for (size_t i = begin; i < end; ++i) per_client[client_of[i]].push_back(i);
    std::vector<std::thread> clients;
    for (size_t k = 0; k < kClients; ++k) {
      clients.emplace_back([&, k] {
        StreamThrough(Entry(), commands, per_client[k], &got, &progress);
      });
    }
    for (std::thread& t : clients) t.join();
  };
  for (size_t i = 0; i <= commands.size(); ++i) {
    if (i < commands.size() && !commands[i].has_apply_policy()) continue;
    send_epoch(i);
    if (i < commands.size()) {
      v1::CommandResult result;
      grpc::Status s = Execute(commands[i], &result);
      got[i] = s.ok() ? absl::StatusOr<v1::CommandResult>(result)
                      : absl::UnavailableError(s.error_message());
    }
    begin = i + 1;
  }
  if (killer.joinable()) killer.join();
  const absl::Time cluster_done = absl::Now();

  // Every command: the same outcome, rule, code and message -- but for
  // R13 across partitions (an order named under a store placed in another
  // partition, or in none: its partition does not know the order).
  size_t differing = 0, across = 0;
  std::map<std::string, int> rules;
  std::set<uint32_t> partitions_used;
  for (size_t i = 0; i < commands.size(); ++i) {
    ASSERT_TRUE(got[i].ok()) << i << ": " << got[i].status();
    const v1::CommandResult& want = ref.results[i];
    const v1::CommandResult& have = *got[i];
    ++rules[want.rule().empty() ? "accepted" : want.rule()];
    partitions_used.insert(have.partition());
    if (want.rule() == "R13" && have.status() == v1::REJECTED &&
        have.code() == v1::NOT_FOUND) {
      ++across;
      continue;
    }
    const bool same =
        want.status() == have.status() && want.rule() == have.rule() &&
        want.code() == have.code() &&
        (commands[i].has_apply_policy() || want.message() == have.message());
    if (!same && ++differing <= 10) {
      ADD_FAILURE() << "command " << i << " " << commands[i].ShortDebugString()
                    << "\n  one ledger: " << want.ShortDebugString()
                    << "\n  cluster:    " << have.ShortDebugString();
    }
  }
  EXPECT_EQ(differing, 0u);
  EXPECT_EQ(partitions_used.size(), kPartitions);
  if (kPartitions == 1) {
    EXPECT_EQ(across, 0u);
  }

  // Every store: the same state; balances summed per kind: the same.
  std::set<std::string> store_ids;
  for (const v1::Command& c : commands) {
    for (const std::string& id : StoreIdsOf(c)) store_ids.insert(id);
  }
  std::map<v1::StoreKind, std::vector<int64_t>> single_totals, cluster_totals;
  auto add = [](std::map<v1::StoreKind, std::vector<int64_t>>& totals,
                const v1::StoreState& s) {
    std::vector<int64_t>& t = totals[s.kind()];
    t.resize(5);
    t[0] += s.balances().pending_fen();
    t[1] += s.balances().available_fen();
    t[2] += s.balances().withdrawing_fen();
    t[3] += s.balances().paid_out_fen();
    t[4] += s.balances().deposit_fen();
  };
  size_t found = 0, states_differing = 0;
  for (const std::string& id : store_ids) {
    absl::StatusOr<v1::StoreState> want = (*single)->State(id);
    grpc::ClientContext context;
    v1::GetStoreRequest request;
    request.set_store_id(id);
    v1::StoreState have;
    grpc::Status s = Entry().GetStore(&context, request, &have);
    if (!want.ok()) {
      EXPECT_TRUE(absl::IsNotFound(want.status())) << want.status();
      EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND)
          << id << ": " << s.error_message();
      continue;
    }
    ++found;
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    add(single_totals, *want);
    add(cluster_totals, have);
    if (!google::protobuf::util::MessageDifferencer::Equals(*want, have) &&
        ++states_differing <= 5) {
      ADD_FAILURE() << "store " << id
                    << "\n  one ledger: " << want->ShortDebugString()
                    << "\n  cluster:    " << have.ShortDebugString();
    }
  }
  EXPECT_EQ(states_differing, 0u);
  EXPECT_EQ(single_totals, cluster_totals);
  EXPECT_GT(found, static_cast<size_t>(stores) / 2);
  CompareFinanceReads(Entry(), **single, store_ids);

  size_t replayed = 0;
  for (const auto& r : got) replayed += r.ok() && r->replayed();
  if (kill_leader) {
    EXPECT_LT(killed_at.load(), commands.size() - 3) << "killed after the run";
    std::cout << "partition 2's leader killed after " << killed_at.load()
              << " results; " << replayed
              << " commands answered replayed (retried after the kill)\n";
  }
  std::cout << commands.size() << " commands, " << found << " stores, "
            << across << " R13 across partitions (NOT_FOUND there); rules:";
  for (const auto& [rule, count] : rules)
    std::cout << " " << rule << "=" << count;
  std::cout << "\nsingle node " << absl::FormatDuration(single_done - started)
            << ", cluster " << absl::FormatDuration(cluster_done - single_done)
            << ", compare " << absl::FormatDuration(absl::Now() - cluster_done)
            << "\n";
}

}  // namespace
}  // namespace storeledger
