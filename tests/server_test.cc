// storeledgerd against a real RocksDB, on a loopback port chosen per test
// (port 0): the role matrix, start-up refusals, subscriptions (catch-up then
// live, cut-off and resume), a bounded load test where every acknowledgement
// is in the log, graceful shutdown under load, the CLI as a client, the
// daemon binary and SIGTERM, and the Node example client when node is there.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <future>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/ascii.h"
#include "core/limits.h"
#include "core/policy.h"
#include "ledger/json.h"
#include "replay/projection_store.h"
#include "replay/audit.h"
#include "rocksdb/db.h"
#include "server/server.h"
#include "storage/checkpoint.h"
#include "storage/merkle.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/fault_env.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::ChinaText;
using ::storeledger::testing::CommandFromJson;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

// 32 clients x 2,000 commands, as the issue asks (sync off). Lower the
// constant to shorten it on a slow machine.
constexpr int kLoadClients = 32;
constexpr int kLoadCommandsPerClient = 2000;
constexpr int kLoadProductsPerStore = 100;

constexpr char kWriter[] = "writer-token-0123456789";
constexpr char kAuditor[] = "auditor-token-0123456789";
constexpr char kInvestigator[] = "investigator-token-0123456789";
constexpr char kMerchant1[] = "merchant1-token-0123456789";
constexpr char kMerchant2[] = "merchant2-token-0123456789";
constexpr char kTokenFile[] = R"(# token role
writer-token-0123456789 writer
auditor-token-0123456789 auditor
investigator-token-0123456789 investigator
merchant1-token-0123456789 merchant:m1
merchant2-token-0123456789 merchant:m2
)";

v1::Command OpenStoreCommand(const std::string& id, const std::string& store,
                             const std::string& merchant) {
  return CommandFromJson(absl::StrCat(
      R"({"commandId":")", id, R"(","occurredAt":")", ChinaText(China(6, 1)),
      R"(","openStore":{"storeId":")", store, R"(","merchantId":")", merchant,
      R"(","kind":"MINI_STORE","subject":"ENTERPRISE"}})"));
}

v1::Command AddProductCommand(const std::string& id, const std::string& store,
                              const std::string& product) {
  return CommandFromJson(absl::StrCat(
      R"({"commandId":")", id, R"(","occurredAt":")", ChinaText(China(6, 2)),
      R"(","addProduct":{"storeId":")", store, R"(","productId":")", product,
      R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})"));
}

// The i-th command of a client filling store `store`: it opens the store
// (command id "<store>-open"), then adds products p1, p2, ... ("<store>-<i>").
v1::Command StoreFillCommand(const std::string& store, int i, int product) {
  return i == 0 ? OpenStoreCommand(absl::StrCat(store, "-open"), store, "m1")
                : AddProductCommand(absl::StrCat(store, "-", i), store,
                                    absl::StrCat("p", product));
}

class ServerTest : public ::testing::Test {
 protected:
  ServerOptions Options() {
    ServerOptions options;
    options.db_dir = dir_.Sub("db");
    options.listen = "127.0.0.1:0";
    absl::StatusOr<TokenTable> tokens = TokenTable::Parse(kTokenFile);
    EXPECT_TRUE(tokens.ok()) << tokens.status();
    options.tokens = *tokens;
    // Durability across a crash is the storage tests' business; these
    // check what the server acknowledges, so they skip the fsyncs.
    options.ledger.sync = false;
    return options;
  }
  void Start(ServerOptions options) {
    absl::StatusOr<std::unique_ptr<LedgerServer>> server =
        LedgerServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Ledger::NewStub(channel_);
  }
  void Start() { Start(Options()); }

  static void Authorize(grpc::ClientContext* context, const char* token) {
    if (token != nullptr) {
      context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
  }

  v1::CommandResult Execute(const v1::Command& command,
                            const char* token = kWriter) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::CommandResult result;
    grpc::Status status = stub_->Execute(&context, command, &result);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return result;
  }

  // Subscribes from `from` and collects positions until `until` (inclusive)
  // arrives, resuming after RESOURCE_EXHAUSTED as a client should.
  std::vector<uint64_t> Collect(uint64_t from, const std::atomic<uint64_t>& until,
                                int* cutoffs) {
    std::vector<uint64_t> positions;
    uint64_t last = from;
    while (true) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      v1::SubscribeRequest request;
      request.set_from_position(last);
      auto reader = stub_->Subscribe(&context, request);
      v1::Envelope envelope;
      bool done = false;
      while (reader->Read(&envelope)) {
        positions.push_back(envelope.position());
        last = envelope.position();
        if (until.load() != 0 && last >= until.load()) {
          done = true;
          context.TryCancel();
          break;
        }
      }
      grpc::Status status = reader->Finish();
      if (done) return positions;
      if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++*cutoffs;
        auto trailer = context.GetServerTrailingMetadata();
        auto it = trailer.find(kResumePositionMetadata);
        EXPECT_NE(it, trailer.end());
        if (it != trailer.end()) {
          EXPECT_EQ(std::string(it->second.data(), it->second.size()),
                    absl::StrCat(last));
        }
        continue;
      }
      ADD_FAILURE() << "subscription ended: " << status.error_code() << " "
                    << status.error_message();
      return positions;
    }
  }

  TempDir dir_;
  // A test's faulty file system, if it uses one: outlives the server.
  std::unique_ptr<testing::FaultFileSystem> fault_fs_;
  std::unique_ptr<LedgerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ledger::Stub> stub_;
};

// ---- who may do what

TEST_F(ServerTest, RoleMatrix) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("o1", "s1", "m1")).status(), v1::ACCEPTED);
  ASSERT_EQ(Execute(OpenStoreCommand("o2", "s2", "m2")).status(), v1::ACCEPTED);

  using Code = grpc::StatusCode;
  int next_command = 0;
  // Each call returns its status code.
  std::map<std::string, std::function<Code(const char*)>> calls;
  calls["Execute"] = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::CommandResult result;
    const std::string id = absl::StrCat("x", ++next_command);
    return stub_->Execute(&context, OpenStoreCommand(id, id, "m9"), &result)
        .error_code();
  };
  calls["ExecuteStream"] = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    auto stream = stub_->ExecuteStream(&context);
    const std::string id = absl::StrCat("y", ++next_command);
    stream->Write(OpenStoreCommand(id, id, "m9"));
    stream->WritesDone();
    v1::CommandResult result;
    while (stream->Read(&result)) {}
    return stream->Finish().error_code();
  };
  auto get_store = [&](const char* store) {
    return [&, store](const char* token) {
      grpc::ClientContext context;
      Authorize(&context, token);
      v1::GetStoreRequest request;
      request.set_store_id(store);
      v1::StoreState state;
      return stub_->GetStore(&context, request, &state).error_code();
    };
  };
  auto read_stream = [&](const char* store) {
    return [&, store](const char* token) {
      grpc::ClientContext context;
      Authorize(&context, token);
      v1::ReadStreamRequest request;
      request.set_store_id(store);
      auto reader = stub_->ReadStream(&context, request);
      v1::Envelope envelope;
      while (reader->Read(&envelope)) {}
      return reader->Finish().error_code();
    };
  };
  calls["GetStore(s1)"] = get_store("s1");
  calls["GetStore(s2)"] = get_store("s2");
  calls["GetStore(nope)"] = get_store("nope");
  calls["ReadStream(s1)"] = read_stream("s1");
  calls["ReadStream(s2)"] = read_stream("s2");
  calls["Subscribe"] = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::SubscribeRequest request;
    request.set_catch_up_only(true);
    auto reader = stub_->Subscribe(&context, request);
    v1::Envelope envelope;
    while (reader->Read(&envelope)) {}
    return reader->Finish().error_code();
  };
  calls["Digest"] = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::Digest digest;
    return stub_->Digest(&context, v1::DigestRequest(), &digest).error_code();
  };
  calls["Audit"] = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::AuditReport report;
    return stub_->Audit(&context, v1::AuditRequest(), &report).error_code();
  };

  const Code kOk = Code::OK, kDenied = Code::PERMISSION_DENIED,
             kUnauth = Code::UNAUTHENTICATED, kNotFound = Code::NOT_FOUND;
  struct Row {
    const char* name;
    const char* token;
    std::map<std::string, Code> expected;
  };
  const std::vector<Row> rows = {
      {"writer", kWriter,
       {{"Execute", kOk}, {"ExecuteStream", kOk}, {"GetStore(s1)", kDenied},
        {"GetStore(s2)", kDenied}, {"GetStore(nope)", kDenied},
        {"ReadStream(s1)", kDenied}, {"ReadStream(s2)", kDenied},
        {"Subscribe", kDenied}, {"Digest", kDenied}, {"Audit", kDenied}}},
      {"auditor", kAuditor,
       {{"Execute", kDenied}, {"ExecuteStream", kDenied}, {"GetStore(s1)", kOk},
        {"GetStore(s2)", kOk}, {"GetStore(nope)", kNotFound},
        {"ReadStream(s1)", kOk}, {"ReadStream(s2)", kOk}, {"Subscribe", kOk},
        {"Digest", kOk}, {"Audit", kOk}}},
      {"investigator", kInvestigator,
       {{"Execute", kDenied}, {"ExecuteStream", kDenied}, {"GetStore(s1)", kOk},
        {"GetStore(s2)", kOk}, {"GetStore(nope)", kNotFound},
        {"ReadStream(s1)", kOk}, {"ReadStream(s2)", kOk}, {"Subscribe", kOk},
        {"Digest", kOk}, {"Audit", kDenied}}},
      {"merchant:m1", kMerchant1,
       {{"Execute", kDenied}, {"ExecuteStream", kDenied}, {"GetStore(s1)", kOk},
        {"GetStore(s2)", kDenied}, {"GetStore(nope)", kDenied},
        {"ReadStream(s1)", kOk}, {"ReadStream(s2)", kDenied},
        {"Subscribe", kDenied}, {"Digest", kDenied}, {"Audit", kDenied}}},
      {"merchant:m2", kMerchant2,
       {{"Execute", kDenied}, {"ExecuteStream", kDenied},
        {"GetStore(s1)", kDenied}, {"GetStore(s2)", kOk},
        {"GetStore(nope)", kDenied}, {"ReadStream(s1)", kDenied},
        {"ReadStream(s2)", kOk}, {"Subscribe", kDenied}, {"Digest", kDenied},
        {"Audit", kDenied}}},
  };
  for (const Row& row : rows) {
    ASSERT_EQ(row.expected.size(), calls.size()) << row.name;
    for (const auto& [call, expected] : row.expected) {
      EXPECT_EQ(calls.at(call)(row.token), expected) << row.name << " " << call;
    }
  }
  // No token, an unknown token, a malformed header: UNAUTHENTICATED, always.
  for (const auto& [call, fn] : calls) {
    EXPECT_EQ(fn(nullptr), kUnauth) << "no token, " << call;
    EXPECT_EQ(fn("unknown-token-0123456789"), kUnauth) << "unknown, " << call;
    // A known token's prefix is not the token.
    EXPECT_EQ(fn("writer-token-012345678"), kUnauth) << "prefix, " << call;
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", kAuditor);  // no "Bearer "
    v1::Digest digest;
    EXPECT_EQ(stub_->Digest(&context, v1::DigestRequest(), &digest).error_code(),
              kUnauth);
  }
  // Denied and unauthenticated commands wrote nothing: the head is the two
  // stores (store + merchant events each) plus the writer's one Execute
  // (store + merchant m9) and one ExecuteStream (store only: m9 exists).
  EXPECT_EQ(server_->ledger().log().head().position, 2u + 2 + 2 + 1);
}

