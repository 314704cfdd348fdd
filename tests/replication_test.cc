// Replication on NATS JetStream (DESIGN.md §7, docs/cluster.md):
// real nats-server processes on loopback (tests/support/nats_cluster.h),
// real RocksDB in temporary directories. In-process replicas for the
// format, follower and fence checks; storeledgerd processes for the
// failures (SIGSTOP, SIGKILL).
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replay/audit.h"
#include "replay/projection_store.h"
#include "replication/jetstream.h"
#include "replication/log_batch.h"
#include "replication/replica.h"
#include "server/cluster_router.h"
#include "server/service.h"
#include "storeledger/v1/replication.pb.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/child_process.h"
#include "tests/support/nats_cluster.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using testing::NatsCluster;
using testing::TempDir;
using testing::WaitFor;

constexpr absl::Duration kConvergeTimeout = absl::Seconds(20);

v1::Command OpenStore(const std::string& id, const std::string& store) {
  absl::StatusOr<v1::Command> command = ParseCommandJson(absl::StrCat(
      R"({"commandId":")", id,
      R"(","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":")",
      store,
      R"(","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})"));
  EXPECT_TRUE(command.ok()) << command.status();
  return *command;
}

v1::Command AddProduct(const std::string& id, const std::string& store,
                       const std::string& product) {
  absl::StatusOr<v1::Command> command = ParseCommandJson(absl::StrCat(
      R"({"commandId":")", id,
      R"(","occurredAt":"2024-06-02T10:00:00+08:00","addProduct":{"storeId":")",
      store, R"(","productId":")", product,
      R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})"));
  EXPECT_TRUE(command.ok()) << command.status();
  return *command;
}

// Connects with retries: a fresh cluster elects its JetStream meta leader
// a moment after its servers accept connections.
absl::StatusOr<std::unique_ptr<Replica>> ConnectReplica(
    ReplicaOptions options) {
  absl::Status last;
  const absl::Time deadline = absl::Now() + kConvergeTimeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<std::unique_ptr<Replica>> replica =
        Replica::Connect(options);
    if (replica.ok()) return replica;
    last = replica.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return last;
}

// A replica in this process: its Ledger publishes through it.
class Node {
 public:
  static std::unique_ptr<Node> Start(
      const std::vector<std::string>& urls, const std::string& dir,
      const std::string& name, uint32_t partition, bool follow_only,
      absl::Duration lease_ttl = absl::Seconds(1),
      uint64_t drop_publish_ack_every = 0,
      ReplicaOptions::Ack ack = ReplicaOptions::Ack::kReplicated) {
    auto node = std::make_unique<Node>();
    ReplicaOptions options;
    options.nats_urls = urls;
    options.partition = partition;
    options.name = name;
    options.follow_only = follow_only;
    options.lease_ttl = lease_ttl;
    options.drop_publish_ack_every = drop_publish_ack_every;
    options.ack = ack;
    absl::StatusOr<std::unique_ptr<Replica>> replica = ConnectReplica(options);
    EXPECT_TRUE(replica.ok()) << replica.status();
    if (!replica.ok()) return nullptr;
    node->replica = *std::move(replica);
    // As storeledgerd does: a tail the stream never held is moved aside
    // before the ledger opens.
    absl::StatusOr<std::optional<v1::DivergedRecord>> diverged =
        node->replica->Reconcile(dir);
    EXPECT_TRUE(diverged.ok()) << diverged.status();
    if (!diverged.ok()) return nullptr;
    node->diverged = *std::move(diverged);
    LedgerOptions ledger_options;
    ledger_options.before_write = node->replica->BeforeWrite();
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(dir, ledger_options);
    EXPECT_TRUE(ledger.ok()) << ledger.status();
    if (!ledger.ok()) return nullptr;
    node->ledger = *std::move(ledger);
    absl::Status started = node->replica->Start(node->ledger.get());
    EXPECT_TRUE(started.ok()) << started;
    if (!started.ok()) return nullptr;
    return node;
  }
  ~Node() { replica.reset(); }  // stops before the ledger closes

  bool Leads() const { return replica->status().role == ReplicaRole::kLeader; }
  uint64_t head() const { return ledger->log().head().position; }

  std::unique_ptr<Replica> replica;
  std::unique_ptr<Ledger> ledger;
  std::optional<v1::DivergedRecord> diverged;  // what Reconcile moved aside
};

// Every envelope's stored bytes, by position.
std::vector<std::string> StoredLog(const EventLog& log) {
  std::vector<std::string> raw_log;
  absl::Status scanned =
      log.Scan(0, [&](const Envelope&, absl::string_view raw) {
        raw_log.emplace_back(raw);
        return true;
      });
  EXPECT_TRUE(scanned.ok()) << scanned;
  return raw_log;
}

void ExpectAuditPasses(const EventLog& log, const std::string& replica) {
  absl::StatusOr<v1::AuditReport> report = Audit(log);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << replica << ": " << report->ShortDebugString();
}

TEST(ReplicationTest, LeaderPublishesFollowerStoresTheSameBytes) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  std::unique_ptr<Node> leader =
      Node::Start((*nats)->urls(), dir.Sub("a"), "a", 0, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  std::unique_ptr<Node> follower =
      Node::Start((*nats)->urls(), dir.Sub("b"), "b", 0, false);
  ASSERT_NE(follower, nullptr);

  // A write to the follower is refused, naming the leader.
  EXPECT_TRUE(absl::IsUnavailable(follower->replica->WriteGate()));
  EXPECT_NE(follower->replica->WriteGate().message().find("the leader is"),
            std::string::npos);

  std::vector<v1::Command> commands;
  for (int s = 0; s < 5; ++s) {
    const std::string store = absl::StrCat("s", s);
    commands.push_back(OpenStore(absl::StrCat(store, "-open"), store));
    for (int p = 0; p < 20; ++p) {
      commands.push_back(
          AddProduct(absl::StrCat(store, "-", p), store, absl::StrCat("p", p)));
    }
  }
  for (const auto& result : leader->ledger->ExecuteBatch(commands)) {
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->status(), v1::ACCEPTED) << result->message();
  }
  // One more, alone (a group of its own, published on its own).
  ASSERT_TRUE(leader->ledger->Execute(AddProduct("extra", "s0", "p99")).ok());
  const uint64_t head = leader->head();
  ASSERT_GE(head, commands.size() + 1);
  ASSERT_TRUE(
      WaitFor([&] { return follower->head() == head; }, kConvergeTimeout))
      << "follower at " << follower->head() << " of " << head;

  // The same bytes at every position, hence the same digest everywhere.
  EXPECT_EQ(StoredLog(follower->ledger->log()),
            StoredLog(leader->ledger->log()));
  EXPECT_EQ(follower->ledger->log().head().hash,
            leader->ledger->log().head().hash);
  ExpectAuditPasses(follower->ledger->log(), "follower");
  ExpectAuditPasses(leader->ledger->log(), "leader");
  // Projections folded on the follower answer as the leader's do.
  absl::StatusOr<v1::StoreState> on_leader = leader->ledger->State("s3");
  absl::StatusOr<v1::StoreState> on_follower = follower->ledger->State("s3");
  ASSERT_TRUE(on_leader.ok() && on_follower.ok());
  EXPECT_EQ(on_follower->SerializeAsString(), on_leader->SerializeAsString());
  // Idempotency holds on the follower's copy: the outcome came with the log.
  absl::StatusOr<std::optional<StoredOutcome>> outcome =
      follower->ledger->log().GetOutcome("s2-7");
  ASSERT_TRUE(outcome.ok() && outcome->has_value());
  EXPECT_EQ((*outcome)->result().status(), v1::ACCEPTED);
}

