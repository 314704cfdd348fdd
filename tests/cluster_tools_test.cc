// The cluster's tools (docs/cluster.md): the
// exactly-once consumer killed over and over while a leader writes, the
// migration of a single-node ledger into a partition stream, and backups
// (embedded, and the Backup RPC of a running storeledgerd) that audit clean
// and seed a follower. Real nats-server processes on loopback
// (tests/support/nats_cluster.h), real RocksDB, real SQLite.
#include <nats/nats.h>
#include <signal.h>
#include <sqlite3.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "cli/simulate.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replication/jetstream.h"
#include "replication/replica.h"
#include "storage/backup.h"
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

constexpr absl::Duration kCatchUpTimeout = absl::Seconds(30);

// A ledger in this process and its replica of `partition`.
struct Member {
  std::unique_ptr<Replica> replica;
  std::unique_ptr<Ledger> ledger;
  ~Member() { replica.reset(); }  // stops before the ledger closes
  uint64_t head() const { return ledger->log().head().position; }
  bool leads() const { return replica->status().role == ReplicaRole::kLeader; }
};

std::unique_ptr<Member> StartMember(const NatsCluster& nats,
                                    const std::string& dir,
                                    const std::string& name, uint32_t partition,
                                    bool follow_only) {
  ReplicaOptions options;
  options.nats_urls = nats.urls();
  options.partition = partition;
  options.name = name;
  options.follow_only = follow_only;
  auto member = std::make_unique<Member>();
  // A fresh server elects its JetStream leader a moment after it listens.
  absl::StatusOr<std::unique_ptr<Replica>> replica;
  EXPECT_TRUE(
      WaitFor([&] { return (replica = Replica::Connect(options)).ok(); },
              kCatchUpTimeout))
      << replica.status();
  if (!replica.ok()) return nullptr;
  member->replica = *std::move(replica);
  LedgerOptions ledger_options;
  ledger_options.before_write = member->replica->BeforeWrite();
  absl::StatusOr<std::unique_ptr<Ledger>> ledger =
      Ledger::Open(dir, ledger_options);
  EXPECT_TRUE(ledger.ok()) << ledger.status();
  if (!ledger.ok()) return nullptr;
  member->ledger = *std::move(ledger);
  const absl::Status started = member->replica->Start(member->ledger.get());
  EXPECT_TRUE(started.ok()) << started;
  if (!started.ok()) return nullptr;
  return member;
}

void ExecuteAll(Ledger& ledger, const std::vector<v1::Command>& commands,
                size_t from, size_t to) {
  constexpr size_t kBatch = 200;
  for (size_t i = from; i < to; i += kBatch) {
    std::vector<v1::Command> batch(commands.begin() + i,
                                   commands.begin() + std::min(to, i + kBatch));
    for (const auto& result : ledger.ExecuteBatch(batch)) {
      ASSERT_TRUE(result.ok()) << result.status();
    }
  }
}

void ExpectAuditPasses(const EventLog& log, absl::string_view what) {
  absl::StatusOr<v1::AuditReport> report = Audit(log);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << what << ": " << report->ShortDebugString();
}

// A file's text, for failure messages.
std::string FileText(const std::string& path) {
  std::ifstream file(path);
  return std::string(std::istreambuf_iterator<char>(file),
                     std::istreambuf_iterator<char>());
}

// The consumer's tables, read back as a BalancesReport's stores and totals.
struct SqlTables {
  std::map<std::string, v1::StoreBalances> stores;
  std::map<std::string, v1::KindTotals> kinds;
  uint64_t stream_sequence = 0;
  uint64_t position = 0;
};

v1::Balances BalancesAt(sqlite3_stmt* row, int first) {
  v1::Balances b;
  b.set_pending_fen(sqlite3_column_int64(row, first));
  b.set_available_fen(sqlite3_column_int64(row, first + 1));
  b.set_withdrawing_fen(sqlite3_column_int64(row, first + 2));
  b.set_paid_out_fen(sqlite3_column_int64(row, first + 3));
  b.set_deposit_fen(sqlite3_column_int64(row, first + 4));
  return b;
}