// grpc.health.v1.Health answers SERVING, for the whole server and for the
// service, without a token. (Called generically: the health protos are not
// among Debian's headers. HealthCheckRequest{service} is field 1, a string;
// HealthCheckResponse{status} is field 1, an enum, SERVING = 1.)
// The bytes of a generic call's message.
std::string BytesOf(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(buffer.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

// ---- what a merchant may learn

// A command in the fixture's JSON at 2024-06-DD 10:00 China time.
v1::Command At(int day, const std::string& id, const std::string& body) {
  return CommandFromJson(absl::StrCat(R"({"commandId":")", id,
                                      R"(","occurredAt":")",
                                      ChinaText(China(6, day, 10)), R"(",)",
                                      body, "}"));
}

// The ids (runs of [A-Za-z0-9_-]) in `text`.
std::set<std::string> Tokens(absl::string_view text) {
  std::set<std::string> tokens;
  std::string token;
  for (const char c : text) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
        c == '-') {
      token.push_back(c);
    } else if (!token.empty()) {
      tokens.insert(token);
      token.clear();
    }
  }
  if (!token.empty()) tokens.insert(token);
  return tokens;
}

struct ReadAnswer {
  grpc::Status status;
  std::string text;  // every message received, as JSON
  int refusals = 0;
};

// A merchant-scoped answer holds nothing about another merchant's stores:
// every read RPC, and every refusal that names a second store, a second
// merchant or their orders and withdrawals (issue 12, item 3).
TEST_F(ServerTest, AMerchantReadsNothingAboutStoresItDoesNotOwn) {
  Start();
  const std::vector<v1::Command> setup = {
      OpenStoreCommand("x-open-1", "s1", "m1"),
      OpenStoreCommand("x-open-2", "s2", "m2"),
      AddProductCommand("x-add-1", "s1", "p1"),
      AddProductCommand("x-add-2", "s2", "p1"),
      At(3, "x-list-2", R"("listProduct":{"storeId":"s2","productId":"p1"})"),
      At(4, "x-place-2",
         R"("placeOrder":{"storeId":"s2","orderId":"o2","lines":[{"productId":"p1","quantity":1,"unitPriceFen":100}]})"),
      At(5, "x-pay-2", R"("payOrder":{"storeId":"s2","orderId":"o2","amountFen":100})"),
      At(6, "x-ship-2", R"("shipOrder":{"storeId":"s2","orderId":"o2"})"),
      At(7, "x-settle-2",
         R"("settleOrder":{"storeId":"s2","orderId":"o2","commissionFen":10})"),
      At(8, "x-withdraw-2",
         R"("requestWithdrawal":{"storeId":"s2","withdrawalId":"w2","amountFen":50})"),
  };
  for (const v1::Command& command : setup) {
    const v1::CommandResult result = Execute(command);
    ASSERT_EQ(result.status(), v1::ACCEPTED)
        << command.command_id() << ": " << result.message();
  }
  // Refused commands naming s1 and, in the command or in the message, s2,
  // m2 or m2's order and withdrawal; and one naming s1 alone.
  const std::vector<v1::Command> refused = {
      At(9, "x-r9", R"("syncProducts":{"sourceStoreId":"s2","targetStoreId":"s1"})"),
      At(9, "x-r8", R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"s2"})"),
      At(9, "x-r13-order", R"("payOrder":{"storeId":"s1","orderId":"o2","amountFen":100})"),
      At(9, "x-r10",
         R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p1","quantity":1,"unitPriceFen":100}]})"),
      At(9, "x-r14",
         R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w2","amountFen":10})"),
      At(9, "x-r13-withdrawal",
         R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"w2"})"),
      At(9, "x-r1",
         R"("openStore":{"storeId":"s1","merchantId":"m2","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      At(9, "x-r2-own",
         R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})"),
  };
  for (const v1::Command& command : refused) {
    ASSERT_EQ(Execute(command).status(), v1::REJECTED) << command.command_id();
  }

  auto read_stream = [&](const char* token, const std::string& store,
                         bool include_rejections) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::ReadStreamRequest request;
    request.set_store_id(store);
    request.set_include_rejections(include_rejections);
    auto reader = stub_->ReadStream(&context, request);
    ReadAnswer answer;
    v1::Envelope envelope;
    while (reader->Read(&envelope)) {
      // Hashes are base64: a run of it could spell an id by chance.
      envelope.clear_hash();
      envelope.clear_prev_hash();
      absl::StrAppend(&answer.text, ToJson(envelope), "\n");
      if (envelope.payload().has_command_rejected()) ++answer.refusals;
    }
    answer.status = reader->Finish();
    return answer;
  };
  auto get_store = [&](const char* token, const std::string& store,
                       int variant) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::GetStoreRequest request;
    request.set_store_id(store);
    if (variant == 1) *request.mutable_as_of() = ToProto(China(6, 8));
    if (variant == 2) request.set_position(5);
    v1::StoreState state;
    ReadAnswer answer;
    answer.status = stub_->GetStore(&context, request, &state);
    answer.text = ToJson(state);
    return answer;
  };

  // The auditor sees the refusals that name both merchants' stores: the
  // merchants must not.
  const ReadAnswer audited = read_stream(kAuditor, "s1", true);
  ASSERT_TRUE(audited.status.ok()) << audited.status.error_message();
  EXPECT_EQ(audited.refusals, static_cast<int>(refused.size()));
  EXPECT_TRUE(Tokens(audited.text).count("s2"));

  struct Merchant {
    const char* token;
    std::string own;
    std::set<std::string> foreign;  // ids of the other merchant's things
    int own_refusals;               // refusals naming only its own things
  };
  const std::vector<Merchant> merchants = {
      {kMerchant1, "s1", {"s2", "m2", "o2", "w2"}, 1},
      {kMerchant2, "s2", {"s1", "m1"}, 0},
  };
  for (const Merchant& m : merchants) {
    SCOPED_TRACE(m.token);
    std::vector<ReadAnswer> answers = {read_stream(m.token, m.own, true),
                                       read_stream(m.token, m.own, false)};
    EXPECT_EQ(answers[0].refusals, m.own_refusals) << answers[0].text;
    for (int variant = 0; variant < 3; ++variant) {
      answers.push_back(get_store(m.token, m.own, variant));
    }
    for (const ReadAnswer& answer : answers) {
      ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
      for (const std::string& token : Tokens(answer.text)) {
        EXPECT_FALSE(m.foreign.count(token))
            << "names " << token << " in\n" << answer.text;
      }
    }
    // The log-wide RPCs are not a merchant's to call.
    grpc::ClientContext digest_context;
    Authorize(&digest_context, m.token);
    v1::Digest digest;
    EXPECT_EQ(stub_->Digest(&digest_context, v1::DigestRequest(), &digest)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    grpc::ClientContext audit_context;
    Authorize(&audit_context, m.token);
    v1::AuditReport report;
    EXPECT_EQ(stub_->Audit(&audit_context, v1::AuditRequest(), &report)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    grpc::ClientContext subscribe_context;
    Authorize(&subscribe_context, m.token);
    auto subscription =
        stub_->Subscribe(&subscribe_context, v1::SubscribeRequest());
    v1::Envelope envelope;
    EXPECT_FALSE(subscription->Read(&envelope));
    EXPECT_EQ(subscription->Finish().error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
}

// Another merchant's store and a store that does not exist get answers
// identical in content, decided from the caller's own merchant record
// alone: the other store's record is never read, so damaging it changes
// nothing (issue 12, item 7: GetStore loaded it before denying, ~100 us
// more than for a missing store, an existence oracle by timing).
TEST_F(ServerTest, AnotherMerchantsStoreAndAMissingOneAnswerAlike) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("o1", "s1", "m1")).status(), v1::ACCEPTED);
  ASSERT_EQ(Execute(OpenStoreCommand("o2", "s2", "m2")).status(), v1::ACCEPTED);
  server_.reset();
  {
    // s2's record made unreadable: reading it is an error (DATA_LOSS).
    const std::string db = dir_.Sub("db");
    std::vector<std::string> families;
    ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), db,
                                                &families)
                    .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& family : families) {
      descriptors.emplace_back(family, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), db, descriptors,
                                  &handles, &raw)
                    .ok());
    std::unique_ptr<rocksdb::DB> rocks(raw);
    const auto projections =
        std::find(families.begin(), families.end(), "projections");
    ASSERT_NE(projections, families.end());
    ASSERT_TRUE(rocks->Put(rocksdb::WriteOptions(),
                           handles[projections - families.begin()],
                           StoreKey("s2"), "not a StoreRecord")
                    .ok());
    for (rocksdb::ColumnFamilyHandle* handle : handles) {
      ASSERT_TRUE(rocks->DestroyColumnFamilyHandle(handle).ok());
    }
  }
  Start();

  auto get_store = [&](const std::string& store, int variant) {
    grpc::ClientContext context;
    Authorize(&context, kMerchant1);
    v1::GetStoreRequest request;
    request.set_store_id(store);
    if (variant == 1) *request.mutable_as_of() = ToProto(China(6, 8));
    if (variant == 2) request.set_position(1);
    v1::StoreState state;
    return stub_->GetStore(&context, request, &state);
  };
  auto read_stream = [&](const std::string& store, int variant) {
    grpc::ClientContext context;
    Authorize(&context, kMerchant1);
    v1::ReadStreamRequest request;
    request.set_store_id(store);
    request.set_include_rejections(variant == 1);
    auto reader = stub_->ReadStream(&context, request);
    v1::Envelope envelope;
    int received = 0;
    while (reader->Read(&envelope)) ++received;
    EXPECT_EQ(received, 0);
    return reader->Finish();
  };
  for (int variant = 0; variant < 3; ++variant) {
    for (const auto& call :
         std::vector<std::function<grpc::Status(const std::string&)>>{
             [&](const std::string& store) { return get_store(store, variant); },
             [&](const std::string& store) {
               return read_stream(store, variant % 2);
             }}) {
      const grpc::Status foreign = call("s2");
      const grpc::Status missing = call("s9");
      EXPECT_EQ(foreign.error_code(), grpc::StatusCode::PERMISSION_DENIED)
          << foreign.error_message();
      EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_EQ(foreign.error_message(),
                "role merchant:m1 may not read store s2");
      EXPECT_EQ(missing.error_message(),
                "role merchant:m1 may not read store s9");
      EXPECT_EQ(foreign.error_details(), missing.error_details());
    }
  }
  // The owner of s1 still reads it.
  EXPECT_TRUE(get_store("s1", 0).ok());
}