// A follower that starts behind applies what the stream holds many
// messages to a synced append (kApplyMessagesMax), each folded over the
// ones before it in the same append.
TEST(ReplicationTest, FollowerBehindAppliesManyMessagesPerAppend) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  std::unique_ptr<Node> leader =
      Node::Start((*nats)->urls(), dir.Sub("a"), "a", 3, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  // One command per message; each store's products arrive in messages
  // after the one that opened it.
  constexpr int kStores = 4;
  constexpr int kProducts = 10;
  for (int s = 0; s < kStores; ++s) {
    const std::string store = absl::StrCat("s", s);
    ASSERT_TRUE(leader->ledger->Execute(OpenStore(store, store)).ok());
  }
  for (int p = 0; p < kProducts; ++p) {
    for (int s = 0; s < kStores; ++s) {
      const std::string store = absl::StrCat("s", s);
      absl::StatusOr<v1::CommandResult> added = leader->ledger->Execute(
          AddProduct(absl::StrCat(store, "-", p), store, absl::StrCat("p", p)));
      ASSERT_TRUE(added.ok()) << added.status();
      ASSERT_EQ(added->status(), v1::ACCEPTED) << added->message();
    }
  }
  const uint64_t messages = leader->replica->status().stream_sequence;
  ASSERT_EQ(messages, kStores * (kProducts + 1));

  std::unique_ptr<Node> follower =
      Node::Start((*nats)->urls(), dir.Sub("b"), "b", 3, true);
  ASSERT_NE(follower, nullptr);
  const uint64_t head = leader->head();
  ASSERT_TRUE(
      WaitFor([&] { return follower->head() == head; }, kConvergeTimeout))
      << "follower at " << follower->head() << " of " << head;
  const ReplicaStatus status = follower->replica->status();
  EXPECT_EQ(status.stream_sequence, messages);
  // One append per message before; all of them were there at the start.
  EXPECT_LT(status.applied_appends, messages / 4)
      << status.applied_appends << " appends for " << messages << " messages";
  EXPECT_EQ(StoredLog(follower->ledger->log()),
            StoredLog(leader->ledger->log()));
  ExpectAuditPasses(follower->ledger->log(), "follower");
  for (int s = 0; s < kStores; ++s) {
    const std::string store = absl::StrCat("s", s);
    absl::StatusOr<v1::StoreState> on_leader = leader->ledger->State(store);
    absl::StatusOr<v1::StoreState> on_follower = follower->ledger->State(store);
    ASSERT_TRUE(on_leader.ok() && on_follower.ok());
    EXPECT_EQ(on_follower->products_size(), kProducts) << store;
    EXPECT_EQ(on_follower->SerializeAsString(), on_leader->SerializeAsString())
        << store;
  }
}

// Copies partition `from`'s messages into partition `to`'s stream, as
// `edit` rewrites them (nullopt: leave the message out).
void CopyStream(JetStream& js, uint32_t from, uint32_t to,
                const std::function<std::optional<v1::LogBatch>(
                    uint64_t sequence, v1::LogBatch)>& edit) {
  absl::StatusOr<uint64_t> last = js.LastSequence(from);
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(js.EnsureStream(to, 1).ok());
  for (uint64_t sequence = 1; sequence <= *last; ++sequence) {
    absl::StatusOr<std::optional<std::string>> data = js.Get(from, sequence);
    ASSERT_TRUE(data.ok() && data->has_value());
    v1::LogBatch batch;
    ASSERT_TRUE(batch.ParseFromString(**data));
    std::optional<v1::LogBatch> edited = edit(sequence, batch);
    if (!edited.has_value()) continue;
    edited->set_partition(to);
    ASSERT_TRUE(js.Publish(to, edited->SerializeAsString(),
                           absl::StrCat("copy:", sequence), std::nullopt)
                    .ok());
  }
}

