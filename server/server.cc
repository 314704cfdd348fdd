#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/address.h"
#include "base/status_macros.h"

namespace storeledger {
namespace {

absl::StatusOr<std::string> ReadFile(absl::string_view flag,
                                     const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read the file"));
  }
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "not PEM";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return buffer;
}

// gRPC only says "failed to bind" for bad certificates; OpenSSL says why.
absl::Status CheckCertificates(const std::string& cert_path,
                               const std::string& cert_pem,
                               const std::string& key_path,
                               const std::string& key_pem) {
  ERR_clear_error();
  BIO* cert_bio =
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("--tls-cert ", cert_path,
                                                   ": not a PEM certificate (",
                                                   OpenSslError(), ")"));
  }
  BIO* key_bio =
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  absl::Status status;
  if (key == nullptr) {
    status = absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_path, ": not a PEM private key (",
                     OpenSslError(), ")"));
  } else if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    status = absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", key_path,
                     " does not belong to the certificate in ", cert_path));
  } else if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "--tls-cert ", cert_path, ": the certificate has expired"));
  }
  EVP_PKEY_free(key);
  X509_free(cert);
  return status;
}

// Why the port could not be bound, from a bind() of our own.
std::string BindProblem(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[')
    bare = bare.substr(1, bare.size() - 2);
  if (int rc = getaddrinfo(bare.c_str(), port_text.c_str(), &hints, &found);
      rc != 0) {
    return absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc));
  }
  std::string problem = "gRPC could not bind it";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) {
      const int error = errno;
      problem = error == EADDRINUSE
                    ? "the port is already in use (another storeledgerd?)"
                    : std::string(strerror(error));
    }
    close(fd);
  }
  freeaddrinfo(found);
  return problem;
}

}  // namespace

absl::Status CheckExposure(absl::string_view flag, absl::string_view listen,
                           absl::string_view host, bool tls, bool tokens) {
  if (IsLoopbackHost(host)) return absl::OkStatus();
  if (!tls) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, " ", listen,
        " is not a loopback address: refusing to serve it without TLS "
        "(give --tls-cert and --tls-key)"));
  }
  if (!tokens) {
    return absl::FailedPreconditionError(absl::StrCat(
        flag, " ", listen,
        " is not a loopback address: refusing to serve it without --tokens"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LedgerServer>> LedgerServer::Start(
    ServerOptions options) {
  std::unique_ptr<LedgerServer> server(new LedgerServer());
  ASSIGN_OR_RETURN(auto host_port, SplitHostPort("--listen", options.listen));
  server->host_ = host_port.first;
  const bool has_cert = !options.tls_cert_file.empty();
  const bool has_key = !options.tls_key_file.empty();
  if (has_cert != has_key) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together: give both or neither");
  }
  server->tls_ = has_cert;
  const bool has_tokens =
      options.tokens.has_value() || !options.tokens_file.empty();
  RETURN_IF_ERROR(CheckExposure("--listen", options.listen, server->host_,
                                server->tls_, has_tokens));
  if (!options.http_listen.empty()) {
    ASSIGN_OR_RETURN(auto http_host_port,
                     SplitHostPort("--http", options.http_listen));
    RETURN_IF_ERROR(CheckExposure("--http", options.http_listen,
                                  http_host_port.first, server->tls_,
                                  has_tokens));
  }
  if (options.tokens.has_value()) {
    server->tokens_ = std::make_unique<TokenTable>(*std::move(options.tokens));
  } else if (!options.tokens_file.empty()) {
    ASSIGN_OR_RETURN(TokenTable table, TokenTable::Load(options.tokens_file));
    server->tokens_ = std::make_unique<TokenTable>(std::move(table));
  }

  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::InsecureServerCredentials();
  if (server->tls_) {
    ASSIGN_OR_RETURN(std::string cert,
                     ReadFile("--tls-cert", options.tls_cert_file));
    ASSIGN_OR_RETURN(std::string key,
                     ReadFile("--tls-key", options.tls_key_file));
    RETURN_IF_ERROR(CheckCertificates(options.tls_cert_file, cert,
                                      options.tls_key_file, key));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({key, cert});
    credentials = grpc::SslServerCredentials(ssl);
  }

  // The database last among the checks, first among the resources: a locked
  // database is kFailedPrecondition naming the directory.
  server->metrics_ = std::make_unique<ServerMetrics>();
  options.ledger.observer = server->metrics_.get();
  ASSIGN_OR_RETURN(server->ledger_,
                   Ledger::Open(options.db_dir, options.ledger));

  if (options.checkpoints.has_value()) {
    server->signer_ = std::make_unique<CheckpointSigner>(
        server->ledger_->mutable_log(), *std::move(options.checkpoints));
  }

  ServiceOptions service_options;
  service_options.ledger = server->ledger_.get();
  service_options.tokens = server->tokens_.get();
  service_options.subscriber_buffer_events = options.subscriber_buffer_events;
  service_options.metrics = server->metrics_.get();
  service_options.subscriber_drain_timeout = options.subscriber_drain_timeout;
  service_options.write_gate = options.write_gate;
  service_options.router = options.router;
  service_options.backup_dir = options.backup_dir;
  server->service_ =
      std::make_unique<LedgerService>(std::move(service_options));

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // gRPC sets SO_REUSEPORT by default, which would let a second server bind
  // the same port silently; a port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kReceiveMessageBytesMax);
  builder.AddListeningPort(options.listen, credentials, &server->port_);
  builder.RegisterService(server->service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    server->server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen, ": ",
                     BindProblem(server->host_, host_port.second)));
  }
  if (!options.http_listen.empty()) {
    HttpConsoleOptions http;
    http.listen = options.http_listen;
    http.tls_cert_file = options.tls_cert_file;
    http.tls_key_file = options.tls_key_file;
    http.ledger = server->ledger_.get();
    http.tokens = server->tokens_.get();
    http.metrics = server->metrics_.get();
    if (options.router != nullptr) {
      http.partition = options.router->partition();
      http.partitions = options.router->partitions();
    }
    const LedgerService* service = server->service_.get();
    http.gauges = [service, replication = options.replication_gauges] {
      MetricsGauges gauges = service->Gauges();
      if (replication) gauges.replication = replication();
      return gauges;
    };
    ASSIGN_OR_RETURN(server->http_, HttpConsole::Start(std::move(http)));
  }
  if (grpc::HealthCheckServiceInterface* health =
          server->server_->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus("storeledger.v1.Ledger", true);
  }
  return server;
}

std::string LedgerServer::address() const {
  return absl::StrCat(host_, ":", port_);
}

void LedgerServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  if (grpc::HealthCheckServiceInterface* health =
          server_->GetHealthCheckService()) {
    health->SetServingStatus(false);
  }
  if (http_ != nullptr) http_->Stop();
  service_->BeginShutdown();
  // Refuses new calls, waits for the running ones until the deadline, then
  // cancels them and waits for their handlers to return.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
  server_.reset();
  http_.reset();
  service_.reset();
  signer_.reset();
  ledger_.reset();  // closes the database (and its lock)
}

LedgerServer::~LedgerServer() {
  if (server_ != nullptr) Shutdown(absl::ZeroDuration());
}

}  // namespace storeledger