// One size limit for a command whatever the door (issue 12, item 6): over
// gRPC, a 4.0 MB command is INVALID before deciding, and nothing of it is
// stored; at kCommandBytesMax it is decided as through the CLI.
TEST_F(ServerTest, ACommandOverTheByteLimitIsInvalidThroughEveryMethod) {
  Start();
  const v1::Command big =
      OpenStoreCommand("big", "s-big", std::string(4'000'000, 'm'));
  ASSERT_GT(big.ByteSizeLong(), kCommandBytesMax);
  const v1::CommandResult unary = Execute(big);
  EXPECT_EQ(unary.status(), v1::INVALID) << unary.message();
  EXPECT_THAT(unary.message(), HasSubstr("kCommandBytesMax"));

  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  ASSERT_TRUE(stream->Write(big));
  ASSERT_TRUE(stream->Write(OpenStoreCommand("small", "s-small", "m1")));
  stream->WritesDone();
  std::vector<v1::CommandResult> results;
  v1::CommandResult result;
  while (stream->Read(&result)) results.push_back(result);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].status(), v1::INVALID);
  EXPECT_THAT(results[0].message(), HasSubstr("kCommandBytesMax"));
  EXPECT_EQ(results[1].status(), v1::ACCEPTED);
  // Only the small store's events: no 4 MB rejection.
  EXPECT_EQ(server_->ledger().log().head().position, 2u);
}

// GetStore's as_of is a time the ledger holds, as --as-of is (issue 12,
// item 10).
TEST_F(ServerTest, GetStoreRefusesAnAsOfOutsideTheLedgersTimes) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("o1", "s1", "m1")).status(), v1::ACCEPTED);
  for (const int64_t seconds : {kTimeSecondsMin - 1, kTimeSecondsMax + 1,
                                int64_t{-100'000'000'000}}) {
    grpc::ClientContext context;
    Authorize(&context, kAuditor);
    v1::GetStoreRequest request;
    request.set_store_id("s1");
    request.mutable_as_of()->set_seconds(seconds);
    v1::StoreState state;
    const grpc::Status status = stub_->GetStore(&context, request, &state);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << seconds;
    EXPECT_THAT(status.error_message(),
                HasSubstr("0001-01-01T00:00:00Z to "
                          "9999-12-31T23:59:59.999999999Z"));
  }
  testing::CliRun run = RunStoreledger(
      {"--server", server_->address(), "--token", kAuditor, "state", "--store",
       "s1", "--as-of", "99999-01-01T00:00:00Z"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_THAT(run.err, HasSubstr("outside the times the ledger holds"));
}

TEST_F(ServerTest, HealthCheckSaysServing) {
  Start();
  grpc::GenericStub generic(channel_);
  // Health/Check(service) -> the call's status and the response's bytes.
  auto check = [&](const std::string& service) {
    std::string request_bytes;
    if (!service.empty()) {
      request_bytes = absl::StrCat(std::string(1, '\x0a'),
                                   std::string(1, static_cast<char>(service.size())),
                                   service);
    }
    grpc::Slice slice(request_bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    std::promise<grpc::Status> done;
    generic.UnaryCall(&context, "/grpc.health.v1.Health/Check",
                      grpc::StubOptions(), &request, &response,
                      [&](grpc::Status status) { done.set_value(status); });
    grpc::Status status = done.get_future().get();
    return std::make_pair(status, status.ok() ? BytesOf(response) : "");
  };
  for (const std::string service : {"", "storeledger.v1.Ledger"}) {
    const auto [status, bytes] = check(service);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << service;
  }
  // A service the server does not have: NOT_FOUND, not SERVING.
  EXPECT_EQ(check("no.such.Service").first.error_code(),
            grpc::StatusCode::NOT_FOUND);
}

// Server reflection, as grpcurl uses it: list the services, then fetch the
// file that defines storeledger.v1.Ledger (with its dependencies) and find
// the service's methods in it. Debian ships no C++ headers for
// grpc.reflection.v1alpha (nor ProtoReflectionDescriptorDatabase, which is
// gRPC's test code), but the messages are compiled into
// libgrpc++_reflection, linked here through the server, so they are in
// protobuf's generated pool; the call itself is made generically.
class ByteStreamCall
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  // Sends `requests` in order, half-closes, and collects every response.
  ByteStreamCall(grpc::GenericStub* stub, const std::string& method,
                 std::vector<std::string> requests)
      : requests_(std::move(requests)) {
    stub->PrepareBidiStreamingCall(&context_, method, grpc::StubOptions(),
                                   this);
    StartRead(&response_);
    WriteNext();
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (ok) WriteNext();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    responses_.push_back(BytesOf(response_));
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override { done_.set_value(status); }

  // The call's status; responses() is complete once this returns.
  grpc::Status Await() { return done_.get_future().get(); }
  const std::vector<std::string>& responses() const { return responses_; }

 private:
  void WriteNext() {
    if (next_ == requests_.size()) {
      StartWritesDone();
      return;
    }
    grpc::Slice slice(requests_[next_++]);
    request_ = grpc::ByteBuffer(&slice, 1);
    StartWrite(&request_);
  }

  grpc::ClientContext context_;
  std::vector<std::string> requests_;
  size_t next_ = 0;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  std::vector<std::string> responses_;
  std::promise<grpc::Status> done_;
};

// A new message of a type compiled into a linked library, found by name.
std::unique_ptr<google::protobuf::Message> NewGenerated(
    const std::string& type) {
  const google::protobuf::Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
          type);
  if (descriptor == nullptr) return nullptr;
  return std::unique_ptr<google::protobuf::Message>(
      google::protobuf::MessageFactory::generated_factory()
          ->GetPrototype(descriptor)
          ->New());
}

TEST_F(ServerTest, ReflectionListsTheServicesAndDescribesTheLedger) {
  Start();
  constexpr char kReflection[] = "grpc.reflection.v1alpha";
  std::unique_ptr<google::protobuf::Message> list =
      NewGenerated(absl::StrCat(kReflection, ".ServerReflectionRequest"));
  std::unique_ptr<google::protobuf::Message> file =
      NewGenerated(absl::StrCat(kReflection, ".ServerReflectionRequest"));
  std::unique_ptr<google::protobuf::Message> response =
      NewGenerated(absl::StrCat(kReflection, ".ServerReflectionResponse"));
  ASSERT_TRUE(list != nullptr && response != nullptr)
      << "the grpc.reflection.v1alpha messages are not in the generated pool "
         "(is libgrpc++_reflection linked?)";
  auto field = [](const google::protobuf::Message& m, const char* name) {
    const google::protobuf::FieldDescriptor* f =
        m.GetDescriptor()->FindFieldByName(name);
    EXPECT_NE(f, nullptr) << m.GetDescriptor()->full_name() << "." << name;
    return f;
  };
  list->GetReflection()->SetString(list.get(), field(*list, "list_services"),
                                   "*");
  file->GetReflection()->SetString(
      file.get(), field(*file, "file_containing_symbol"),
      "storeledger.v1.Ledger");

  // No token: reflection, like health, is open (it describes the API, not
  // the ledger).
  grpc::GenericStub generic(channel_);
  ByteStreamCall call(
      &generic,
      absl::StrCat("/", kReflection, ".ServerReflection/ServerReflectionInfo"),
      {list->SerializeAsString(), file->SerializeAsString()});
  grpc::Status status = call.Await();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(call.responses().size(), 2u);

  // 1. list_services_response { service { name } ... }
  ASSERT_TRUE(response->ParseFromString(call.responses()[0]));
  const google::protobuf::Reflection* r = response->GetReflection();
  ASSERT_TRUE(r->HasField(*response, field(*response, "list_services_response")))
      << response->DebugString();
  const google::protobuf::Message& services =
      r->GetMessage(*response, field(*response, "list_services_response"));
  const google::protobuf::FieldDescriptor* service_field =
      field(services, "service");
  std::set<std::string> names;
  for (int i = 0;
       i < services.GetReflection()->FieldSize(services, service_field); ++i) {
    const google::protobuf::Message& service =
        services.GetReflection()->GetRepeatedMessage(services, service_field, i);
    names.insert(
        service.GetReflection()->GetString(service, field(service, "name")));
  }
  EXPECT_THAT(names, ::testing::IsSupersetOf(
                         {"storeledger.v1.Ledger", "grpc.health.v1.Health",
                          "grpc.reflection.v1alpha.ServerReflection"}))
      << absl::StrJoin(names, ", ");

  // 2. file_descriptor_response { file_descriptor_proto: bytes ... }: the
  // file and its dependencies, enough to build the service's descriptors.
  ASSERT_TRUE(response->ParseFromString(call.responses()[1]));
  ASSERT_TRUE(
      r->HasField(*response, field(*response, "file_descriptor_response")))
      << response->DebugString();
  const google::protobuf::Message& files =
      r->GetMessage(*response, field(*response, "file_descriptor_response"));
  const google::protobuf::FieldDescriptor* files_field =
      field(files, "file_descriptor_proto");
  google::protobuf::SimpleDescriptorDatabase database;
  for (int i = 0; i < files.GetReflection()->FieldSize(files, files_field);
       ++i) {
    google::protobuf::FileDescriptorProto proto;
    ASSERT_TRUE(proto.ParseFromString(
        files.GetReflection()->GetRepeatedString(files, files_field, i)));
    ASSERT_TRUE(database.Add(proto)) << proto.name();
  }
  google::protobuf::DescriptorPool pool(&database);
  const google::protobuf::ServiceDescriptor* ledger =
      pool.FindServiceByName("storeledger.v1.Ledger");
  ASSERT_NE(ledger, nullptr);
  for (const char* method : {"Execute", "ExecuteStream", "GetStore",
                             "ReadStream", "Subscribe", "Digest", "Audit"}) {
    EXPECT_NE(ledger->FindMethodByName(method), nullptr) << method;
  }
  const google::protobuf::MethodDescriptor* stream =
      ledger->FindMethodByName("ExecuteStream");
  ASSERT_NE(stream, nullptr);
  EXPECT_TRUE(stream->client_streaming() && stream->server_streaming());
  EXPECT_EQ(stream->input_type()->full_name(), "storeledger.v1.Command");
  EXPECT_EQ(stream->output_type()->full_name(), "storeledger.v1.CommandResult");
}

TEST_F(ServerTest, TokenTableRefusesBadFiles) {
  const std::string path = dir_.Sub("tokens");
  {
    std::ofstream file(path);
    file << kTokenFile;
  }
  chmod(path.c_str(), 0644);
  absl::StatusOr<TokenTable> table = TokenTable::Load(path);
  EXPECT_EQ(table.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(table.status().message(), HasSubstr("chmod 600"));
  chmod(path.c_str(), 0640);
  EXPECT_EQ(TokenTable::Load(path).status().code(),
            absl::StatusCode::kFailedPrecondition);
  chmod(path.c_str(), 0600);
  table = TokenTable::Load(path);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 5u);
  ASSERT_TRUE(table->Lookup(kMerchant1).has_value());
  EXPECT_EQ(RoleName(*table->Lookup(kMerchant1)), "merchant:m1");
  EXPECT_FALSE(table->Lookup("merchant1-token-012345678").has_value());

  EXPECT_THAT(TokenTable::Parse("short writer").status().message(),
              HasSubstr("line 1"));
  EXPECT_THAT(TokenTable::Parse("a-long-enough-token-0000 admin").status().message(),
              HasSubstr("unknown role 'admin'"));
  EXPECT_THAT(TokenTable::Parse("a-long-enough-token-0000 merchant:").status().message(),
              HasSubstr("unknown role"));
  EXPECT_THAT(TokenTable::Parse("a-long-enough-token-0000 writer\n"
                                "a-long-enough-token-0000 auditor\n")
                  .status()
                  .message(),
              HasSubstr("line 2: token given twice"));
}

// ---- start-up refusals

TEST_F(ServerTest, RefusesNonLoopbackWithoutTls) {
  ServerOptions options = Options();
  options.listen = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(server.status().message(), HasSubstr("without TLS"));
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.1.2.3"));
  EXPECT_TRUE(IsLoopbackHost("[::1]"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("[::]"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.1"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
}

TEST_F(ServerTest, PortInUseAndLockedDatabaseAreClearErrors) {
  Start();
  ServerOptions same_port = Options();
  same_port.db_dir = dir_.Sub("db2");
  same_port.listen = server_->address();
  absl::StatusOr<std::unique_ptr<LedgerServer>> second =
      LedgerServer::Start(same_port);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("already in use"));

  ServerOptions same_db = Options();  // port 0, the running server's db
  second = LedgerServer::Start(same_db);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use by another process"));
}

// storeledgerd refuses a database that is not a ledger (issue 12, item 4).
TEST_F(ServerTest, RefusesADatabaseThatIsNotALedger) {
  ServerOptions options = Options();
  options.db_dir = dir_.Sub("foreign");
  ASSERT_NO_FATAL_FAILURE(testing::MakeForeignRocksDb(options.db_dir));
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(server.status().message(),
              HasSubstr(absl::StrCat("database ", options.db_dir,
                                     " is not a storeledger ledger")));
}

TEST_F(ServerTest, BadCertificatesAreClearErrors) {
  const std::string cert = dir_.Sub("cert.pem");
  const std::string key = dir_.Sub("key.pem");
  {
    std::ofstream(cert) << "not a certificate\n";
    std::ofstream(key) << "not a key\n";
  }
  ServerOptions options = Options();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("not a PEM certificate"));
  options.tls_key_file.clear();
  EXPECT_THAT(LedgerServer::Start(options).status().message(),
              HasSubstr("give both or neither"));
}

// A real certificate (made with the openssl tool, when it is installed):
// the client must trust it, and then everything works over TLS.
TEST_F(ServerTest, ServesTlsWithAGoodCertificate) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "the openssl tool is not installed";
  }
  const std::string cert = dir_.Sub("cert.pem");
  const std::string key = dir_.Sub("key.pem");
  const std::string other_key = dir_.Sub("other.pem");
  const std::string command = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      key, " -out ", cert, " 2>/dev/null && openssl genrsa -out ", other_key,
      " 2048 2>/dev/null");
  ASSERT_EQ(std::system(command.c_str()), 0);

  ServerOptions mismatched = Options();
  mismatched.tls_cert_file = cert;
  mismatched.tls_key_file = other_key;
  EXPECT_THAT(LedgerServer::Start(mismatched).status().message(),
              HasSubstr("does not belong to the certificate"));

  ServerOptions options = Options();
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  absl::StatusOr<std::unique_ptr<LedgerServer>> server =
      LedgerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  std::ifstream file(cert);
  std::stringstream pem;
  pem << file.rdbuf();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  auto stub = v1::Ledger::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::SslCredentials(ssl)));
  grpc::ClientContext context;
  Authorize(&context, kWriter);
  v1::CommandResult result;
  grpc::Status status =
      stub->Execute(&context, OpenStoreCommand("t1", "t1", "m1"), &result);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(result.status(), v1::ACCEPTED);

  // A plaintext client cannot talk to it.
  auto plain = v1::Ledger::NewStub(grpc::CreateChannel(
      (*server)->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext plain_context;
  plain_context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  Authorize(&plain_context, kAuditor);
  v1::Digest digest;
  EXPECT_FALSE(plain->Digest(&plain_context, v1::DigestRequest(), &digest).ok());
}

// ---- subscriptions

TEST_F(ServerTest, SubscribeCatchesUpThenFollowsWithoutGaps) {
  Start();
  constexpr int kBefore = 300;
  constexpr int kDuring = 700;
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(), v1::ACCEPTED);
  for (int i = 0; i < kBefore; ++i) {
    Execute(AddProductCommand(absl::StrCat("b", i), "s1", absl::StrCat("b", i)));
  }
  std::atomic<uint64_t> until{0};
  std::vector<uint64_t> positions;
  int cutoffs = 0;
  std::thread subscriber([&] { positions = Collect(0, until, &cutoffs); });
  std::thread writer([&] {
    for (int i = 0; i < kDuring; ++i) {
      Execute(AddProductCommand(absl::StrCat("d", i), "s1", absl::StrCat("d", i)));
    }
  });
  writer.join();
  // The subscriber may already be waiting at the head: name the position of
  // one more command as the end, then write it.
  until = server_->ledger().log().head().position + 1;
  Execute(AddProductCommand("last", "s1", "last"));
  subscriber.join();
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_EQ(head, until.load());
  // open (2 events) + one event per product.
  EXPECT_EQ(head, 2u + kBefore + kDuring + 1);
  ASSERT_EQ(positions.size(), head);
  for (uint64_t i = 0; i < head; ++i) {
    ASSERT_EQ(positions[i], i + 1) << "gap or duplicate at index " << i;
  }
  std::cout << "subscriber cut off and resumed " << cutoffs << " times\n";
}