TEST(ReplicationTest, TamperedMessageIsRefusedWithDataLossNamingThePosition) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  const uint64_t seed = testing::SeedFromEnvironment();
  std::cout << "seed " << seed << "\n";
  std::unique_ptr<Node> leader =
      Node::Start((*nats)->urls(), dir.Sub("leader"), "leader", 1, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  // Four messages of one command each.
  for (int i = 0; i < 4; ++i) {
    const std::string store = absl::StrCat("s", i);
    ASSERT_TRUE(leader->ledger->Execute(OpenStore(store, store)).ok());
  }
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok()) << js.status();

  struct Case {
    const char* name;
    uint32_t partition;
    std::function<std::optional<v1::LogBatch>(uint64_t, v1::LogBatch)> edit;
    // The original message whose first position the refusal names.
    uint64_t refused_sequence;
  };
  const size_t flip = seed % 40;  // which byte of the body is flipped
  const std::vector<Case> cases = {
      {"bad hash", 11,
       [&](uint64_t sequence,
           v1::LogBatch batch) -> std::optional<v1::LogBatch> {
         if (sequence == 3) {
           std::string* raw = batch.mutable_envelopes(0);
           (*raw)[flip] = static_cast<char>((*raw)[flip] ^ 0x01);
         }
         return batch;
       },
       3},
      {"gap", 12,
       [](uint64_t sequence,
          v1::LogBatch batch) -> std::optional<v1::LogBatch> {
         if (sequence == 2) return std::nullopt;
         return batch;
       },
       2},
      {"reorder", 13, nullptr, 2},
      // Hashes and links all redone, so that only the log's own check of
      // stream versions (AppendReplicated) refuses it, after two good
      // messages that are applied with it.
      {"wrong stream version", 14,
       [](uint64_t sequence,
          v1::LogBatch batch) -> std::optional<v1::LogBatch> {
         if (sequence != 3) return batch;
         std::string prev_hash = batch.prev_hash();
         for (int i = 0; i < batch.envelopes_size(); ++i) {
           Envelope envelope;
           EXPECT_TRUE(envelope.ParseFromString(batch.envelopes(i)));
           if (i == 0) {
             envelope.set_stream_version(envelope.stream_version() + 1);
           }
           envelope.set_prev_hash(prev_hash);
           envelope.clear_hash();
           envelope.set_hash(EnvelopeHash(envelope));
           prev_hash = envelope.hash();
           *batch.mutable_envelopes(i) = SerializeDeterministic(envelope);
         }
         return batch;
       },
       3},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::optional<std::string>> refused =
        (*js)->Get(1, c.refused_sequence);
    ASSERT_TRUE(refused.ok() && refused->has_value());
    v1::LogBatch refused_batch;
    ASSERT_TRUE(refused_batch.ParseFromString(**refused));
    const uint64_t refused_position = refused_batch.first_position();
    if (c.edit != nullptr) {
      CopyStream(**js, 1, c.partition, c.edit);
    } else {
      // 1, 3, 2, 4.
      std::map<uint64_t, v1::LogBatch> kept;
      CopyStream(**js, 1, 99,
                 [&](uint64_t sequence,
                     v1::LogBatch batch) -> std::optional<v1::LogBatch> {
                   kept[sequence] = batch;
                   return std::nullopt;
                 });
      ASSERT_TRUE((*js)->EnsureStream(c.partition, 1).ok());
      for (uint64_t sequence : {1, 3, 2, 4}) {
        v1::LogBatch batch = kept[sequence];
        batch.set_partition(c.partition);
        ASSERT_TRUE((*js)
                        ->Publish(c.partition, batch.SerializeAsString(),
                                  absl::StrCat("r", sequence), std::nullopt)
                        .ok());
      }
    }
    std::unique_ptr<Node> follower = Node::Start(
        (*nats)->urls(), dir.Sub(c.name), c.name, c.partition, true);
    ASSERT_NE(follower, nullptr);
    ASSERT_TRUE(
        WaitFor([&] { return !follower->replica->status().data_loss.ok(); },
                kConvergeTimeout))
        << "follower at " << follower->head() << ", stream sequence "
        << follower->replica->status().stream_sequence;
    const absl::Status loss = follower->replica->status().data_loss;
    EXPECT_TRUE(absl::IsDataLoss(loss)) << loss;
    EXPECT_NE(loss.message().find(absl::StrCat("position ", refused_position)),
              std::string::npos)
        << loss;
    // Nothing past it is stored, hence nothing past it is served.
    EXPECT_EQ(follower->head(), refused_position - 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(follower->head(), refused_position - 1);
  }
}

TEST(ReplicationTest, PublishRefusedByTheFenceAcknowledgesNothing) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  std::unique_ptr<Node> leader =
      Node::Start((*nats)->urls(), dir.Sub("a"), "a", 2, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  ASSERT_TRUE(leader->ledger->Execute(OpenStore("s1", "s1")).ok());
  const Head before = leader->ledger->log().head();
  // Someone else extends the stream (as a new leader would).
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  absl::StatusOr<uint64_t> last = (*js)->LastSequence(2);
  ASSERT_TRUE(last.ok());
  ASSERT_TRUE((*js)->Publish(2, "another writer", "p2:other", *last).ok());
  // The leader's next command is refused by the fence: not acknowledged,
  // not stored, and the replica is deposed.
  absl::StatusOr<v1::CommandResult> refused =
      leader->ledger->Execute(OpenStore("s2", "s2"));
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(leader->ledger->log().head().position, before.position);
  EXPECT_EQ(leader->replica->status().role, ReplicaRole::kDeposed);
  EXPECT_TRUE(absl::IsUnavailable(leader->replica->WriteGate()));
  // And it stays so: nothing more is acknowledged.
  EXPECT_FALSE(leader->ledger->Execute(OpenStore("s3", "s3")).ok());
  absl::StatusOr<std::optional<std::string>> held = (*js)->Get(2, *last + 1);
  ASSERT_TRUE(held.ok() && held->has_value());
  EXPECT_EQ(**held, "another writer");
}

TEST(ReplicationTest, NatsServerFailuresLoseNothingAndQuorumLossStopsAcks) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(3);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  // A lease that outlives the outage: this test is about the stream.
  std::unique_ptr<Node> leader = Node::Start((*nats)->urls(), dir.Sub("a"), "a",
                                             0, false, absl::Seconds(60));
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  std::unique_ptr<Node> follower =
      Node::Start((*nats)->urls(), dir.Sub("b"), "b", 0, true);
  ASSERT_NE(follower, nullptr);

  std::map<std::string, uint64_t> acknowledged;
  auto execute = [&](const std::string& store) {
    absl::StatusOr<v1::CommandResult> result =
        leader->ledger->Execute(OpenStore(store, store));
    if (result.ok()) acknowledged[store] = result->first_position();
    return result.status();
  };
  // One server of three killed mid-load, then restarted: nothing lost.
  for (int i = 0; i < 20; ++i) {
    if (i == 5) (*nats)->Kill(0);
    if (i == 15) {
      ASSERT_TRUE((*nats)->Restart(0).ok());
    }
    ASSERT_TRUE(execute(absl::StrCat("one-down-", i)).ok()) << i;
  }
  // Two of three down: the leader acknowledges nothing (it does not fall
  // back to local-only) until quorum returns.
  (*nats)->Kill(1);
  (*nats)->Kill(2);
  std::atomic<bool> answered{false};
  absl::Status late;
  std::thread blocked([&] {
    late = execute("no-quorum");
    answered = true;
  });
  std::this_thread::sleep_for(std::chrono::seconds(4));
  EXPECT_FALSE(answered) << "acknowledged without a JetStream quorum";
  EXPECT_EQ(acknowledged.count("no-quorum"), 0u);
  ASSERT_TRUE((*nats)->Restart(1).ok());
  ASSERT_TRUE((*nats)->Restart(2).ok());
  EXPECT_TRUE(WaitFor([&] { return answered.load(); }, absl::Seconds(60)));
  blocked.join();
  EXPECT_TRUE(late.ok()) << late;
  ASSERT_TRUE(execute("after").ok());

  const uint64_t head = leader->head();
  ASSERT_TRUE(
      WaitFor([&] { return follower->head() == head; }, kConvergeTimeout));
  EXPECT_EQ(StoredLog(follower->ledger->log()),
            StoredLog(leader->ledger->log()));
  for (const auto& [id, position] : acknowledged) {
    absl::StatusOr<std::optional<StoredOutcome>> outcome =
        follower->ledger->log().GetOutcome(id);
    ASSERT_TRUE(outcome.ok() && outcome->has_value()) << id;
    EXPECT_EQ((*outcome)->result().first_position(), position) << id;
  }
}