SqlTables ReadTables(const std::string& path) {
  SqlTables tables;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  auto each = [&](const char* sql,
                  const std::function<void(sqlite3_stmt*)>& fn) {
    sqlite3_stmt* statement = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &statement, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    while (sqlite3_step(statement) == SQLITE_ROW) fn(statement);
    sqlite3_finalize(statement);
  };
  auto text = [](sqlite3_stmt* row, int column) {
    return std::string(
        reinterpret_cast<const char*>(sqlite3_column_text(row, column)));
  };
  each(
      "SELECT store_id, kind, status, upgraded_from, upgraded_to, "
      "pending_fen, available_fen, withdrawing_fen, paid_out_fen, "
      "deposit_fen FROM store_balances",
      [&](sqlite3_stmt* row) {
        v1::StoreBalances& store = tables.stores[text(row, 0)];
        store.set_store_id(text(row, 0));
        v1::StoreKind kind = v1::StoreKind();
        v1::StoreStatus status = v1::StoreStatus();
        EXPECT_TRUE(v1::StoreKind_Parse(text(row, 1), &kind));
        EXPECT_TRUE(v1::StoreStatus_Parse(text(row, 2), &status));
        store.set_kind(kind);
        store.set_status(status);
        store.set_upgraded_from(text(row, 3));
        store.set_upgraded_to(text(row, 4));
        *store.mutable_balances() = BalancesAt(row, 5);
      });
  each(
      "SELECT kind, stores, pending_fen, available_fen, withdrawing_fen, "
      "paid_out_fen, deposit_fen FROM kind_balances",
      [&](sqlite3_stmt* row) {
        v1::KindTotals& totals = tables.kinds[text(row, 0)];
        totals.set_stores(sqlite3_column_int64(row, 1));
        *totals.mutable_balances() = BalancesAt(row, 2);
      });
  each("SELECT stream_sequence, position FROM feed_position",
       [&](sqlite3_stmt* row) {
         tables.stream_sequence = sqlite3_column_int64(row, 0);
         tables.position = sqlite3_column_int64(row, 1);
       });
  sqlite3_close(db);
  return tables;
}

TEST(ClusterVerbsTest, HelpDescribesEveryFlagAndUsageErrorsSayWhat) {
  for (const char* verb : {"consume", "publish", "backup"}) {
    testing::CliRun help = testing::RunStoreledger({verb, "--help"});
    EXPECT_EQ(help.exit_code, 0) << verb;
    for (const std::string& flag : DocumentedFlags(verb)) {
      EXPECT_NE(help.out.find("--" + flag), std::string::npos) << verb << flag;
    }
  }
  testing::CliRun no_durable = testing::RunStoreledger(
      {"consume", "--nats", "nats://127.0.0.1:1", "--sqlite", "x.sqlite"});
  EXPECT_EQ(no_durable.exit_code, 2);
  EXPECT_NE(no_durable.err.find("--durable"), std::string::npos)
      << no_durable.err;
  testing::CliRun no_nats = testing::RunStoreledger({"publish"});
  EXPECT_EQ(no_nats.exit_code, 2);
  EXPECT_NE(no_nats.err.find("--nats"), std::string::npos) << no_nats.err;
  testing::CliRun no_to = testing::RunStoreledger({"backup"});
  EXPECT_EQ(no_to.exit_code, 2);
  EXPECT_NE(no_to.err.find("--to DIR"), std::string::npos) << no_to.err;
}