// The limit of open subscriptions (kSubscribersMax): that many are served,
// one more is refused with RESOURCE_EXHAUSTED naming the limit, and when one
// leaves there is room again.
TEST_F(ServerTest, SubscribersUpToTheLimitAreServedOneMoreIsRefused) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(), v1::ACCEPTED);
  struct Subscription {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::Envelope>> reader;
  };
  // Subscribes from position 0; true once the first envelope arrived (so the
  // server counts it), false with *status when refused.
  auto subscribe = [&](Subscription* sub, grpc::Status* status) {
    Authorize(&sub->context, kAuditor);
    v1::SubscribeRequest request;
    sub->reader = stub_->Subscribe(&sub->context, request);
    v1::Envelope envelope;
    if (sub->reader->Read(&envelope)) return true;
    *status = sub->reader->Finish();
    return false;
  };
  std::vector<std::unique_ptr<Subscription>> open;
  grpc::Status status;
  for (size_t i = 0; i < kSubscribersMax; ++i) {
    open.push_back(std::make_unique<Subscription>());
    ASSERT_TRUE(subscribe(open.back().get(), &status))
        << "subscriber " << i + 1 << " of " << kSubscribersMax << ": "
        << status.error_message();
  }
  Subscription one_more;
  ASSERT_FALSE(subscribe(&one_more, &status));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat(kSubscribersMax, " subscribers")));

  // One leaves; the server notices within its poll interval.
  open.back()->context.TryCancel();
  open.back()->reader->Finish();
  open.pop_back();
  bool served = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!served && absl::Now() < deadline) {
    auto again = std::make_unique<Subscription>();
    served = subscribe(again.get(), &status);
    if (served) {
      open.push_back(std::move(again));
    } else {
      ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(served) << "no room after a subscriber left";
  for (auto& sub : open) sub->context.TryCancel();
  for (auto& sub : open) sub->reader->Finish();
}

TEST_F(ServerTest, SlowSubscriberIsCutOffAndResumesWithoutGaps) {
  ServerOptions options = Options();
  options.subscriber_buffer_events = 16;
  // Only the buffer's cut-off is under test: on a loaded machine the 4000
  // commands below can take longer than the default drain timeout.
  options.subscriber_drain_timeout = absl::Minutes(5);
  Start(options);
  ASSERT_EQ(Execute(OpenStoreCommand("open", "s1", "m1")).status(), v1::ACCEPTED);

  // A subscriber that reads one event, then nothing while the writer appends
  // far more than the transport can hold for it.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto slow_stub = v1::Ledger::NewStub(grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext context;
  Authorize(&context, kInvestigator);
  v1::SubscribeRequest request;
  auto reader = slow_stub->Subscribe(&context, request);
  v1::Envelope envelope;
  ASSERT_TRUE(reader->Read(&envelope));
  EXPECT_EQ(envelope.position(), 1u);
  uint64_t last = envelope.position();
  constexpr int kCommands = 4000;
  for (int i = 0; i < kCommands; ++i) {
    Execute(AddProductCommand(absl::StrCat("p", i), "s1", absl::StrCat("p", i)));
  }
  std::vector<uint64_t> positions = {last};
  while (reader->Read(&envelope)) {
    positions.push_back(envelope.position());
    last = envelope.position();
  }
  grpc::Status status = reader->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("16 events behind"));
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("from_position=", last)));
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_LT(last, head);
  // Resume from the last position received: the rest, nothing twice.
  std::atomic<uint64_t> until{head};
  int cutoffs = 0;
  for (uint64_t p : Collect(last, until, &cutoffs)) positions.push_back(p);
  ASSERT_EQ(positions.size(), head);
  for (uint64_t i = 0; i < head; ++i) ASSERT_EQ(positions[i], i + 1);
}

