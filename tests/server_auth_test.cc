// Who may call what on storeledgerd, and what a merchant may learn: the
// role matrix over every RPC, merchant-scoped reads that name nothing of
// another merchant's stores, a foreign store answered as a missing one,
// and the token table's refusals.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/policy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "replay/projection_store.h"
#include "rocksdb/db.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::AddProductCommand;
using ::storeledger::testing::China;
using ::storeledger::testing::ChinaText;
using ::storeledger::testing::CommandFromJson;
using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kInvestigator;
using ::storeledger::testing::kMerchant1;
using ::storeledger::testing::kMerchant2;
using ::storeledger::testing::kTokenFile;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::ServerTest;
using ::testing::HasSubstr;

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
    while (stream->Read(&result)) {
    }
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
      while (reader->Read(&envelope)) {
      }
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
    while (reader->Read(&envelope)) {
    }
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
      {"writer",
       kWriter,
       {{"Execute", kOk},
        {"ExecuteStream", kOk},
        {"GetStore(s1)", kDenied},
        {"GetStore(s2)", kDenied},
        {"GetStore(nope)", kDenied},
        {"ReadStream(s1)", kDenied},
        {"ReadStream(s2)", kDenied},
        {"Subscribe", kDenied},
        {"Digest", kDenied},
        {"Audit", kDenied}}},
      {"auditor",
       kAuditor,
       {{"Execute", kDenied},
        {"ExecuteStream", kDenied},
        {"GetStore(s1)", kOk},
        {"GetStore(s2)", kOk},
        {"GetStore(nope)", kNotFound},
        {"ReadStream(s1)", kOk},
        {"ReadStream(s2)", kOk},
        {"Subscribe", kOk},
        {"Digest", kOk},
        {"Audit", kOk}}},
      {"investigator",
       kInvestigator,
       {{"Execute", kDenied},
        {"ExecuteStream", kDenied},
        {"GetStore(s1)", kOk},
        {"GetStore(s2)", kOk},
        {"GetStore(nope)", kNotFound},
        {"ReadStream(s1)", kOk},
        {"ReadStream(s2)", kOk},
        {"Subscribe", kOk},
        {"Digest", kOk},
        {"Audit", kDenied}}},
      {"merchant:m1",
       kMerchant1,
       {{"Execute", kDenied},
        {"ExecuteStream", kDenied},
        {"GetStore(s1)", kOk},
        {"GetStore(s2)", kDenied},
        {"GetStore(nope)", kDenied},
        {"ReadStream(s1)", kOk},
        {"ReadStream(s2)", kDenied},
        {"Subscribe", kDenied},
        {"Digest", kDenied},
        {"Audit", kDenied}}},
      {"merchant:m2",
       kMerchant2,
       {{"Execute", kDenied},
        {"ExecuteStream", kDenied},
        {"GetStore(s1)", kDenied},
        {"GetStore(s2)", kOk},
        {"GetStore(nope)", kDenied},
        {"ReadStream(s1)", kDenied},
        {"ReadStream(s2)", kOk},
        {"Subscribe", kDenied},
        {"Digest", kDenied},
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
    EXPECT_EQ(
        stub_->Digest(&context, v1::DigestRequest(), &digest).error_code(),
        kUnauth);
  }
  // Denied and unauthenticated commands wrote nothing: the head is the two
  // stores (store + merchant events each) plus the writer's one Execute
  // (store + merchant m9) and one ExecuteStream (store only: m9 exists).
  EXPECT_EQ(server_->ledger().log().head().position, 2u + 2 + 2 + 1);
}

// ---- what a merchant may learn