TEST(ConsumerTest, KilledRepeatedlyMidStreamCountsEveryMessageOnce) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  const uint64_t seed = testing::SeedFromEnvironment();
  std::cout << "seed " << seed << " (STORELEDGER_SEED=" << seed
            << " re-runs it)\n";
  std::mt19937_64 random(seed);
  TempDir dir;
  std::unique_ptr<Member> leader =
      StartMember(**nats, dir.Sub("leader"), "leader", 0, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->leads(); }, kCatchUpTimeout));

  // A realistic stream with money moving (payments, settlements, refunds,
  // withdrawals, deposits), written in small groups while the consumer runs.
  const std::vector<v1::Command> commands = PlanWrittenAhead(40, seed);
  std::atomic<bool> written{false};
  std::thread writer([&] {
    constexpr size_t kSlice = 20;
    for (size_t i = 0; i < commands.size(); i += kSlice) {
      ExecuteAll(*leader->ledger, commands, i,
                 std::min(commands.size(), i + kSlice));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    written = true;
  });

  const std::string sqlite_path = dir.Sub("feed.sqlite");
  auto consumer_argv = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        STORELEDGER_BIN,      "consume",     "--nats",
        (*nats)->urls_flag(), "--partition", "0",
        "--durable",          "balances",    "--sqlite",
        sqlite_path,          "--batch",     absl::StrCat(1 + random() % 16),
        "--ack-wait-ms",      "1000"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  };
  // Killed with SIGKILL at random moments, over and over, mid-stream.
  constexpr int kKills = 12;
  int kills = 0;
  for (; kills < kKills; ++kills) {
    testing::ChildOptions options;
    options.argv = consumer_argv({});
    options.stderr_path = dir.Sub("consumer.log");
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> consumer =
        testing::ChildProcess::Start(options);
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + random() % 400));
    (*consumer)->Kill(SIGKILL);
    (*consumer)->Wait();
  }
  writer.join();
  ASSERT_TRUE(written);
  const Head head = leader->ledger->log().head();

  // The last run drains the stream and stops when idle.
  testing::ChildOptions options;
  options.argv = consumer_argv({"--idle-exit-ms", "3000"});
  options.stderr_path = dir.Sub("consumer.log");
  absl::StatusOr<std::unique_ptr<testing::ChildProcess>> last =
      testing::ChildProcess::Start(options);
  ASSERT_TRUE(last.ok()) << last.status();
  const int status = (*last)->Wait();
  ASSERT_EQ(status, 0) << testing::DescribeWaitStatus(status) << " "
                       << FileText(dir.Sub("consumer.log"));
  std::cout << "after " << kills << " kills, the last run: " << (*last)->out();

  const SqlTables tables = ReadTables(sqlite_path);
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  absl::StatusOr<uint64_t> last_sequence = (*js)->LastSequence(0);
  ASSERT_TRUE(last_sequence.ok());
  EXPECT_EQ(tables.stream_sequence, *last_sequence);
  EXPECT_EQ(tables.position, head.position);

  // Equal to the ledger's own balances, store by store and kind by kind:
  // a message counted twice (or lost) would show here.
  absl::StatusOr<v1::BalancesReport> report =
      BalancesFromPostings(leader->ledger->log(), AsOf());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(tables.stores.size(), static_cast<size_t>(report->stores_size()));
  int64_t moved_fen = 0;
  for (const v1::StoreBalances& store : report->stores()) {
    auto it = tables.stores.find(store.store_id());
    ASSERT_NE(it, tables.stores.end()) << store.store_id();
    EXPECT_EQ(it->second.ShortDebugString(), store.ShortDebugString());
    moved_fen +=
        store.balances().paid_out_fen() + store.balances().available_fen();
  }
  EXPECT_GT(moved_fen, 0) << "the stream moved no money: the test is blind";
  for (const v1::KindTotals& totals : report->totals()) {
    const std::string kind = v1::StoreKind_Name(totals.kind());
    auto it = tables.kinds.find(kind);
    if (totals.stores() == 0) {
      EXPECT_TRUE(it == tables.kinds.end() || it->second.stores() == 0) << kind;
      continue;
    }
    ASSERT_NE(it, tables.kinds.end()) << kind;
    EXPECT_EQ(it->second.stores(), totals.stores()) << kind;
    EXPECT_EQ(it->second.balances().ShortDebugString(),
              totals.balances().ShortDebugString())
        << kind;
  }
}

TEST(ConsumerTest, TamperedMessageStopsTheFeedWithDataLossNamingThePosition) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  std::unique_ptr<Member> leader =
      StartMember(**nats, dir.Sub("leader"), "leader", 3, false);
  ASSERT_NE(leader, nullptr);
  ASSERT_TRUE(WaitFor([&] { return leader->leads(); }, kCatchUpTimeout));
  const std::vector<v1::Command> commands = PlanWrittenAhead(2, 1);
  for (size_t i = 0; i < 4; ++i) {  // a message each
    ASSERT_TRUE(leader->ledger->Execute(commands[i]).ok());
  }
  // The same four messages in partition 4's stream, the third one's first
  // envelope with one byte flipped.
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  ASSERT_TRUE((*js)->EnsureStream(4, 1).ok());
  uint64_t tampered_position = 0;
  for (uint64_t sequence = 1; sequence <= 4; ++sequence) {
    absl::StatusOr<std::optional<std::string>> data = (*js)->Get(3, sequence);
    ASSERT_TRUE(data.ok() && data->has_value());
    v1::LogBatch batch;
    ASSERT_TRUE(batch.ParseFromString(**data));
    batch.set_partition(4);
    if (sequence == 3) {
      std::string* raw = batch.mutable_envelopes(0);
      (*raw)[raw->size() / 2] ^= 0x01;
      tampered_position = batch.first_position();
    }
    ASSERT_TRUE((*js)
                    ->Publish(4, batch.SerializeAsString(),
                              absl::StrCat("t", sequence), sequence - 1)
                    .ok());
  }
  const std::string sqlite_path = dir.Sub("feed.sqlite");
  testing::CliRun consumed = testing::RunStoreledger(
      {"consume", "--nats", (*nats)->urls_flag(), "--partition", "4",
       "--durable", "d", "--sqlite", sqlite_path, "--batch", "1",
       "--idle-exit-ms", "2000"});
  EXPECT_EQ(consumed.exit_code, 1);
  EXPECT_NE(consumed.err.find("DATA_LOSS"), std::string::npos) << consumed.err;
  EXPECT_NE(consumed.err.find(absl::StrCat("position ", tampered_position)),
            std::string::npos)
      << consumed.err;
  // What came before it is applied; nothing of it or after it.
  const SqlTables tables = ReadTables(sqlite_path);
  EXPECT_EQ(tables.stream_sequence, 2u);
  EXPECT_EQ(tables.position, tampered_position - 1);
}