// A subscriber whose client never reads and one whose client pauses hold
// nothing writers wait for. Writers append far more than the memtable
// budget (shrunk to kStallBudgetBytes) past both: every command is answered
// within a bound of the same writes with no subscriber, and both
// subscribers are cut off for taking nothing within the drain timeout; the
// paused one, reading on, gets every event up to its resume position, then
// the status naming it, and resumes from there without a gap.
TEST_F(ServerTest, StalledSubscribersCostWritersNothing) {
  constexpr size_t kStallBudgetBytes = 1 << 20;
  constexpr int kStallStreams = 2;
  constexpr int kStallCommandsPerStream = 10000;
  constexpr absl::Duration kDrainTimeout = absl::Seconds(1);
  // A bound that a stalled writer misses by far (it waits for ever).
  constexpr absl::Duration kWriteBound = absl::Seconds(60);
  ServerOptions options = Options();
  options.ledger.memtables_bytes_max = kStallBudgetBytes;
  options.subscriber_drain_timeout = kDrainTimeout;
  // Only the drain timeout cuts these subscribers off.
  options.subscriber_buffer_events = 1 << 30;
  Start(options);

  // kStallStreams pipelined ExecuteStream calls (as `apply` writes), each
  // filling its own stores; the seconds they took, or nullopt when some
  // command got no ACCEPTED result within kWriteBound.
  auto write = [&](const std::string& tag) -> std::optional<double> {
    const absl::Time start = absl::Now();
    std::atomic<int> answered{0};
    std::vector<std::thread> streams;
    for (int c = 0; c < kStallStreams; ++c) {
      streams.emplace_back([&, c] {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        context.set_deadline(absl::ToChronoTime(start + kWriteBound));
        auto stream = stub_->ExecuteStream(&context);
        std::thread sender([&] {
          for (int i = 0; i < kStallCommandsPerStream; ++i) {
            const std::string store = absl::StrCat(
                tag, c, "-", i / kLoadProductsPerStore);
            if (!stream->Write(
                    StoreFillCommand(store, i % kLoadProductsPerStore, i))) {
              break;
            }
          }
          stream->WritesDone();
        });
        v1::CommandResult result;
        while (stream->Read(&result)) {
          if (result.status() == v1::ACCEPTED) ++answered;
        }
        sender.join();
        grpc::Status status = stream->Finish();
        EXPECT_TRUE(status.ok()) << tag << c << ": " << status.error_message();
      });
    }
    for (std::thread& t : streams) t.join();
    if (answered != kStallStreams * kStallCommandsPerStream) {
      ADD_FAILURE() << tag << ": " << answered.load() << " of "
                    << kStallStreams * kStallCommandsPerStream
                    << " commands answered ACCEPTED within "
                    << absl::FormatDuration(kWriteBound);
      return std::nullopt;
    }
    return absl::ToDoubleSeconds(absl::Now() - start);
  };
  constexpr double kCommands = kStallStreams * kStallCommandsPerStream;

  std::optional<double> alone = write("a");
  ASSERT_TRUE(alone.has_value());

  // One that never reads, from the start of the log (far more than the
  // transport holds for it) ...
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  auto still_stub = v1::Ledger::NewStub(grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext still_context;
  Authorize(&still_context, kAuditor);
  v1::SubscribeRequest from_start;
  auto still = still_stub->Subscribe(&still_context, from_start);
  // ... and one from the head that reads a few events of the next writes,
  // then pauses until they are over.
  auto paused_stub = v1::Ledger::NewStub(grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext paused_context;
  Authorize(&paused_context, kInvestigator);
  v1::SubscribeRequest from_head;
  const uint64_t head_before = server_->ledger().log().head().position;
  from_head.set_from_position(head_before);
  auto paused = paused_stub->Subscribe(&paused_context, from_head);

  std::vector<uint64_t> positions;
  std::thread reader([&] {
    v1::Envelope envelope;
    while (positions.size() < 10 && paused->Read(&envelope)) {
      positions.push_back(envelope.position());
    }
  });
  std::optional<double> stalled = write("b");
  reader.join();
  if (!stalled.has_value()) {
    // Let the writers go before the server shuts down.
    still_context.TryCancel();
    paused_context.TryCancel();
    FAIL() << "writers stalled behind the subscribers";
  }
  std::cout << "writer throughput: " << kCommands / *alone
            << " commands/s with no subscriber, " << kCommands / *stalled
            << " commands/s past a subscriber that never reads and one "
               "paused ("
            << kCommands << " commands each, memtable budget "
            << kStallBudgetBytes << " bytes)\n";
  EXPECT_LT(*stalled, 4 * *alone + 2 * absl::ToDoubleSeconds(kDrainTimeout))
      << "writers slowed by the stalled subscribers";

  // Both are cut off within the drain timeout (after the writes, at most).
  const absl::Time deadline = absl::Now() + 10 * kDrainTimeout;
  while (server_->service().stalled_subscribers_cut_off() < 2 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(server_->service().stalled_subscribers_cut_off(), 2u);

  // The paused one reads on: every event up to its resume position, then
  // the status naming it.
  ASSERT_EQ(positions.size(), 10u);
  v1::Envelope envelope;
  while (paused->Read(&envelope)) positions.push_back(envelope.position());
  grpc::Status status = paused->Finish();
  ASSERT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("took no event for 1s"));
  const uint64_t last = positions.back();
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("from_position=", last)));
  auto trailer = paused_context.GetServerTrailingMetadata();
  auto it = trailer.find(kResumePositionMetadata);
  ASSERT_NE(it, trailer.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()),
            absl::StrCat(last));
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_LT(last, head);
  std::atomic<uint64_t> until{head};
  int cutoffs = 0;
  for (uint64_t p : Collect(last, until, &cutoffs)) positions.push_back(p);
  ASSERT_EQ(positions.size(), head - head_before);
  for (size_t i = 0; i < positions.size(); ++i) {
    ASSERT_EQ(positions[i], head_before + 1 + i) << "gap or duplicate";
  }

  still_context.TryCancel();
  still->Finish();
}

// Audit over gRPC reads the live ledger. The issue's reproduction (a
// simulated ledger, served, one command, then Audit) and audits while
// writers append and RocksDB flushes and compacts all pass -- the read-only
// open that Audit used to make beside the live instance read files that
// compaction had deleted, and answered DATA_LOSS on a sound ledger -- and a
// damaged record of the live ledger is still reported.
TEST_F(ServerTest, AuditOfTheLiveLedgerPassesDuringWritesAndReportsDamage) {
  testing::CliRun simulated = RunStoreledger(
      {"--db", dir_.Sub("db"), "simulate", "--stores", "30", "--seed", "5"});
  ASSERT_EQ(simulated.exit_code, 0) << simulated.err;
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("after-open", "after", "m1")).status(),
            v1::ACCEPTED);
  auto audit = [&](v1::AuditReport* report) {
    grpc::ClientContext context;
    Authorize(&context, kAuditor);
    return stub_->Audit(&context, v1::AuditRequest(), report);
  };
  v1::AuditReport report;
  grpc::Status status = audit(&report);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_TRUE(report.ok()) << report.violations_total() << " violations";

  // Served again with a small memtable budget: flushes (and so
  // compactions) every few hundred commands.
  server_->Shutdown();
  ServerOptions options = Options();
  options.ledger.memtables_bytes_max = 1 << 20;
  Start(options);

  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        const std::string store =
            absl::StrCat("live", w, "-", i / kLoadProductsPerStore);
        v1::CommandResult result =
            Execute(StoreFillCommand(store, i % kLoadProductsPerStore, i));
        if (result.status() == v1::ACCEPTED) ++written;
      }
    });
  }
  rocksdb::DB* db = server_->ledger().log().db();
  const uint64_t head_before_writes = report.head_position();
  uint64_t audited_head = head_before_writes;
  // Full compactions one after another beside the writers and the audits:
  // every table file is rewritten and deleted again and again.
  std::thread compactor([&] {
    rocksdb::CompactRangeOptions compact;
    compact.bottommost_level_compaction =
        rocksdb::BottommostLevelCompaction::kForce;
    while (!stop) {
      for (rocksdb::ColumnFamilyHandle* cf :
           {server_->ledger().log().events_cf(),
            server_->ledger().log().streams_cf(),
            server_->ledger().log().commands_cf(),
            server_->ledger().log().projections_cf()}) {
        EXPECT_TRUE(db->CompactRange(compact, cf, nullptr, nullptr).ok());
      }
    }
  });
  int audits = 0;
  const absl::Time until = absl::Now() + absl::Seconds(4);
  while (absl::Now() < until || audits < 3) {
    report.Clear();
    status = audit(&report);
    ++audits;
    if (!status.ok()) {
      ADD_FAILURE() << "audit " << audits << ": " << status.error_code()
                    << " " << status.error_message();
      break;
    }
    EXPECT_TRUE(report.ok()) << "audit " << audits << ": "
                             << report.violations_total() << " violations, "
                             << (report.violations_size() > 0
                                     ? report.violations(0).message()
                                     : "");
    EXPECT_GE(report.head_position(), audited_head);
    audited_head = report.head_position();
  }
  std::cout << audits << " audits beside the writers and compactions\n";
  stop = true;
  for (std::thread& t : writers) t.join();
  compactor.join();
  EXPECT_GT(written.load(), 0);
  EXPECT_GT(audited_head, head_before_writes) << "no audit saw the writes";

  // A store record changed under the live ledger is reported.
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(),
                      server_->ledger().log().projections_cf(), "s/after",
                      "garbage")
                  .ok());
  report.Clear();
  status = audit(&report);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_FALSE(report.ok());
  bool named = false;
  for (const v1::AuditViolation& violation : report.violations()) {
    named = named || (violation.check() == kCheckProjections &&
                      violation.key() == "s/after");
  }
  EXPECT_TRUE(named) << report.violations_total() << " violations, none of "
                        "the projections at s/after";
}

// ---- load and shutdown

struct Ack {
  std::string command_id;
  uint64_t first_position;
  uint64_t last_position;
};

// Every acknowledged ACCEPTED command is in the log at the positions it was
// given, and its outcome is stored.
void ExpectAcksInLog(const EventLog& log, const std::vector<Ack>& acks) {
  for (const Ack& ack : acks) {
    ASSERT_GT(ack.first_position, 0u) << ack.command_id;
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      absl::StatusOr<v1::Envelope> envelope = log.Read(p);
      ASSERT_TRUE(envelope.ok()) << ack.command_id << ": " << envelope.status();
      ASSERT_EQ(envelope->command_id(), ack.command_id) << "position " << p;
    }
    absl::StatusOr<std::optional<v1::StoredOutcome>> outcome =
        log.GetOutcome(ack.command_id);
    ASSERT_TRUE(outcome.ok() && outcome->has_value()) << ack.command_id;
  }
}

TEST_F(ServerTest, LoadEveryAcknowledgementIsInTheLog) {
  Start();
  std::mutex mu;
  std::vector<Ack> acks;
  std::atomic<int> failures{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int c = 0; c < kLoadClients; ++c) {
    clients.emplace_back([&, c] {
      // A fresh store every kLoadProductsPerStore commands: the cost of an
      // AddProduct grows with the products already in its store, and this
      // test is about the server, not about big stores.
      auto store_of = [c](int i) {
        return absl::StrCat("load", c, "-", i / kLoadProductsPerStore);
      };
      auto command_of = [&](int i) {
        const std::string store = store_of(i);
        return i % kLoadProductsPerStore == 0
                   ? OpenStoreCommand(absl::StrCat(store, "-open"), store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i));
      };
      std::vector<Ack> mine;
      auto keep = [&](const v1::CommandResult& r) {
        if (r.status() != v1::ACCEPTED) {
          ++failures;
          return;
        }
        mine.push_back({r.command_id(), r.first_position(), r.last_position()});
      };
      if (c % 2 == 0) {  // half unary, half on one ExecuteStream
        for (int i = 0; i < kLoadCommandsPerClient; ++i) {
          keep(Execute(command_of(i)));
        }
      } else {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        auto stream = stub_->ExecuteStream(&context);
        std::thread sender([&] {
          for (int i = 0; i < kLoadCommandsPerClient; ++i) {
            if (!stream->Write(command_of(i))) break;
          }
          stream->WritesDone();
        });
        v1::CommandResult result;
        int received = 0;
        while (stream->Read(&result)) {
          // Results in order: the i-th result is the i-th command's.
          if (result.command_id() != command_of(received).command_id()) {
            ++failures;
          }
          ++received;
          keep(result);
        }
        sender.join();
        grpc::Status status = stream->Finish();
        if (!status.ok() || received != kLoadCommandsPerClient) ++failures;
      }
      std::lock_guard<std::mutex> lock(mu);
      acks.insert(acks.end(), mine.begin(), mine.end());
    });
  }
  for (std::thread& t : clients) t.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(acks.size(), static_cast<size_t>(kLoadClients) * kLoadCommandsPerClient);
  std::cout << acks.size() << " commands from " << kLoadClients
            << " clients in " << seconds << " s ("
            << acks.size() / seconds << " commands/s)\n";
  const EventLog& log = server_->ledger().log();
  // One event per command, plus MerchantOnboarded for the first store of m1.
  EXPECT_EQ(log.head().position,
            static_cast<uint64_t>(kLoadClients) * kLoadCommandsPerClient + 1);
  std::set<uint64_t> seen;
  for (const Ack& ack : acks) {
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      EXPECT_TRUE(seen.insert(p).second) << "position " << p << " acked twice";
    }
  }
  ExpectAcksInLog(log, acks);
}