TEST(ReplicationTest, LostPublishAcknowledgementSettlesToExactlyOneCopy) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  // Every third acknowledgement is lost.
  std::unique_ptr<Node> leader = Node::Start((*nats)->urls(), dir.Sub("a"), "a",
                                             3, false, absl::Seconds(5), 3);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  constexpr int kCommands = 12;
  for (int i = 0; i < kCommands; ++i) {
    const std::string store = absl::StrCat("s", i);
    absl::StatusOr<v1::CommandResult> result =
        leader->ledger->Execute(OpenStore(store, store));
    ASSERT_TRUE(result.ok()) << result.status();
  }
  // One message per command (each Execute is a group of its own), each
  // exactly once, contiguous, ending at the leader's head.
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  absl::StatusOr<uint64_t> last = (*js)->LastSequence(3);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, static_cast<uint64_t>(kCommands));
  uint64_t next_position = 1;
  for (uint64_t sequence = 1; sequence <= *last; ++sequence) {
    absl::StatusOr<std::optional<std::string>> data = (*js)->Get(3, sequence);
    ASSERT_TRUE(data.ok() && data->has_value());
    v1::LogBatch batch;
    ASSERT_TRUE(batch.ParseFromString(**data));
    EXPECT_EQ(batch.first_position(), next_position) << sequence;
    next_position = batch.first_position() + batch.envelopes_size();
  }
  EXPECT_EQ(next_position - 1, leader->head());
}

TEST(ReplicationTest, AckLocalPublishesBehindTheAnswer) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  std::unique_ptr<Node> leader =
      Node::Start((*nats)->urls(), dir.Sub("a"), "a", 4, false,
                  absl::Seconds(5), 0, ReplicaOptions::Ack::kLocal);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->Leads(); }, kConvergeTimeout));
  std::unique_ptr<Node> follower =
      Node::Start((*nats)->urls(), dir.Sub("b"), "b", 4, true);
  ASSERT_NE(follower, nullptr);
  std::vector<v1::Command> commands;
  for (int i = 0; i < 300; ++i) {
    const std::string store = absl::StrCat("s", i);
    commands.push_back(OpenStore(store, store));
  }
  for (const auto& result : leader->ledger->ExecuteBatch(commands)) {
    ASSERT_TRUE(result.ok()) << result.status();
  }
  const uint64_t head = leader->head();
  EXPECT_TRUE(
      WaitFor([&] { return leader->replica->publish_lag_events() == 0; },
              kConvergeTimeout));
  ASSERT_TRUE(
      WaitFor([&] { return follower->head() == head; }, kConvergeTimeout));
  EXPECT_EQ(StoredLog(follower->ledger->log()),
            StoredLog(leader->ledger->log()));
}

// A storeledgerd process, one replica of partition 0.
class Daemon {
 public:
  Daemon(std::string urls, std::string db, std::string log)
      : urls_(std::move(urls)), db_(std::move(db)), log_(std::move(log)) {
    absl::StatusOr<int> port = testing::FreeLoopbackPort();
    EXPECT_TRUE(port.ok());
    address_ = absl::StrCat("127.0.0.1:", *port);
    channel_ = ReplicaChannel(address_, grpc::InsecureChannelCredentials());
    stub_ = v1::Ledger::NewStub(channel_);
  }
  // Serves the console and /metrics too (Metrics()).
  void EnableHttp() {
    absl::StatusOr<int> port = testing::FreeLoopbackPort();
    ASSERT_TRUE(port.ok());
    http_port_ = *port;
    extra_args.insert(extra_args.end(),
                      {"--http", absl::StrCat("127.0.0.1:", http_port_)});
  }
  void Start() {
    testing::ChildOptions options;
    options.argv = {STORELEDGERD_BIN,
                    "--db",
                    db_,
                    "--listen",
                    address_,
                    "--replicate",
                    urls_,
                    "--shutdown-grace-ms",
                    "500"};
    options.argv.insert(options.argv.end(), extra_args.begin(),
                        extra_args.end());
    options.stderr_path = log_;
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
        testing::ChildProcess::Start(options);
    ASSERT_TRUE(process.ok()) << process.status();
    process_ = *std::move(process);
  }
  void Signal(int signal) { process_->Kill(signal); }
  void Stop() {
    if (process_ == nullptr) return;
    process_->Kill(SIGTERM);
    process_->Wait();
    process_.reset();
  }
  void KillHard() {
    process_->Kill(SIGKILL);
    process_->Wait();
    process_.reset();
  }
  ~Daemon() {
    if (process_ != nullptr) {
      process_->Kill(SIGCONT);
      KillHard();
    }
  }

  grpc::Status Execute(const v1::Command& command, v1::CommandResult* result,
                       absl::Duration deadline = absl::Seconds(5)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return stub_->Execute(&context, command, result);
  }
  // The head's position, or 0 when it does not answer.
  uint64_t HeadPosition() {
    if (!AwaitReplica(*channel_, kReplicaConnectWait)) return 0;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    v1::Digest digest;
    if (!stub_->Digest(&context, v1::DigestRequest(), &digest).ok()) return 0;
    return digest.position();
  }
  const std::string& address() const { return address_; }
  const std::string& db() const { return db_; }
  pid_t pid() const { return process_->pid(); }
  v1::Ledger::Stub& stub() { return *stub_; }
  grpc::Channel& channel() { return *channel_; }
  // What the process wrote to stderr, over all its starts.
  std::string Said() const {
    std::ifstream file(log_);
    return std::string((std::istreambuf_iterator<char>(file)),
                       std::istreambuf_iterator<char>());
  }
  // What the process wrote to stdout so far (its current start).
  std::string Out() {
    if (process_ == nullptr) return "";
    process_->ReadUntil(absl::Now() + absl::Milliseconds(100));
    return process_->out();
  }
  // The value of one sample of /metrics ("name" or "name{labels}"), or -1.
  double Metric(const std::string& sample) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(1);
    httplib::Result got = client.Get("/metrics");
    if (!got || got->status != 200) return -1;
    for (absl::string_view line : absl::StrSplit(got->body, '\n')) {
      std::vector<absl::string_view> fields = absl::StrSplit(line, ' ');
      double value;
      if (fields.size() == 2 && fields[0] == sample &&
          absl::SimpleAtod(fields[1], &value)) {
        return value;
      }
    }
    return -1;
  }

  std::vector<std::string> extra_args;  // after the fixed ones

 private:
  int http_port_ = 0;
  std::string urls_, db_, log_, address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
  std::unique_ptr<testing::ChildProcess> process_;
};