TEST(PublishTest, PublishedLedgerIsFollowedToTheSameDigest) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  const std::string source = dir.Sub("single-node");
  const std::vector<v1::Command> commands = PlanWrittenAhead(20, 7);
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(source);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ExecuteAll(**ledger, commands, 0, commands.size());
  }
  testing::CliRun published =
      testing::RunStoreledger({"--db", source, "publish", "--nats",
                               (*nats)->urls_flag(), "--partition", "5"});
  ASSERT_EQ(published.exit_code, 0) << published.err;
  std::cout << published.out;

  // A second publish into the stream, now not empty, is refused by name.
  testing::CliRun again =
      testing::RunStoreledger({"--db", source, "publish", "--nats",
                               (*nats)->urls_flag(), "--partition", "5"});
  EXPECT_EQ(again.exit_code, 1);
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  absl::StatusOr<uint64_t> last = (*js)->LastSequence(5);
  ASSERT_TRUE(last.ok());
  EXPECT_NE(again.err.find(absl::StrCat("last sequence ", *last)),
            std::string::npos)
      << again.err;

  // A follower built from the stream alone holds the same bytes.
  std::unique_ptr<Member> follower =
      StartMember(**nats, dir.Sub("follower"), "follower", 5, true);
  ASSERT_NE(follower, nullptr);
  Head source_head;
  {
    EventLogOptions read_only;
    read_only.read_only = true;
    absl::StatusOr<std::unique_ptr<EventLog>> log =
        EventLog::Open(source, read_only);
    ASSERT_TRUE(log.ok());
    source_head = (*log)->head();
  }
  ASSERT_GT(source_head.position, commands.size() / 2);
  ASSERT_TRUE(WaitFor([&] { return follower->head() == source_head.position; },
                      kCatchUpTimeout))
      << "follower at " << follower->head() << " of " << source_head.position;
  EXPECT_EQ(follower->ledger->log().head().hash, source_head.hash);
  ExpectAuditPasses(follower->ledger->log(), "follower");

  // The migrated node itself joins as a replica: its head is the stream's
  // end, so it may lead, and what it writes next reaches the follower.
  std::unique_ptr<Member> migrated =
      StartMember(**nats, source, "migrated", 5, false);
  ASSERT_NE(migrated, nullptr);
  ASSERT_TRUE(WaitFor([&] { return migrated->leads(); }, kCatchUpTimeout));
  const std::vector<v1::Command> more = PlanWrittenAhead(3, 99);
  v1::Command next = more.front();
  next.set_command_id("after-migration");
  ASSERT_TRUE(migrated->ledger->Execute(next).ok());
  ASSERT_TRUE(WaitFor([&] { return follower->head() == migrated->head(); },
                      kCatchUpTimeout));
  EXPECT_EQ(follower->ledger->log().head().hash,
            migrated->ledger->log().head().hash);
}