// A command in the fixture's JSON at 2024-06-DD 10:00 China time.
v1::Command At(int day, const std::string& id, const std::string& body) {
  return CommandFromJson(
      absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":")",
                   ChinaText(China(6, day, 10)), R"(",)", body, "}"));
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
// merchant or their orders and withdrawals: merchants compete, and one
// must not learn another's business through the errors it gets.
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
      At(5, "x-pay-2",
         R"("payOrder":{"storeId":"s2","orderId":"o2","amountFen":100})"),
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
      At(9, "x-r9",
         R"("syncProducts":{"sourceStoreId":"s2","targetStoreId":"s1"})"),
      At(9, "x-r8",
         R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"s2"})"),
      At(9, "x-r13-order",
         R"("payOrder":{"storeId":"s1","orderId":"o2","amountFen":100})"),
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

  // The other read RPCs a merchant may call, on its own store (or its
  // commands): what they answer, as JSON.
  auto explain = [&](const char* token, const std::string& command_id) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::ExplainRequest request;
    request.set_command_id(command_id);
    v1::Explanation explanation;
    ReadAnswer answer;
    answer.status = stub_->Explain(&context, request, &explanation);
    for (v1::Envelope& envelope : *explanation.mutable_events()) {
      envelope.clear_hash();
      envelope.clear_prev_hash();
    }
    answer.text = ToJson(explanation);
    return answer;
  };
  auto statement = [&](const char* token, const std::string& store) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::GetStatementRequest request;
    request.set_store_id(store);
    *request.mutable_from() = ToProto(China(6, 1));
    *request.mutable_to() = ToProto(China(7, 1));
    v1::Statements statements;
    ReadAnswer answer;
    answer.status = stub_->GetStatement(&context, request, &statements);
    answer.text = ToJson(statements);
    return answer;
  };
  auto postings = [&](const char* token, const std::string& store) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::ListPostingsRequest request;
    request.set_store_id(store);
    auto reader = stub_->ListPostings(&context, request);
    ReadAnswer answer;
    v1::PostingLine line;
    while (reader->Read(&line)) absl::StrAppend(&answer.text, ToJson(line));
    answer.status = reader->Finish();
    return answer;
  };
  auto position_at = [&](const char* token) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::PositionAtRequest request;
    *request.mutable_at() = ToProto(China(6, 9));
    v1::PositionAt position;
    ReadAnswer answer;
    answer.status = stub_->PositionAt(&context, request, &position);
    answer.text = ToJson(position);
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
    answers.push_back(statement(m.token, m.own));
    answers.push_back(postings(m.token, m.own));
    answers.push_back(position_at(m.token));
    for (const ReadAnswer& answer : answers) {
      ASSERT_TRUE(answer.status.ok()) << answer.status.error_message();
      for (const std::string& token : Tokens(answer.text)) {
        EXPECT_FALSE(m.foreign.count(token)) << "names " << token << " in\n"
                                             << answer.text;
      }
    }
    // Explain of every command, accepted or refused: refused to the
    // merchant (PERMISSION_DENIED) or an answer naming nothing foreign; a
    // command naming only its own things is explained.
    int explained = 0;
    for (const std::vector<v1::Command>* commands : {&setup, &refused}) {
      for (const v1::Command& command : *commands) {
        const ReadAnswer answer = explain(m.token, command.command_id());
        if (answer.status.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
          continue;
        }
        ASSERT_TRUE(answer.status.ok())
            << command.command_id() << ": " << answer.status.error_message();
        ++explained;
        for (const std::string& token : Tokens(answer.text)) {
          EXPECT_FALSE(m.foreign.count(token))
              << "explain " << command.command_id() << " names " << token
              << " in\n"
              << answer.text;
        }
      }
    }
    EXPECT_GT(explained, 0);
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
    EXPECT_EQ(
        stub_->Audit(&audit_context, v1::AuditRequest(), &report).error_code(),
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
// nothing (GetStore used to load it before denying, ~100 us
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
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::Options(), db, &families)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
    for (const std::string& family : families) {
      descriptors.emplace_back(family, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::Options(), db, descriptors, &handles, &raw)
            .ok());
    std::unique_ptr<rocksdb::DB> rocks(raw);
    const auto projections =
        std::find(families.begin(), families.end(), "projections");
    ASSERT_NE(projections, families.end());
    ASSERT_TRUE(rocks
                    ->Put(rocksdb::WriteOptions(),
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
             [&](const std::string& store) {
               return get_store(store, variant);
             },
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
  EXPECT_THAT(
      TokenTable::Parse("a-long-enough-token-0000 admin").status().message(),
      HasSubstr("unknown role 'admin'"));
  EXPECT_THAT(TokenTable::Parse("a-long-enough-token-0000 merchant:")
                  .status()
                  .message(),
              HasSubstr("unknown role"));
  EXPECT_THAT(TokenTable::Parse("a-long-enough-token-0000 writer\n"
                                "a-long-enough-token-0000 auditor\n")
                  .status()
                  .message(),
              HasSubstr("line 2: token given twice"));
}

}  // namespace
}  // namespace storeledger