class ReplicaProcessTest : public ::testing::Test {
 protected:
  void StartAll(int daemons) {
    absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(3);
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
    absl::StatusOr<std::unique_ptr<JetStream>> js =
        JetStream::Connect(nats_->urls());
    ASSERT_TRUE(js.ok()) << js.status();
    js_ = *std::move(js);
    for (int i = 0; i < daemons; ++i) {
      daemons_.push_back(std::make_unique<Daemon>(
          nats_->urls_flag(), dir_.Sub(absl::StrCat("r", i)),
          dir_.Sub(absl::StrCat("r", i, ".log"))));
      daemons_.back()->Start();
    }
  }
  // The daemon holding the lease (not `other_than`), or -1.
  int Leader(int other_than = -1) {
    int found = -1;
    WaitFor(
        [&] {
          absl::StatusOr<std::optional<LeaseEntry>> lease =
              js_->GetLease(LeaseKey(0));
          if (!lease.ok() || !lease->has_value()) {
            // The bucket may not exist yet on a fresh cluster.
            if (!lease.ok())
              js_->EnsureLeaseBucket(kLeaseTtlDefault, 3).IgnoreError();
            return false;
          }
          for (size_t i = 0; i < daemons_.size(); ++i) {
            if (daemons_[i]->address() == (*lease)->holder &&
                static_cast<int>(i) != other_than) {
              found = static_cast<int>(i);
              return true;
            }
          }
          return false;
        },
        absl::Seconds(30));
    return found;
  }
  // Executes `command` on the leader, retrying (same command id) until
  // acknowledged: its result.
  std::optional<v1::CommandResult> Acknowledged(const v1::Command& command,
                                                absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      const int leader = Leader();
      if (leader >= 0) {
        v1::CommandResult result;
        if (AwaitReplica(daemons_[leader]->channel(), kReplicaConnectWait) &&
            daemons_[leader]->Execute(command, &result).ok()) {
          return result;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }
  // Every daemon's stderr, headed by its address: what a failed
  // assertion prints.
  std::string AllSaid() const {
    std::string all;
    for (const auto& daemon : daemons_) {
      absl::StrAppend(&all, "---- ", daemon->address(), "\n", daemon->Said());
    }
    return all;
  }
  // A daemon's database, read-only. A deposed daemon re-executes itself
  // without writing its window behind (as a crash would), so the open folds
  // what the window held.
  static absl::StatusOr<std::unique_ptr<EventLog>> OpenStopped(
      const Daemon& daemon) {
    EventLogOptions options;
    options.read_only = true;
    options.derive_projections = DeriveProjections;
    return EventLog::Open(daemon.db(), options);
  }
  // Stops every daemon and reads each one's log.
  std::vector<std::vector<std::string>> StopAndReadLogs() {
    std::vector<std::vector<std::string>> logs;
    for (auto& daemon : daemons_) daemon->Stop();
    for (auto& daemon : daemons_) {
      absl::StatusOr<std::unique_ptr<EventLog>> log = OpenStopped(*daemon);
      EXPECT_TRUE(log.ok()) << log.status();
      logs.push_back(log.ok() ? StoredLog(**log) : std::vector<std::string>());
      if (log.ok()) ExpectAuditPasses(**log, daemon->address());
    }
    return logs;
  }
  void ExpectOutcomes(const std::map<std::string, uint64_t>& acknowledged) {
    for (auto& daemon : daemons_) {
      absl::StatusOr<std::unique_ptr<EventLog>> log = OpenStopped(*daemon);
      ASSERT_TRUE(log.ok()) << log.status();
      for (const auto& [id, position] : acknowledged) {
        absl::StatusOr<std::optional<StoredOutcome>> outcome =
            (*log)->GetOutcome(id);
        ASSERT_TRUE(outcome.ok() && outcome->has_value())
            << daemon->address() << " lost acknowledged command " << id;
        EXPECT_EQ((*outcome)->result().first_position(), position) << id;
      }
    }
  }

  TempDir dir_;
  std::unique_ptr<NatsCluster> nats_;
  std::unique_ptr<JetStream> js_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

TEST_F(ReplicaProcessTest, PausedOldLeaderIsFencedAcknowledgesNothingFollows) {
  StartAll(3);
  const int old_leader = Leader();
  ASSERT_GE(old_leader, 0);
  std::map<std::string, uint64_t> acknowledged;
  for (int i = 0; i < 10; ++i) {
    const std::string store = absl::StrCat("a", i);
    std::optional<v1::CommandResult> result =
        Acknowledged(OpenStore(store, store), absl::Seconds(20));
    ASSERT_TRUE(result.has_value());
    acknowledged[store] = result->first_position();
  }
  daemons_[old_leader]->Signal(SIGSTOP);
  const int new_leader = Leader(old_leader);
  ASSERT_GE(new_leader, 0) << "no replica took the lapsed lease";
  for (int i = 0; i < 10; ++i) {
    const std::string store = absl::StrCat("b", i);
    std::optional<v1::CommandResult> result =
        Acknowledged(OpenStore(store, store), absl::Seconds(20));
    ASSERT_TRUE(result.has_value());
    acknowledged[store] = result->first_position();
  }
  daemons_[old_leader]->Signal(SIGCONT);
  // Straight after it wakes: whatever it tries, it acknowledges nothing.
  v1::CommandResult result;
  grpc::Status answered =
      daemons_[old_leader]->Execute(OpenStore("stale", "stale"), &result);
  EXPECT_FALSE(answered.ok())
      << "a deposed leader acknowledged " << result.ShortDebugString();
  // It comes back as a follower and catches up.
  const uint64_t head = daemons_[new_leader]->HeadPosition();
  ASSERT_GT(head, 0u);
  EXPECT_TRUE(
      WaitFor([&] { return daemons_[old_leader]->HeadPosition() >= head; },
              absl::Seconds(30)))
      << "stdout of the old leader:\n"
      << daemons_[old_leader]->Out() << AllSaid();
  std::vector<std::vector<std::string>> logs = StopAndReadLogs();
  // It was deposed (by the fence or by its lost lease) and came back.
  const std::string said = daemons_[old_leader]->Said();
  EXPECT_NE(said.find("deposed"), std::string::npos) << said;
  std::cout << said;
  // No position holds two different envelopes anywhere.
  for (size_t r = 1; r < logs.size(); ++r) {
    const size_t common = std::min(logs[0].size(), logs[r].size());
    for (size_t p = 0; p < common; ++p) {
      ASSERT_EQ(logs[0][p], logs[r][p])
          << "replica " << r << " position " << p + 1;
    }
  }
  ExpectOutcomes(acknowledged);
}

// One storeledgerd --replicate on a one-server NATS cluster, listening.
class OneReplicaProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
    daemon_ = std::make_unique<Daemon>(nats_->urls_flag(), dir_.Sub("r"),
                                       dir_.Sub("r.log"));
    daemon_->Start();
    ASSERT_TRUE(WaitFor(
        [&] {
          return AwaitReplica(daemon_->channel(), absl::Milliseconds(100));
        },
        absl::Seconds(30)))
        << daemon_->Said();
  }

  TempDir dir_;
  std::unique_ptr<NatsCluster> nats_;
  std::unique_ptr<Daemon> daemon_;
};

// A client that calls a replica which died and came back connects as soon
// as the replica listens, not when gRPC's backup poller next runs (every
// 5 s: before AwaitReplica, 4-10 s after each restart here). Three
// restarts, each allowed 1 s, so lucky polls are unlikely to pass it.
TEST_F(OneReplicaProcessTest, AClientReachesARestartedReplicaAtOnce) {
  Daemon& daemon = *daemon_;
  for (int round = 0; round < 3; ++round) {
    daemon.KillHard();
    // Calls against the dead replica for a second: they fail.
    for (const absl::Time until = absl::Now() + absl::Seconds(1);
         absl::Now() < until;) {
      grpc::ClientContext context;
      v1::Digest digest;
      EXPECT_FALSE(
          daemon.stub().Digest(&context, v1::DigestRequest(), &digest).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    daemon.Start();
    // Listening: a new channel connects (one with its own subchannel: a
    // channel with the same target and arguments would share the old one's).
    grpc::ChannelArguments own_pool;
    own_pool.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    std::shared_ptr<grpc::Channel> fresh = grpc::CreateCustomChannel(
        daemon.address(), grpc::InsecureChannelCredentials(), own_pool);
    ASSERT_TRUE(
        WaitFor([&] { return AwaitReplica(*fresh, absl::Milliseconds(200)); },
                absl::Seconds(30)));
    const absl::Time listening = absl::Now();
    // The channel that saw it die connects too, at once.
    EXPECT_TRUE(AwaitReplica(daemon.channel(), absl::Seconds(1)))
        << "round " << round;
    std::cout << "round " << round << ": the old channel connected "
              << absl::FormatDuration(absl::Now() - listening)
              << " after a new one\n";
  }
}

// A deposed replica signals itself (SIGUSR1) to restart as a follower, and
// the stop signals end it gracefully, so only the thread in sigwait may take
// them: any other thread that left them unblocked would take them whenever
// that thread is not inside sigwait, and SIGUSR1's default action ends the
// process (seen after a SIGSTOP and SIGCONT: the deposed leader died
// instead of catching up). Linux shows each thread's mask in /proc.
TEST_F(OneReplicaProcessTest, OnlyTheWaitingThreadTakesTheStopSignals) {
  // Listening: it connected to NATS first, so libnats' threads run.
  const Daemon& daemon = *daemon_;
  uint64_t stop_bits = 0;
  for (int signal_number : {SIGTERM, SIGINT, SIGUSR1}) {
    stop_bits |= uint64_t{1} << (signal_number - 1);
  }
  const std::string tasks = absl::StrCat("/proc/", daemon.pid(), "/task");
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    if (task.path().filename() == std::to_string(daemon.pid())) continue;
    std::ifstream status(task.path() / "status");
    std::string line, name;
    uint64_t blocked = 0;
    bool found = false;
    while (std::getline(status, line)) {
      if (absl::StartsWith(line, "Name:")) {
        name = std::string(
            absl::StripAsciiWhitespace(absl::string_view(line).substr(5)));
      }
      if (absl::StartsWith(line, "SigBlk:")) {
        found = absl::SimpleHexAtoi(
            absl::StripAsciiWhitespace(absl::string_view(line).substr(7)),
            &blocked);
      }
    }
    if (!found) continue;  // the thread ended while we read
    ++threads;
    EXPECT_EQ(blocked & stop_bits, stop_bits)
        << "thread " << task.path().filename().string() << " (" << name
        << ") blocks " << absl::StrCat(absl::Hex(blocked))
        << ": a stop signal could end the process there";
  }
  EXPECT_GT(threads, 5) << "gRPC, RocksDB and libnats run threads";
}

TEST_F(ReplicaProcessTest, LeaderKilledUnderLoadLosesNothingAcknowledged) {
  StartAll(3);
  const uint64_t seed = testing::SeedFromEnvironment();
  std::cout << "seed " << seed << "\n";
  std::mt19937_64 random(seed);
  ASSERT_GE(Leader(), 0);
  std::mutex mu;
  std::map<std::string, uint64_t> acknowledged;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  // A failed assertion returns from here: the clients stop and are joined
  // first, so the failure is reported rather than ending in terminate().
  absl::Cleanup join_clients = [&] {
    stop = true;
    for (std::thread& client : clients) client.join();
  };
  constexpr int kClients = 4;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; !stop; ++i) {
        const std::string store = absl::StrCat("c", c, "-", i);
        std::optional<v1::CommandResult> result =
            Acknowledged(OpenStore(store, store), absl::Seconds(30));
        if (!result.has_value()) return;
        std::lock_guard<std::mutex> lock(mu);
        acknowledged[store] = result->first_position();
      }
    });
  }
  // Kill whoever leads, at a random moment, many times
  // (STORELEDGER_FAILOVER_KILLS, default 5); the killed one comes back as a
  // follower before the next round.
  int kills = 5;
  if (const char* env = std::getenv("STORELEDGER_FAILOVER_KILLS")) {
    ASSERT_TRUE(absl::SimpleAtoi(env, &kills) && kills > 0)
        << "STORELEDGER_FAILOVER_KILLS=" << env;
  }
  for (int round = 0; round < kills; ++round) {
    std::this_thread::sleep_for(
        std::chrono::milliseconds(300 + static_cast<int>(random() % 1000)));
    const int leader = Leader();
    ASSERT_GE(leader, 0);
    size_t before_kill;
    {
      std::lock_guard<std::mutex> lock(mu);
      before_kill = acknowledged.size();
    }
    const absl::Time killed_at = absl::Now();
    daemons_[leader]->KillHard();
    ASSERT_GE(Leader(leader), 0) << "round " << round;
    // Load goes on against the new leader: the first acknowledgements
    // after the kill come within the bound.
    ASSERT_TRUE(WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return acknowledged.size() > before_kill + kClients;
        },
        absl::Seconds(15)))
        << "round " << round << "\n"
        << AllSaid();
    std::cout << "failover " << round << ": acknowledgements again after "
              << absl::FormatDuration(absl::Now() - killed_at) << "\n";
    daemons_[leader]->Start();
  }
  std::move(join_clients).Invoke();
  // Every replica catches up with the leader.
  const int leader = Leader();
  ASSERT_GE(leader, 0);
  const uint64_t head = daemons_[leader]->HeadPosition();
  for (auto& daemon : daemons_) {
    EXPECT_TRUE(WaitFor([&] { return daemon->HeadPosition() >= head; },
                        absl::Seconds(30)))
        << daemon->address();
  }
  std::vector<std::vector<std::string>> logs = StopAndReadLogs();
  for (size_t r = 1; r < logs.size(); ++r) {
    EXPECT_EQ(logs[r].size(), logs[0].size()) << "replica " << r;
    const size_t common = std::min(logs[0].size(), logs[r].size());
    for (size_t p = 0; p < common; ++p) {
      ASSERT_EQ(logs[0][p], logs[r][p])
          << "replica " << r << " position " << p + 1;
    }
  }
  ExpectOutcomes(acknowledged);
}