// ExecuteStream batches: a client that pipelines a few thousand commands on
// each of two streams gets every result, in its stream's order (rejections
// included: they are results, not errors), each at the positions the log
// holds; and the server executed them in batches of more than one command.
TEST_F(ServerTest, ExecuteStreamBatchesAndAnswersInOrder) {
  Start();
  constexpr int kStreams = 2;
  constexpr int kCommandsPerStream = 2500;
  // Every kDuplicateEvery-th command adds a product the store already has.
  constexpr int kDuplicateEvery = 250;
  auto command_of = [&](int stream, int i) {
    const std::string store =
        absl::StrCat("st", stream, "-", i / kLoadProductsPerStore);
    return StoreFillCommand(store, i % kLoadProductsPerStore,
                            i % kDuplicateEvery == 0 ? i - 1 : i);
  };
  std::vector<std::vector<v1::CommandResult>> results(kStreams);
  std::vector<grpc::Status> statuses(kStreams);
  std::vector<std::thread> clients;
  for (int c = 0; c < kStreams; ++c) {
    clients.emplace_back([&, c] {
      grpc::ClientContext context;
      Authorize(&context, kWriter);
      auto stream = stub_->ExecuteStream(&context);
      std::thread sender([&] {
        for (int i = 0; i < kCommandsPerStream; ++i) {
          if (!stream->Write(command_of(c, i))) break;
        }
        stream->WritesDone();
      });
      v1::CommandResult result;
      while (stream->Read(&result)) results[c].push_back(result);
      sender.join();
      statuses[c] = stream->Finish();
    });
  }
  for (std::thread& t : clients) t.join();

  std::vector<Ack> acks;
  for (int c = 0; c < kStreams; ++c) {
    ASSERT_TRUE(statuses[c].ok()) << statuses[c].error_message();
    ASSERT_EQ(results[c].size(), static_cast<size_t>(kCommandsPerStream));
    for (int i = 0; i < kCommandsPerStream; ++i) {
      const v1::CommandResult& r = results[c][i];
      ASSERT_EQ(r.command_id(), command_of(c, i).command_id())
          << "stream " << c << " result " << i << " out of order";
      const bool duplicate =
          i % kDuplicateEvery == 0 && i % kLoadProductsPerStore != 0;
      ASSERT_EQ(r.status(), duplicate ? v1::REJECTED : v1::ACCEPTED)
          << r.command_id() << ": " << r.message();
      if (r.status() == v1::ACCEPTED) {
        acks.push_back({r.command_id(), r.first_position(), r.last_position()});
      }
    }
  }
  const EventLog& log = server_->ledger().log();
  ExpectAcksInLog(log, acks);
  // Positions were handed out once each.
  std::set<uint64_t> seen;
  for (const Ack& ack : acks) {
    for (uint64_t p = ack.first_position; p <= ack.last_position; ++p) {
      ASSERT_TRUE(seen.insert(p).second) << "position " << p << " acked twice";
    }
  }
  const StreamBatchStats stats = server_->service().stream_batch_stats();
  EXPECT_EQ(stats.commands, static_cast<uint64_t>(kStreams) * kCommandsPerStream);
  EXPECT_LT(stats.batches, stats.commands) << "no batch of more than one";
  EXPECT_LE(stats.largest_batch_commands, kStreamBatchCommandsMax);
  std::cout << stats.commands << " commands in " << stats.batches
            << " batches (largest " << stats.largest_batch_commands << ")\n";
}

// A stream waiting for its client's next command when the server shuts down
// ends with UNAVAILABLE at once (not at the end of the grace period), after
// the results of everything it was sent.
TEST_F(ServerTest, ExecuteStreamEndsUnavailableOnShutdown) {
  Start();
  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  constexpr int kCommands = 20;
  for (int i = 0; i < kCommands; ++i) {
    ASSERT_TRUE(stream->Write(StoreFillCommand("sh", i, i)));
  }
  v1::CommandResult result;
  for (int i = 0; i < kCommands; ++i) {
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  const absl::Time start = absl::Now();
  constexpr absl::Duration kGrace = absl::Seconds(10);
  std::thread shutdown([&] { server_->Shutdown(kGrace); });
  EXPECT_FALSE(stream->Read(&result));
  grpc::Status status = stream->Finish();
  shutdown.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_LT(absl::Now() - start, kGrace / 2);
}

// A command that fails to execute (here: its WAL sync fails) ends the stream
// with the ledger's status, not a generic CANCELLED, even while the server
// is waiting for the client's next command; the commands after it get no
// result; everything before it was answered.
TEST_F(ServerTest, ExecuteStreamEndsWithTheStatusOfAFailedCommand) {
  fault_fs_ = std::make_unique<testing::FaultFileSystem>();
  testing::FaultFileSystem& fs = *fault_fs_;
  ServerOptions options = Options();
  options.ledger.env = fs.env();
  options.ledger.sync = true;  // the WAL sync is what fails
  Start(options);
  grpc::ClientContext context;
  Authorize(&context, kWriter);
  auto stream = stub_->ExecuteStream(&context);
  auto command = [](int i) { return StoreFillCommand("f", i, i); };
  constexpr int kBefore = 10;
  constexpr int kAfter = 5;
  for (int i = 0; i < kBefore; ++i) ASSERT_TRUE(stream->Write(command(i)));
  v1::CommandResult result;
  for (int i = 0; i < kBefore; ++i) {
    ASSERT_TRUE(stream->Read(&result));
    ASSERT_EQ(result.status(), v1::ACCEPTED) << result.message();
  }
  fs.InjectError(testing::FileKind::kWal, testing::FaultOp::kSync);
  // The server may end the call at the first of these, before the client
  // has sent the others: then their writes fail, which is fine.
  for (int i = kBefore; i < kBefore + kAfter; ++i) {
    if (!stream->Write(command(i))) break;
  }
  // No WritesDone: the server ends the call itself.
  EXPECT_FALSE(stream->Read(&result)) << "a result after the failure: "
                                      << result.DebugString();
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << status.error_message();
  EXPECT_GE(fs.injected_errors(), 1);
  // Nothing after the failure was written: the ledger refuses writes now.
  grpc::ClientContext unary;
  Authorize(&unary, kWriter);
  v1::CommandResult refused;
  EXPECT_EQ(stub_->Execute(&unary, command(kBefore + kAfter), &refused)
                .error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

// A client that cancels its stream in the middle: the server stops that
// stream (the commands it already took are executed, the rest dropped), goes
// on serving, and shuts down promptly; whatever it acknowledged is in the
// log.
TEST_F(ServerTest, ExecuteStreamSurvivesAClientThatCancels) {
  Start();
  constexpr int kCommands = 3000;
  std::vector<Ack> acks;
  {
    grpc::ClientContext context;
    Authorize(&context, kWriter);
    auto stream = stub_->ExecuteStream(&context);
    std::thread sender([&] {
      for (int i = 0; i < kCommands; ++i) {
        if (!stream->Write(StoreFillCommand("cx", i, i))) break;
      }
    });
    v1::CommandResult result;
    while (acks.size() < 100 && stream->Read(&result)) {
      acks.push_back(
          {result.command_id(), result.first_position(), result.last_position()});
    }
    context.TryCancel();
    while (stream->Read(&result)) {}
    sender.join();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  ASSERT_EQ(acks.size(), 100u);
  // Still serving, on a new stream.
  {
    grpc::ClientContext context;
    Authorize(&context, kWriter);
    auto stream = stub_->ExecuteStream(&context);
    ASSERT_TRUE(stream->Write(OpenStoreCommand("cy-open", "cy", "m1")));
    stream->WritesDone();
    v1::CommandResult result;
    ASSERT_TRUE(stream->Read(&result));
    EXPECT_EQ(result.status(), v1::ACCEPTED) << result.message();
    EXPECT_TRUE(stream->Finish().ok());
  }
  ExpectAcksInLog(server_->ledger().log(), acks);
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ServerTest, GracefulShutdownUnderLoadLosesNothingAcknowledged) {
  Start();
  std::mutex mu;
  std::vector<Ack> acks;
  std::atomic<int> refused{0};
  std::vector<std::thread> clients;
  constexpr int kClients = 8;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const std::string store = absl::StrCat("sd", c);
      for (int i = 0;; ++i) {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        v1::CommandResult result;
        const v1::Command command =
            i == 0 ? OpenStoreCommand(store, store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i));
        grpc::Status status = stub_->Execute(&context, command, &result);
        if (!status.ok()) {
          ++refused;
          return;  // UNAVAILABLE: shutting down; nothing acknowledged
        }
        std::lock_guard<std::mutex> lock(mu);
        acks.push_back(
            {result.command_id(), result.first_position(), result.last_position()});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const std::string db = dir_.Sub("db");
  server_->Shutdown(absl::Seconds(5));
  for (std::thread& t : clients) t.join();
  server_.reset();
  EXPECT_EQ(refused.load(), kClients);
  ASSERT_GT(acks.size(), 0u);
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ExpectAcksInLog((*ledger)->log(), acks);
  std::cout << acks.size() << " commands acknowledged before the shutdown\n";
}

// ---- the CLI as a client

TEST_F(ServerTest, CliThroughTheServerPrintsWhatEmbeddedModePrints) {
  Start();
  const std::string input = absl::StrCat(
      R"({"commandId":"c1","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})",
      "\n", "not json\n\n",
      R"({"commandId":"c2","occurredAt":"2024-06-02T10:00:00+08:00","addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})",
      "\n",
      R"({"commandId":"c3","occurredAt":"2024-06-02T11:00:00+08:00","addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100}})",
      "\n",
      R"({"commandId":"c1","occurredAt":"2024-06-01T10:00:00+08:00","openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"}})",
      "\n");
  const std::vector<std::string> remote = {"--server", server_->address()};
  auto with = [](std::vector<std::string> base, const char* token,
                 std::vector<std::string> rest) {
    base.push_back("--token");
    base.push_back(token);
    base.insert(base.end(), rest.begin(), rest.end());
    return base;
  };
  testing::CliRun remote_apply =
      RunStoreledger(with(remote, kWriter, {"apply"}), input);
  // The same input applied embedded to another database.
  testing::CliRun embedded_apply =
      RunStoreledger({"--db", dir_.Sub("embedded"), "apply"}, input);
  EXPECT_EQ(remote_apply.exit_code, 2) << remote_apply.err;  // one INVALID line
  EXPECT_EQ(remote_apply.exit_code, embedded_apply.exit_code);
  EXPECT_EQ(remote_apply.out, embedded_apply.out);
  EXPECT_THAT(remote_apply.out, HasSubstr(R"("line":"2",)"));
  EXPECT_THAT(remote_apply.out, HasSubstr(R"("replayed":true)"));

  // The read verbs, remote and embedded on the server's own database (a
  // read-only open beside the running server).
  const std::string db = dir_.Sub("db");
  const std::vector<std::vector<std::string>> reads = {
      {"state", "--store", "s1"},
      {"state", "--store", "s1", "--position", "2"},
      {"state", "--store", "s1", "--as-of", "2024-06-01T12:00:00+08:00"},
      {"history", "--store", "s1"},
      {"history", "--store", "s1", "--include-rejections"},
      {"history", "--store", "s1", "--include-rejections", "--limit", "2"},
      {"history", "--store", "nope"},
      {"digest"},
      {"tail", "--from-position", "0"},
      {"tail", "--from-position", "2"},
  };
  for (const auto& read : reads) {
    // A merchant for its own store; the log-wide verbs, and a store nobody
    // owns, need an auditor or investigator.
    const char* token = read[0] == "digest" || read[0] == "tail" ? kAuditor
                        : read[2] == "nope"                      ? kInvestigator
                                                                 : kMerchant1;
    std::vector<std::string> embedded_args = {"--db", db};
    embedded_args.insert(embedded_args.end(), read.begin(), read.end());
    testing::CliRun r = RunStoreledger(with(remote, token, read));
    testing::CliRun e = RunStoreledger(embedded_args);
    const std::string what = absl::StrJoin(read, " ");
    EXPECT_EQ(r.exit_code, e.exit_code) << what << "\n" << r.err;
    EXPECT_EQ(r.out, e.out) << what;
    EXPECT_EQ(r.err, e.err) << what;
    if (read[0] != "history" || read[2] != "nope") {
      EXPECT_FALSE(r.out.empty()) << what;
    }
  }
  // A merchant reading another merchant's store, a bad token.
  testing::CliRun denied = RunStoreledger(
      with(remote, kMerchant2, {"state", "--store", "s1"}));
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  testing::CliRun unauthenticated =
      RunStoreledger(with(remote, "nobody-token-000000000", {"digest"}));
  EXPECT_EQ(unauthenticated.exit_code, 1);
  EXPECT_THAT(unauthenticated.err, HasSubstr("UNAUTHENTICATED"));
  testing::CliRun unsupported =
      RunStoreledger(with(remote, kAuditor, {"rebuild"}));
  EXPECT_EQ(unsupported.exit_code, 2);
  EXPECT_THAT(unsupported.err, HasSubstr("does not work with --server"));
}

