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
#include "ledger/json.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
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
TEST_F(ServerTest, HealthCheckSaysServing) {
  Start();
  grpc::GenericStub generic(channel_);
  for (const std::string service : {"", "storeledger.v1.Ledger"}) {
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
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string bytes;
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    EXPECT_EQ(bytes, std::string("\x08\x01", 2)) << service;
  }
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

TEST_F(ServerTest, SlowSubscriberIsCutOffAndResumesWithoutGaps) {
  ServerOptions options = Options();
  options.subscriber_buffer_events = 16;
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
      RunStoreledger(with(remote, kAuditor, {"audit"}));
  EXPECT_EQ(unsupported.exit_code, 2);
  EXPECT_THAT(unsupported.err, HasSubstr("does not work with --server"));
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

}  // namespace
}  // namespace storeledger