// ---- The diverged tail (docs/cluster.md "Diverged tail").

// Waits until `address` holds partition 0's lease (one NATS server).
bool WaitForLease(JetStream& js, const std::string& address) {
  return WaitFor(
      [&] {
        absl::StatusOr<std::optional<LeaseEntry>> lease =
            js.GetLease(LeaseKey(0));
        // The bucket may not be bound (or made) yet.
        if (!lease.ok())
          js.EnsureLeaseBucket(kLeaseTtlDefault, 1).IgnoreError();
        return lease.ok() && lease->has_value() && (*lease)->holder == address;
      },
      absl::Seconds(30));
}

TEST(ReplicationTest, LocallyExtendedLogIsMovedAsideAndTheReplicaFollows) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  constexpr uint32_t kPartition = 6;
  // A leads and publishes three commands.
  {
    std::unique_ptr<Node> a =
        Node::Start((*nats)->urls(), dir.Sub("a"), "a", kPartition, false);
    ASSERT_NE(a, nullptr);
    ASSERT_TRUE(WaitFor([&] { return a->Leads(); }, kConvergeTimeout));
    for (int i = 0; i < 3; ++i) {
      const std::string store = absl::StrCat("s", i);
      ASSERT_TRUE(a->ledger->Execute(OpenStore(store, store)).ok());
    }
  }
  const uint64_t published_head = [&] {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir.Sub("a"));
    EXPECT_TRUE(ledger.ok());
    return ledger.ok() ? (*ledger)->log().head().position : 0;
  }();
  // Its log is then extended beside the stream: positions no one published.
  std::vector<std::string> tail_commands = {"t0", "t0-p1", "t0-p2"};
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir.Sub("a"));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ASSERT_TRUE((*ledger)->Execute(OpenStore("t0", "t0")).ok());
    ASSERT_TRUE((*ledger)->Execute(AddProduct("t0-p1", "t0", "p1")).ok());
    ASSERT_TRUE((*ledger)->Execute(AddProduct("t0-p2", "t0", "p2")).ok());
  }
  absl::StatusOr<std::unique_ptr<EventLog>> a_log =
      EventLog::Open(dir.Sub("a"));
  ASSERT_TRUE(a_log.ok());
  const Head local_head = (*a_log)->head();
  a_log->reset();
  ASSERT_GT(local_head.position, published_head);
  // B takes the lapsed lease and extends the stream at those positions
  // with other envelopes.
  std::unique_ptr<Node> b =
      Node::Start((*nats)->urls(), dir.Sub("b"), "b", kPartition, false);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(WaitFor([&] { return b->Leads(); }, kConvergeTimeout));
  ASSERT_EQ(b->head(), published_head);
  ASSERT_TRUE(b->ledger->Execute(OpenStore("u0", "u0")).ok());
  ASSERT_TRUE(b->ledger->Execute(OpenStore("u1", "u1")).ok());

  // A comes back: its tail is moved aside, and it follows the stream.
  std::unique_ptr<Node> a =
      Node::Start((*nats)->urls(), dir.Sub("a"), "a", kPartition, true);
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->diverged.has_value());
  EXPECT_EQ(a->diverged->first_position(), published_head + 1);
  EXPECT_EQ(a->diverged->last_position(), local_head.position);
  EXPECT_EQ(a->diverged->last_hash(), ToHex(local_head.hash));
  EXPECT_EQ(a->diverged->outcomes(), tail_commands.size());
  EXPECT_NE(a->diverged->reason().find("never published"), std::string::npos)
      << a->diverged->reason();
  ASSERT_TRUE(WaitFor([&] { return a->head() == b->head(); }, kConvergeTimeout))
      << "a at " << a->head() << ", b at " << b->head();
  EXPECT_EQ(StoredLog(a->ledger->log()), StoredLog(b->ledger->log()));
  // Never served: its stores, commands and projections are gone from the
  // log; the stream's are there.
  EXPECT_TRUE(absl::IsNotFound(a->ledger->State("t0").status()));
  for (const std::string& id : tail_commands) {
    absl::StatusOr<std::optional<StoredOutcome>> outcome =
        a->ledger->log().GetOutcome(id);
    ASSERT_TRUE(outcome.ok());
    EXPECT_FALSE(outcome->has_value()) << id;
  }
  EXPECT_TRUE(a->ledger->State("u1").ok());
  // The audit passes and reports the record, whole.
  absl::StatusOr<v1::AuditReport> report = Audit(a->ledger->log());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << report->ShortDebugString();
  ASSERT_EQ(report->diverged_size(), 1);
  EXPECT_EQ(report->diverged(0).SerializeAsString(),
            a->diverged->SerializeAsString());
  ExpectAuditPasses(b->ledger->log(), "b");
  // A second start finds nothing more to move.
  a.reset();
  a = Node::Start((*nats)->urls(), dir.Sub("a"), "a", kPartition, true);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->diverged.has_value());
}