// `history` with every filter, remote against embedded on the server's own
// database: the same lines, errors and exit statuses. The store has facts
// and refusals about products, orders and a withdrawal over several days,
// and a store that was never opened has only a refusal.
// The server goes away while `apply` has results outstanding: the message
// names the first line whose result was not printed, one past the last
// printed (issue 12, item 8: it named the line after that).
TEST_F(ServerTest, CliApplyNamesTheFirstLineWithoutAResultWhenTheServerGoes) {
  Start();
  constexpr int kLines = 40000;
  std::string input;
  for (int i = 0; i < kLines; ++i) {
    absl::StrAppend(&input, ToJson(StoreFillCommand("s1", i, i)), "\n");
  }
  std::thread stopper([&] {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (server_->ledger().log().head().position < 2000 &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    server_->Shutdown(absl::ZeroDuration());
  });
  testing::CliRun run = RunStoreledger(
      {"--server", server_->address(), "--token", kWriter, "apply"}, input);
  stopper.join();
  ASSERT_NE(run.exit_code, 0) << "the server stopped after every line";
  const std::vector<std::string> lines = run.lines();
  int64_t printed = 0;
  for (const std::string& line : lines) {
    if (line.empty()) continue;
    ++printed;
    ASSERT_THAT(line, HasSubstr(absl::StrCat(R"("line":")", printed, R"(")")));
    ASSERT_THAT(line, HasSubstr(R"("status":"ACCEPTED")"));
  }
  ASSERT_LT(printed, kLines);
  EXPECT_THAT(run.err, HasSubstr(absl::StrCat("(results from line ",
                                              printed + 1,
                                              " on were not received)")));
}

TEST_F(ServerTest, CliHistoryFiltersPrintWhatEmbeddedModePrints) {
  Start();
  auto line = [](const std::string& id, const std::string& at,
                 const std::string& body) {
    return absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":"2024-06-)",
                        at, R"(:00+08:00",)", body, "}\n");
  };
  auto product = [](const std::string& store, const std::string& id) {
    return absl::StrCat(R"("addProduct":{"storeId":")", store,
                        R"(","productId":")", id,
                        R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})");
  };
  const std::string input = absl::StrCat(
      line("h1", "01T10:00", R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
      line("h2", "02T10:00", product("s1", "p1")),
      line("h3", "02T11:00", product("s1", "p2")),
      line("h4", "03T10:00", R"("listProduct":{"storeId":"s1","productId":"p1"})"),
      line("h5", "03T11:00", R"("listProduct":{"storeId":"s1","productId":"p2"})"),
      line("h6", "04T10:00", R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":2,"unitPriceFen":100}]})"),
      line("h7", "04T11:00", R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":150})"),
      line("h8", "04T12:00", R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":200})"),
      line("h9", "05T10:00", R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p2","quantity":1,"unitPriceFen":300}]})"),
      line("h10", "05T11:00", R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
      line("h11", "06T10:00", R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":20})"),
      line("h12", "07T10:00", R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":500})"),
      line("h13", "07T11:00", R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":100})"),
      line("h14", "08T10:00", R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"w1"})"),
      line("h15", "08T11:00", R"("listProduct":{"storeId":"s1","productId":"p9"})"),
      line("h16", "08T12:00", product("ghost", "g1")),
      line("h17", "09T10:00", R"("cancelOrder":{"storeId":"s1","orderId":"o2"})"));
  const std::vector<std::string> remote = {"--server", server_->address(),
                                           "--token", kInvestigator};
  testing::CliRun applied = RunStoreledger(
      {"--server", server_->address(), "--token", kWriter, "apply"}, input);
  ASSERT_EQ(applied.exit_code, 0) << applied.err;
  // h7 (wrong amount), h12 (too much), h15 (no such product), h16 (no store).
  size_t rejected = 0;
  for (const std::string& result : applied.lines()) {
    if (absl::StrContains(result, R"("status":"REJECTED")")) ++rejected;
  }
  ASSERT_EQ(rejected, 4u) << applied.out;

  const std::string db = dir_.Sub("db");
  auto run_both = [&](const std::vector<std::string>& args) {
    std::vector<std::string> remote_args = remote;
    remote_args.push_back("history");
    remote_args.insert(remote_args.end(), args.begin(), args.end());
    std::vector<std::string> embedded_args = {"--db", db, "history"};
    embedded_args.insert(embedded_args.end(), args.begin(), args.end());
    return std::make_pair(RunStoreledger(remote_args),
                          RunStoreledger(embedded_args));
  };
  const size_t everything =
      run_both({"--store", "s1", "--include-rejections"}).second.lines().size();
  ASSERT_GT(everything, 10u);

  struct Case {
    std::vector<std::string> args;
    // 0: prints nothing (or fails); 1: prints some, not all, of the history.
    bool some;
  };
  const std::vector<Case> cases = {
      {{"--store", "s1", "--order", "o1"}, true},
      {{"--store", "s1", "--order", "o1", "--include-rejections"}, true},
      {{"--store", "s1", "--order", "nope"}, false},
      {{"--store", "s1", "--product", "p1"}, true},
      {{"--store", "s1", "--product", "p9", "--include-rejections"}, true},
      {{"--store", "s1", "--withdrawal", "w1"}, true},
      {{"--store", "s1", "--withdrawal", "w1", "--include-rejections"}, true},
      {{"--store", "s1", "--type", "OrderPaid,OrderPlaced"}, true},
      {{"--store", "s1", "--type", "ProductListed", "--include-rejections"},
       true},
      {{"--store", "s1", "--from", "2024-06-04T00:00:00+08:00"}, true},
      {{"--store", "s1", "--to", "2024-06-03T23:59:59+08:00",
        "--include-rejections"},
       true},
      {{"--store", "s1", "--from", "2024-06-04T11:00:00+08:00", "--to",
        "2024-06-07T10:00:00+08:00", "--include-rejections"},
       true},
      {{"--store", "s1", "--from-position", "5", "--limit", "3",
        "--include-rejections"},
       true},
      {{"--store", "s1", "--order", "o1", "--type", "OrderPaid",
        "--include-rejections", "--limit", "1"},
       true},
      {{"--store", "s1", "--include-rejections", "--limit", "0"}, false},
      {{"--store", "ghost", "--include-rejections"}, true},
      {{"--store", "ghost", "--include-rejections", "--product", "zz"}, false},
      {{"--store", "ghost", "--include-rejections", "--limit", "0"}, false},
      {{"--store", "ghost"}, false},
      {{"--store", "s1", "--type", "Bogus"}, false},
      {{"--store", "s1", "--from", "2024-06-05T00:00:00+08:00", "--to",
        "2024-06-04T00:00:00+08:00"},
       false},
  };
  for (const Case& c : cases) {
    const auto [r, e] = run_both(c.args);
    const std::string what = absl::StrJoin(c.args, " ");
    EXPECT_EQ(r.exit_code, e.exit_code) << what << "\n" << r.err;
    EXPECT_EQ(r.out, e.out) << what;
    EXPECT_EQ(r.err, e.err) << what;
    if (c.some) {
      EXPECT_FALSE(r.out.empty()) << what;
      EXPECT_LT(r.lines().size(), everything) << what;
    } else {
      EXPECT_TRUE(r.out.empty()) << what;
    }
  }
  // The filters select what they name: o1's refusal is there, o2 is not.
  const testing::CliRun o1 =
      run_both({"--store", "s1", "--order", "o1", "--include-rejections"})
          .first;
  EXPECT_THAT(o1.out, HasSubstr(R"("commandId":"h7")"));
  EXPECT_THAT(o1.out, ::testing::Not(HasSubstr(R"("orderId":"o2")")));
  // The store that was never opened: NOT_FOUND once its refusal is filtered
  // out, in both modes (checked above); with it, the refusal.
  const testing::CliRun ghost =
      run_both({"--store", "ghost", "--include-rejections"}).first;
  EXPECT_EQ(ghost.lines().size(), 1u) << ghost.out;
  const testing::CliRun ghost_none =
      run_both({"--store", "ghost", "--include-rejections", "--product", "zz"})
          .first;
  EXPECT_EQ(ghost_none.exit_code, 1);
  EXPECT_THAT(ghost_none.err, HasSubstr("NOT_FOUND"));
}

