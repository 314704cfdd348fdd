#include "cli/ca_credentials.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/credentials.h"

namespace storeledger {
namespace {

// gRPC takes any bytes as root certificates and fails only when it
// connects, with "empty address list" and lines of its own log; OpenSSL says
// at once whether the file holds a certificate.
absl::Status CheckCaCertificates(absl::string_view flag,
                                 const std::string& path,
                                 const std::string& pem) {
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* certificate = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (certificate != nullptr) {
    X509_free(certificate);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      flag, " ", path, ": not a PEM certificate (",
      absl::StrContains(pem, "PRIVATE KEY-----")
          ? "it holds a private key; give the certificate of the CA that "
            "signed the server's"
          : "no -----BEGIN CERTIFICATE----- block",
      ")"));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> CaCredentials(
    absl::string_view flag, const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": cannot read the file"));
  }
  std::stringstream pem;
  pem << file.rdbuf();
  if (absl::Status s = CheckCaCertificates(flag, path, pem.str()); !s.ok()) {
    return s;
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem.str();
  return grpc::SslCredentials(ssl);
}

}  // namespace storeledger