// One NATS server, and a connection to it, for tests of storeledgerd
// processes.
class OneServerProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsCluster>> started =
        NatsCluster::Start(1);
    ASSERT_TRUE(started.ok()) << started.status();
    nats = *std::move(started);
    absl::StatusOr<std::unique_ptr<JetStream>> connected =
        JetStream::Connect(nats->urls());
    ASSERT_TRUE(connected.ok()) << connected.status();
    js = *std::move(connected);
  }
  std::unique_ptr<NatsCluster> nats;
  std::unique_ptr<JetStream> js;
  TempDir dir;
};

TEST_F(OneServerProcessTest,
       AckLocalLeaderKilledWithUnpublishedGroupsMovesThemAside) {
  Daemon a(nats->urls_flag(), dir.Sub("a"), dir.Sub("a.log"));
  a.extra_args = {"--ack", "local"};
  a.EnableHttp();
  a.Start();
  ASSERT_TRUE(WaitForLease(*js, a.address()));
  uint64_t published = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string store = absl::StrCat("s", i);
    v1::CommandResult result;
    ASSERT_TRUE(a.Execute(OpenStore(store, store), &result).ok());
    published = result.last_position();
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        return a.Metric("storeledger_replication_unpublished_events") == 0 &&
               a.Metric("storeledger_replication_stream_sequence") == 3;
      },
      kConvergeTimeout));
  EXPECT_EQ(a.Metric(R"(storeledger_replication_role{role="leader"})"), 1);
  // NATS goes away: --ack local still answers, and the lag shows.
  nats->Kill(0);
  uint64_t answered = published;
  for (int i = 0; i < 3; ++i) {
    const std::string store = absl::StrCat("local-", i);
    v1::CommandResult result;
    ASSERT_TRUE(a.Execute(OpenStore(store, store), &result).ok());
    answered = result.last_position();
  }
  EXPECT_EQ(a.Metric("storeledger_replication_unpublished_events"),
            static_cast<double>(answered - published));
  // Killed with those groups unpublished; NATS comes back.
  a.KillHard();
  ASSERT_TRUE(nats->Restart(0).ok());
  ASSERT_TRUE(
      WaitFor([&] { return js->LastSequence(0).ok(); }, kConvergeTimeout));
  // Restarted, it moves them aside, follows the stream, and leads again.
  a.Start();
  v1::CommandResult next;
  ASSERT_TRUE(WaitFor(
      [&] { return a.Execute(OpenStore("after", "after"), &next).ok(); },
      absl::Seconds(30)));
  EXPECT_EQ(next.first_position(), published + 1);
  EXPECT_EQ(a.Metric("storeledger_replication_diverged_records"), 1);
  grpc::ClientContext context;
  v1::AuditReport report;
  ASSERT_TRUE(a.stub().Audit(&context, v1::AuditRequest(), &report).ok());
  EXPECT_TRUE(report.ok()) << report.ShortDebugString();
  ASSERT_EQ(report.diverged_size(), 1);
  EXPECT_EQ(report.diverged(0).first_position(), published + 1);
  EXPECT_EQ(report.diverged(0).last_position(), answered);
  EXPECT_EQ(report.diverged(0).outcomes(), 3u);
  // The CLI's audit through the server names it too.
  testing::CliRun cli =
      testing::RunStoreledger({"--server", a.address(), "audit"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_NE(cli.err.find(absl::StrCat("diverged record 1: positions ",
                                      published + 1, "..", answered)),
            std::string::npos)
      << cli.err;
}

// ---- Reads with "at least position P" (docs/cluster.md).

TEST_F(OneServerProcessTest,
       FollowerReadsAtLeastAPositionOrAnswersUnavailable) {
  Daemon leader(nats->urls_flag(), dir.Sub("l"), dir.Sub("l.log"));
  leader.EnableHttp();
  leader.Start();
  ASSERT_TRUE(WaitForLease(*js, leader.address()));
  Daemon follower(nats->urls_flag(), dir.Sub("f"), dir.Sub("f.log"));
  follower.extra_args = {"--follow-only"};
  follower.EnableHttp();
  follower.Start();
  ASSERT_TRUE(WaitFor(
      [&] {
        return follower.Metric(
                   R"(storeledger_replication_role{role="follower"})") == 1;
      },
      kConvergeTimeout));

  // Read-your-writes: each write, read at once from the follower with the
  // position it was acknowledged at, is there.
  uint64_t position = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string store = absl::StrCat("s", i);
    v1::CommandResult result;
    ASSERT_TRUE(leader.Execute(OpenStore(store, store), &result).ok());
    position = result.last_position();
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::GetStoreRequest request;
    request.set_store_id(store);
    request.set_min_position(position);
    v1::StoreState state;
    grpc::Status read = follower.stub().GetStore(&context, request, &state);
    ASSERT_TRUE(read.ok()) << read.error_message();
    EXPECT_EQ(state.store_id(), store);
  }
  // A position no replica has: bounded wait, then UNAVAILABLE naming the
  // follower's position.
  const uint64_t beyond = position + 1000;
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    v1::DigestRequest request;
    request.set_min_position(beyond);
    v1::Digest digest;
    const absl::Time asked = absl::Now();
    grpc::Status read = follower.stub().Digest(&context, request, &digest);
    const absl::Duration waited = absl::Now() - asked;
    EXPECT_EQ(read.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_NE(read.error_message().find(absl::StrCat("at position ", position)),
              std::string::npos)
        << read.error_message();
    EXPECT_GE(waited, kMinPositionWaitMax - absl::Milliseconds(50));
    EXPECT_LT(waited, kMinPositionWaitMax + absl::Seconds(3));
  }
  {
    grpc::ClientContext context;
    v1::SubscribeRequest request;
    request.set_catch_up_only(true);
    request.set_min_position(beyond);
    std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader =
        follower.stub().Subscribe(&context, request);
    v1::Envelope envelope;
    EXPECT_FALSE(reader->Read(&envelope));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  {
    grpc::ClientContext context;
    v1::AuditRequest request;
    request.set_min_position(position);
    v1::AuditReport report;
    ASSERT_TRUE(follower.stub().Audit(&context, request, &report).ok());
    EXPECT_TRUE(report.ok());
    EXPECT_GE(report.head_position(), position);
  }
  // The CLI's --at-least.
  testing::CliRun state = testing::RunStoreledger(
      {"--server", follower.address(), "state", "--store", "s4", "--at-least",
       absl::StrCat(position)});
  EXPECT_EQ(state.exit_code, 0) << state.err;
  EXPECT_NE(state.out.find("\"s4\""), std::string::npos) << state.out;
  testing::CliRun history = testing::RunStoreledger(
      {"--server", follower.address(), "history", "--store", "s4", "--at-least",
       absl::StrCat(beyond)});
  EXPECT_EQ(history.exit_code, 1);
  EXPECT_NE(history.err.find("UNAVAILABLE"), std::string::npos) << history.err;
  EXPECT_NE(history.err.find(absl::StrCat("min_position ", beyond)),
            std::string::npos)
      << history.err;
  // The metrics say who leads and how far each is.
  EXPECT_EQ(leader.Metric(R"(storeledger_replication_role{role="leader"})"), 1);
  EXPECT_EQ(follower.Metric(R"(storeledger_replication_role{role="leader"})"),
            0);
  EXPECT_TRUE(WaitFor(
      [&] {
        return follower.Metric("storeledger_replication_stream_sequence") ==
                   5 &&
               follower.Metric("storeledger_replication_lag_messages") == 0;
      },
      kConvergeTimeout));
  EXPECT_EQ(follower.Metric("storeledger_replication_data_loss"), 0);
}

}  // namespace
}  // namespace storeledger
