// gRPC channel credentials that trust the CA certificates of one PEM file:
// the CLI's --tls-ca, and storeledgerd's --peer-ca for the calls its router
// sends to other nodes of a partitioned cluster.
#ifndef STORELEDGER_CLI_CA_CREDENTIALS_H_
#define STORELEDGER_CLI_CA_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/credentials.h"

namespace storeledger {

// kInvalidArgument naming `flag` and `path` when the file cannot be read
// or holds no PEM certificate (a private key is named as such): gRPC would
// take any bytes and fail only when it connects.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> CaCredentials(
    absl::string_view flag, const std::string& path);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_CA_CREDENTIALS_H_
