// storeledgerd's start-up: the refusals (a public address without TLS, a
// port or database in use, a database that is not a ledger, bad
// certificates) and serving TLS with a good certificate.
#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/address.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "storeledger/v1/service.grpc.pb.h"
#include "tests/support/server_fixture.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::kAuditor;
using ::storeledger::testing::kWriter;
using ::storeledger::testing::OpenStoreCommand;
using ::storeledger::testing::ServerTest;
using ::testing::HasSubstr;

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
  // A bad address is named with the flag it came from (the console's
  // --http, not --listen), whatever is wrong with it.
  ServerOptions console = Options();
  for (const char* bad : {"nowhere", ":7450", "127.0.0.1:", "127.0.0.1:65536",
                          "127.0.0.1:-1", "::1:7450"}) {
    console.http_listen = bad;
    server = LedgerServer::Start(console);
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_THAT(
        server.status().message(),
        HasSubstr(absl::StrCat("--http ", bad, ": expected HOST:PORT")));
  }
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
  EXPECT_THAT(second.status().message(),
              HasSubstr("in use by another process"));
}

// storeledgerd refuses a database that is not a ledger rather than add its
// column families to it.
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
  plain_context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  Authorize(&plain_context, kAuditor);
  v1::Digest digest;
  EXPECT_FALSE(
      plain->Digest(&plain_context, v1::DigestRequest(), &digest).ok());
}

}  // namespace
}  // namespace storeledger