TEST(RetentionTest, PartitionStreamKeepsEveryMessage) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok()) << js.status();
  natsConnection* connection = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&connection, (*nats)->url(0).c_str()),
            NATS_OK);
  jsCtx* context = nullptr;
  ASSERT_EQ(natsConnection_JetStream(&context, connection, nullptr), NATS_OK);
  // Ours: made without limits, and no message of it can be deleted.
  ASSERT_TRUE((*js)->EnsureStream(8, 1).ok());
  ASSERT_TRUE((*js)->Publish(8, "m", "m1", 0).ok());
  jsErrCode code = static_cast<jsErrCode>(0);
  EXPECT_NE(js_DeleteMsg(context, StreamName(8).c_str(), 1, nullptr, &code),
            NATS_OK);
  EXPECT_NE(js_PurgeStream(context, StreamName(8).c_str(), nullptr, &code),
            NATS_OK);
  absl::StatusOr<std::optional<std::string>> kept = (*js)->Get(8, 1);
  ASSERT_TRUE(kept.ok() && kept->has_value());
  // Someone else's, with an age limit: refused by name, nothing published.
  const std::string name = StreamName(9);
  const std::string subject = LogSubject(9);
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = name.c_str();
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.MaxAge = absl::ToInt64Nanoseconds(absl::Hours(24));
  ASSERT_EQ(js_AddStream(nullptr, context, &config, nullptr, &code), NATS_OK);
  const absl::Status refused = (*js)->EnsureStream(9, 1);
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_NE(refused.message().find("max_age"), std::string::npos) << refused;
  jsCtx_Destroy(context);
  natsConnection_Destroy(connection);
}

