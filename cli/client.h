// `storeledger --server ADDR --token T VERB ...`: the verbs apply, state,
// history, digest and tail through storeledgerd's gRPC service instead of
// the database, printing exactly what the embedded verbs print; and backup
// --name NAME, the Backup RPC (a copy under the server's --backup-dir).
//
// --tls-ca FILE connects with TLS, trusting the CA (or self-signed
// certificate) in FILE; otherwise the connection is plaintext. The token may
// also come from the STORELEDGER_TOKEN environment variable.
#ifndef STORELEDGER_CLI_CLIENT_H_
#define STORELEDGER_CLI_CLIENT_H_

#include "cli/cli.h"

namespace storeledger {

// Outstanding commands `apply` pipelines on its ExecuteStream.
inline constexpr size_t kRemoteApplyWindow = 64;

// Runs ctx.verb against the server in --server. Exit statuses as RunCli.
int RunRemoteVerb(CliContext& ctx);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_CLIENT_H_
