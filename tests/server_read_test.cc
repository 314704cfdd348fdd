// storeledgerd's read side: GetStore's as_of bounds, the health and
// reflection services a client discovers it with, and Audit over the live
// ledger while writers append and RocksDB compacts.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <future>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/audit.h"
#include "rocksdb/db.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kLoadProductsPerStore;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::ServerTest;
using ::storeledger::testing::StoreFillCommand;
using ::testing::HasSubstr;

// GetStore's as_of is a time the ledger holds, as --as-of is: a time
// outside 0001..9999 is a bad argument, not an empty or wrong answer.
TEST_F(ServerTest, GetStoreRefusesAnAsOfOutsideTheLedgersTimes) {
  Start();
  ASSERT_EQ(Execute(OpenStoreCommand("o1", "s1", "m1")).status(), v1::ACCEPTED);
  for (const int64_t seconds :
       {kTimeSecondsMin - 1, kTimeSecondsMax + 1, int64_t{-100'000'000'000}}) {
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

// grpc.health.v1.Health answers SERVING, for the whole server and for the
// service, without a token. (Called generically: the health protos are not
// among Debian's headers. HealthCheckRequest{service} is field 1, a string;
// HealthCheckResponse{status} is field 1, an enum, SERVING = 1.)
TEST_F(ServerTest, HealthCheckSaysServing) {
  Start();
  grpc::GenericStub generic(channel_);
  // Health/Check(service) -> the call's status and the response's bytes.
  auto check = [&](const std::string& service) {
    std::string request_bytes;
    if (!service.empty()) {
      request_bytes = absl::StrCat(
          std::string(1, '\x0a'),
          std::string(1, static_cast<char>(service.size())), service);
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
  file->GetReflection()->SetString(file.get(),
                                   field(*file, "file_containing_symbol"),
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
  ASSERT_TRUE(
      r->HasField(*response, field(*response, "list_services_response")))
      << response->DebugString();
  const google::protobuf::Message& services =
      r->GetMessage(*response, field(*response, "list_services_response"));
  const google::protobuf::FieldDescriptor* service_field =
      field(services, "service");
  std::set<std::string> names;
  for (int i = 0;
       i < services.GetReflection()->FieldSize(services, service_field); ++i) {
    const google::protobuf::Message& service =
        services.GetReflection()->GetRepeatedMessage(services, service_field,
                                                     i);
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

// Audit over gRPC reads the live ledger. The reproduction (a
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
  std::thread compactor(
      [&] { testing::CompactUntil(server_->ledger().log(), stop); });
  int audits = 0;
  const absl::Time until = absl::Now() + absl::Seconds(4);
  while (absl::Now() < until || audits < 3) {
    report.Clear();
    status = audit(&report);
    ++audits;
    if (!status.ok()) {
      ADD_FAILURE() << "audit " << audits << ": " << status.error_code() << " "
                    << status.error_message();
      break;
    }
    EXPECT_TRUE(report.ok())
        << "audit " << audits << ": " << report.violations_total()
        << " violations, "
        << (report.violations_size() > 0 ? report.violations(0).message() : "");
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
  EXPECT_TRUE(named) << report.violations_total()
                     << " violations, none of "
                        "the projections at s/after";
}

}  // namespace
}  // namespace storeledger