TEST(BackupTest, EmbeddedBackupDuringWritesAuditsClean) {
  TempDir dir;
  const std::vector<v1::Command> commands = PlanWrittenAhead(30, 3);
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(dir.Sub("db"));
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    std::thread writer(
        [&] { ExecuteAll(**ledger, commands, 0, commands.size()); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    absl::StatusOr<Head> copied = BackupTo((*ledger)->log(), dir.Sub("hot"));
    writer.join();
    ASSERT_TRUE(copied.ok()) << copied.status();
    EXPECT_GT(copied->position, 0u);
    // A name taken is refused, nothing overwritten.
    EXPECT_TRUE(absl::IsAlreadyExists(
        BackupTo((*ledger)->log(), dir.Sub("hot")).status()));
  }
  testing::CliRun audit_hot =
      testing::RunStoreledger({"--db", dir.Sub("hot"), "audit"});
  EXPECT_EQ(audit_hot.exit_code, 0) << audit_hot.out << audit_hot.err;
  // The verb, on a ledger at rest.
  testing::CliRun backup = testing::RunStoreledger(
      {"--db", dir.Sub("db"), "backup", "--to", dir.Sub("cold")});
  ASSERT_EQ(backup.exit_code, 0) << backup.err;
  testing::CliRun digest_db =
      testing::RunStoreledger({"--db", dir.Sub("db"), "digest"});
  testing::CliRun digest_cold =
      testing::RunStoreledger({"--db", dir.Sub("cold"), "digest"});
  EXPECT_EQ(digest_cold.out, digest_db.out);
  testing::CliRun audit_cold =
      testing::RunStoreledger({"--db", dir.Sub("cold"), "audit"});
  EXPECT_EQ(audit_cold.exit_code, 0) << audit_cold.out << audit_cold.err;
}

// A storeledgerd process with --backup-dir.
class Daemon {
 public:
  Daemon(const std::string& db, const std::string& backups,
         const std::string& log, std::vector<std::string> extra = {}) {
    absl::StatusOr<int> port = testing::FreeLoopbackPort();
    EXPECT_TRUE(port.ok());
    address_ = absl::StrCat("127.0.0.1:", *port);
    testing::ChildOptions options;
    options.argv = {STORELEDGERD_BIN, "--db",         db,     "--listen",
                    address_,         "--backup-dir", backups};
    options.argv.insert(options.argv.end(), extra.begin(), extra.end());
    options.stderr_path = log;
    absl::StatusOr<std::unique_ptr<testing::ChildProcess>> process =
        testing::ChildProcess::Start(options);
    EXPECT_TRUE(process.ok()) << process.status();
    if (process.ok()) process_ = *std::move(process);
    stub_ = v1::Ledger::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  ~Daemon() {
    if (process_ != nullptr) {
      process_->Kill(SIGTERM);
      process_->Wait();
    }
  }
  bool WaitReady() {
    return WaitFor(
        [&] {
          grpc::ClientContext context;
          v1::Digest digest;
          return stub_->Digest(&context, v1::DigestRequest(), &digest).ok();
        },
        kCatchUpTimeout);
  }
  v1::Ledger::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }

 private:
  std::string address_;
  std::unique_ptr<testing::ChildProcess> process_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
};

TEST(BackupTest, BackupRpcDuringWritesAuditsCleanAndSeedsAFollower) {
  absl::StatusOr<std::unique_ptr<NatsCluster>> nats = NatsCluster::Start(1);
  ASSERT_TRUE(nats.ok()) << nats.status();
  TempDir dir;
  Daemon leader(dir.Sub("leader"), dir.path(), dir.Sub("leader.log"),
                {"--replicate", (*nats)->urls_flag(), "--partition", "6"});
  ASSERT_TRUE(leader.WaitReady()) << FileText(dir.Sub("leader.log"));
  const std::vector<v1::Command> commands = PlanWrittenAhead(10, 5);
  // Writes through gRPC, acknowledged once the stream has them.
  std::atomic<size_t> acknowledged{0};
  auto write = [&](size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) {
      for (int attempt = 0;; ++attempt) {
        grpc::ClientContext context;
        v1::CommandResult result;
        if (leader.stub().Execute(&context, commands[i], &result).ok()) break;
        ASSERT_LT(attempt, 200) << "command " << i << " never acknowledged";
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      ++acknowledged;
    }
  };
  const size_t half = commands.size() / 2;
  std::thread writer([&] { write(0, half); });
  ASSERT_TRUE(
      WaitFor([&] { return acknowledged > half / 2; }, kCatchUpTimeout));
  // Names that are not one plain path component are refused.
  for (const std::string bad : {"../escape", "", "a/b", ".."}) {
    grpc::ClientContext context;
    v1::BackupRequest request;
    request.set_name(bad);
    v1::BackupResult result;
    EXPECT_EQ(leader.stub().Backup(&context, request, &result).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << bad;
  }
  grpc::ClientContext context;
  v1::BackupRequest request;
  request.set_name("seed");
  v1::BackupResult backup;
  const grpc::Status backed_up =
      leader.stub().Backup(&context, request, &backup);
  writer.join();
  ASSERT_TRUE(backed_up.ok()) << backed_up.error_message();
  EXPECT_EQ(backup.path(), dir.Sub("seed"));
  EXPECT_GT(backup.head().position(), 0u);
  std::thread writer2([&] { write(half, commands.size()); });
  writer2.join();

  // The copy audits clean.
  testing::CliRun audit =
      testing::RunStoreledger({"--db", backup.path(), "audit"});
  EXPECT_EQ(audit.exit_code, 0) << audit.out << audit.err;
  // The CLI asks for one too, and a name taken is refused.
  testing::CliRun remote = testing::RunStoreledger(
      {"--server", leader.address(), "backup", "--name", "by-cli"});
  EXPECT_EQ(remote.exit_code, 0) << remote.err;
  EXPECT_NE(remote.out.find(dir.Sub("by-cli")), std::string::npos)
      << remote.out;
  testing::CliRun taken = testing::RunStoreledger(
      {"--server", leader.address(), "backup", "--name", "by-cli"});
  EXPECT_EQ(taken.exit_code, 1);
  EXPECT_NE(taken.err.find("ALREADY_EXISTS"), std::string::npos) << taken.err;

  // A follower started on the copy finds its head in the stream and
  // replays only what follows it.
  absl::StatusOr<std::unique_ptr<JetStream>> js =
      JetStream::Connect((*nats)->urls());
  ASSERT_TRUE(js.ok());
  uint64_t backup_sequence = 0;  // the message ending at the copy's head
  for (uint64_t sequence = 1;; ++sequence) {
    absl::StatusOr<std::optional<std::string>> data = (*js)->Get(6, sequence);
    ASSERT_TRUE(data.ok() && data->has_value()) << sequence;
    v1::LogBatch batch;
    ASSERT_TRUE(batch.ParseFromString(**data));
    if (batch.first_position() + batch.envelopes_size() - 1 ==
        backup.head().position()) {
      backup_sequence = sequence;
      break;
    }
  }
  std::unique_ptr<Member> follower =
      StartMember(**nats, backup.path(), "seeded", 6, true);
  ASSERT_NE(follower, nullptr);
  EXPECT_GE(follower->replica->status().stream_sequence, backup_sequence)
      << "the seeded follower replayed the stream from before its copy";
  grpc::ClientContext digest_context;
  v1::Digest leader_digest;
  ASSERT_TRUE(leader.stub()
                  .Digest(&digest_context, v1::DigestRequest(), &leader_digest)
                  .ok());
  ASSERT_TRUE(
      WaitFor([&] { return follower->head() == leader_digest.position(); },
              kCatchUpTimeout))
      << "follower at " << follower->head() << " of "
      << leader_digest.position();
  EXPECT_EQ(ToHex(follower->ledger->log().head().hash), leader_digest.hash());
  ExpectAuditPasses(follower->ledger->log(), "seeded follower");
}

}  // namespace
}  // namespace storeledger