// ---- the daemon binary

// Starts storeledgerd with `args`; returns its pid and the first line it
// prints (read from a pipe).
struct Child {
  pid_t pid = -1;
  std::string first_line;
  std::string err_path;
};

Child Spawn(const std::vector<std::string>& args, const std::string& err_path) {
  int out_pipe[2];
  EXPECT_EQ(pipe(out_pipe), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> argv_strings = {STORELEDGERD_BIN};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  Child child;
  child.err_path = err_path;
  EXPECT_EQ(posix_spawn(&child.pid, STORELEDGERD_BIN, &actions, nullptr,
                        argv.data(), environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);
  char c;
  while (read(out_pipe[0], &c, 1) == 1 && c != '\n') child.first_line += c;
  close(out_pipe[0]);
  return child;
}

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

TEST_F(ServerTest, DaemonExitsZeroOnSigtermAndKeepsEveryAck) {
  const std::string tokens = dir_.Sub("tokens");
  {
    std::ofstream file(tokens);
    file << kTokenFile;
  }
  chmod(tokens.c_str(), 0644);
  const std::string db = dir_.Sub("db");
  // Refused: a token file others can read.
  Child refused = Spawn({"--db", db, "--listen", "127.0.0.1:0", "--tokens",
                         tokens},
                        dir_.Sub("refused.err"));
  EXPECT_EQ(WaitExit(refused.pid), 1);
  EXPECT_THAT(Slurp(refused.err_path), HasSubstr("chmod 600"));
  chmod(tokens.c_str(), 0600);

  Child child = Spawn({"--db", db, "--listen", "127.0.0.1:0", "--tokens", tokens,
                       "--shutdown-grace-ms", "5000"},
                      dir_.Sub("daemon.err"));
  ASSERT_THAT(child.first_line, HasSubstr("listening on 127.0.0.1:"))
      << Slurp(child.err_path);
  // "storeledgerd: listening on 127.0.0.1:PORT (plaintext, loopback) ..."
  const std::vector<std::string> words = absl::StrSplit(child.first_line, ' ');
  ASSERT_GE(words.size(), 4u);
  const std::string address = words[3];
  auto stub = v1::Ledger::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::mutex mu;
  std::vector<Ack> acks;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      const std::string store = absl::StrCat("d", c);
      for (int i = 0;; ++i) {
        grpc::ClientContext context;
        Authorize(&context, kWriter);
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
        v1::CommandResult result;
        grpc::Status status = stub->Execute(
            &context,
            i == 0 ? OpenStoreCommand(store, store, "m1")
                   : AddProductCommand(absl::StrCat(store, "-", i), store,
                                       absl::StrCat("p", i)),
            &result);
        if (!status.ok()) return;
        std::lock_guard<std::mutex> lock(mu);
        acks.push_back(
            {result.command_id(), result.first_position(), result.last_position()});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  kill(child.pid, SIGTERM);
  EXPECT_EQ(WaitExit(child.pid), 0) << Slurp(child.err_path);
  for (std::thread& t : clients) t.join();
  ASSERT_GT(acks.size(), 0u);
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  ExpectAcksInLog((*ledger)->log(), acks);
}

// A --tls-ca file that holds no certificate is named in one line before any
// connection (issue 12, item 9: gRPC said "empty address list" when it
// connected, and logged four lines of its own); storeledgerd's TLS start-up
// errors exit 1, as docs/server.md says of every start-up error.
TEST_F(ServerTest, BadTlsFilesAreOneLineErrorsWithTheDocumentedExitStatus) {
  Start();
  const std::string garbage = dir_.Sub("garbage.pem");
  const std::string key = dir_.Sub("key.pem");
  {
    std::ofstream(garbage) << "this is not a certificate\n";
    std::ofstream(key) << "-----BEGIN PRIVATE KEY-----\n"
                          "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
                          "-----END PRIVATE KEY-----\n";
  }
  for (const std::string& ca : {garbage, key}) {
    for (const std::vector<std::string>& verb :
         std::vector<std::vector<std::string>>{
             {"digest"}, {"state", "--store", "s1"}, {"apply"}}) {
      std::vector<std::string> args = {"--server", server_->address(),
                                       "--token", kAuditor, "--tls-ca", ca};
      args.insert(args.end(), verb.begin(), verb.end());
      testing::CliRun run = RunStoreledger(args, "");
      SCOPED_TRACE(absl::StrJoin(args, " "));
      EXPECT_EQ(run.exit_code, 2);
      EXPECT_THAT(run.err, HasSubstr(absl::StrCat("--tls-ca ", ca,
                                                  ": not a PEM certificate")));
      EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
      EXPECT_THAT(run.err, ::testing::Not(HasSubstr("UNAVAILABLE")));
    }
  }

  const std::string tokens = dir_.Sub("tokens");
  {
    std::ofstream file(tokens);
    file << kTokenFile;
  }
  chmod(tokens.c_str(), 0600);
  for (const std::string& cert : {garbage, key}) {
    Child daemon = Spawn({"--db", dir_.Sub("tls-db"), "--listen", "127.0.0.1:0",
                          "--tokens", tokens, "--tls-cert", cert, "--tls-key",
                          key},
                         dir_.Sub("tls.err"));
    EXPECT_EQ(WaitExit(daemon.pid), 1);
    const std::string err = Slurp(daemon.err_path);
    EXPECT_THAT(err, HasSubstr(absl::StrCat("--tls-cert ", cert,
                                            ": not a PEM certificate")));
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
}

// ---- the Node example (examples/node), when node is installed

TEST_F(ServerTest, NodeExampleClientRunsAgainstTheServer) {
  const std::string example =
      absl::StrCat(STORELEDGER_SOURCE_DIR, "/examples/node");
  if (std::system("command -v node >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "node is not installed";
  }
  if (!std::filesystem::exists(example + "/node_modules/@grpc/grpc-js")) {
    const bool can_install =
        std::filesystem::exists(example + "/package-lock.json") &&
        std::system("command -v npm >/dev/null 2>&1") == 0 &&
        std::system(absl::StrCat("npm ci --silent --no-audit --no-fund --prefix ",
                                 example, " >/dev/null 2>&1")
                        .c_str()) == 0;
    if (!can_install) {
      GTEST_SKIP() << "examples/node/node_modules is missing and `npm ci "
                      "--prefix examples/node` did not work (offline?)";
    }
  }
  Start();
  const std::string out = dir_.Sub("node.out");
  const std::string command = absl::StrCat(
      "node ", example, "/client.js --server ", server_->address(),
      " --token ", kWriter, " --subscribe-token ", kAuditor,
      " --store node-s1 > ", out, " 2>&1");
  const int rc = std::system(command.c_str());
  const std::string text = Slurp(out);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("ACCEPTED"));
  EXPECT_THAT(text, HasSubstr("subscribed: position 1 "));
  // The commands it executed are in the log.
  absl::StatusOr<v1::StoreState> state = server_->ledger().State("node-s1");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->products_size(), 2);
}

// ---- proofs (issue 19)

TEST_F(ServerTest, SignsCheckpointsAndServesProofsThatVerify) {
  ServerOptions options = Options();
  absl::StatusOr<SigningKey> key = GenerateSigningKey("test.example/ledger");
  ASSERT_TRUE(key.ok()) << key.status();
  CheckpointSignerOptions signer;
  signer.key = *key;
  signer.every_events = 3;
  signer.every = absl::Hours(1);
  options.checkpoints = signer;
  Start(std::move(options));
  // The signer polls every kSignerPollInterval; wait for it (bounded) to
  // sign at least `size`.
  v1::SignedCheckpoint checkpoint;
  auto await_checkpoint = [&](uint64_t size) {
    for (int attempt = 0; attempt < 100 && checkpoint.tree_size() < size;
         ++attempt) {
      grpc::ClientContext context;
      Authorize(&context, kAuditor);
      grpc::Status status = stub_->GetCheckpoint(
          &context, v1::GetCheckpointRequest(), &checkpoint);
      if (!status.ok()) {
        ASSERT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
      }
      absl::SleepFor(kSignerPollInterval);
    }
  };
  int opened = 0;
  auto open_store = [&] {
    const std::string id = absl::StrCat("s", opened++);
    ASSERT_EQ(Execute(OpenStoreCommand(id, id, "m1")).status(), v1::ACCEPTED);
  };
  // The first tick signs whatever is there, however much the signer saw.
  open_store();
  await_checkpoint(1);
  const uint64_t first = checkpoint.tree_size();
  ASSERT_GE(first, 1u);
  // Then it signs once every_events more were appended, not before.
  while (server_->ledger().log().head().position < first + 3) open_store();
  const uint64_t head = server_->ledger().log().head().position;
  ASSERT_EQ(head, first + 3);
  await_checkpoint(head);
  ASSERT_EQ(checkpoint.tree_size(), head);
  absl::StatusOr<Checkpoint> trusted =
      VerifyCheckpoint(checkpoint.note(), key->verifier);
  ASSERT_TRUE(trusted.ok()) << trusted.status();

  grpc::ClientContext inclusion_context;
  Authorize(&inclusion_context, kInvestigator);
  v1::GetInclusionProofRequest inclusion_request;
  inclusion_request.set_position(2);
  v1::InclusionProof inclusion;
  ASSERT_TRUE(stub_->GetInclusionProof(&inclusion_context, inclusion_request,
                                       &inclusion).ok());
  EXPECT_EQ(inclusion.tree_size(), head);
  EXPECT_EQ(inclusion.checkpoint().note(), checkpoint.note());
  const std::vector<std::string> path(inclusion.audit_path().begin(),
                                      inclusion.audit_path().end());
  EXPECT_TRUE(merkle::VerifyInclusion(1, head, merkle::LeafHash(inclusion.envelope()),
                                      path, trusted->root).ok());

  grpc::ClientContext consistency_context;
  Authorize(&consistency_context, kAuditor);
  v1::GetConsistencyProofRequest consistency_request;
  consistency_request.set_first_size(1);
  v1::ConsistencyProof consistency;
  ASSERT_TRUE(stub_->GetConsistencyProof(&consistency_context,
                                         consistency_request, &consistency).ok());
  const std::vector<std::string> hashes(consistency.path().begin(),
                                        consistency.path().end());
  EXPECT_TRUE(merkle::VerifyConsistency(1, head, consistency.first_root(),
                                        trusted->root, hashes).ok());

  // A merchant may not ask; a position past the tree is a bad argument.
  grpc::ClientContext merchant_context;
  Authorize(&merchant_context, kMerchant1);
  v1::InclusionProof ignored;
  EXPECT_EQ(stub_->GetInclusionProof(&merchant_context, inclusion_request,
                                     &ignored).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext past_context;
  Authorize(&past_context, kAuditor);
  inclusion_request.set_position(head + 1);
  EXPECT_EQ(stub_->GetInclusionProof(&past_context, inclusion_request, &ignored)
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace storeledger
