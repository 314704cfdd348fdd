// storeledgerd without main(): opens the ledger, checks the listening address,
// the token file and the TLS certificates, and serves storeledger.v1.Ledger
// plus grpc.health.v1.Health and server reflection. Tests start it
// in-process on port 0.
#ifndef STORELEDGER_SERVER_SERVER_H_
#define STORELEDGER_SERVER_SERVER_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "server/auth.h"
#include "server/checkpoint_signer.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/service.h"

namespace grpc {
class Server;
}

namespace storeledger {

// How long a shutdown waits for in-flight calls before cancelling them.
inline constexpr absl::Duration kShutdownGraceDefault = absl::Seconds(10);
// Largest message a client may send (a command is far smaller).
inline constexpr int kReceiveMessageBytesMax = 4 << 20;

struct ServerOptions {
  // The ledger's directory (created if missing). Required. Default: empty.
  std::string db_dir;
  // host:port; port 0 picks a free port (see LedgerServer::port()).
  // Default: "127.0.0.1:7450".
  std::string listen = "127.0.0.1:7450";
  // `TOKEN ROLE` lines (server/auth.h). Empty: no authentication, which is
  // allowed on a loopback address only. Default: empty.
  std::string tokens_file;
  // For tests: the tokens themselves, instead of tokens_file. Default: none.
  std::optional<TokenTable> tokens;
  // PEM files; both or neither. Without them, only loopback is served.
  // Default: both empty (plaintext).
  std::string tls_cert_file;
  std::string tls_key_file;
  // host:port of the HTTP console and /metrics (server/http_server.h);
  // empty: none. Same rules as `listen` (TLS with the same certificate).
  // Default: empty.
  std::string http_listen;
  // The ledger's options (ledger/ledger.h). Default: LedgerOptions().
  LedgerOptions ledger;
  // ServiceOptions::subscriber_buffer_events. Default:
  // kSubscriberBufferEventsDefault (4096).
  size_t subscriber_buffer_events = kSubscriberBufferEventsDefault;
  // ServiceOptions::subscriber_drain_timeout. Default:
  // kSubscriberDrainTimeoutDefault (10 s).
  absl::Duration subscriber_drain_timeout = kSubscriberDrainTimeoutDefault;
  // Sign checkpoints of the Merkle tree (server/checkpoint_signer.h).
  // Default: none (GetCheckpoint serves what `storeledger checkpoint` stored).
  std::optional<CheckpointSignerOptions> checkpoints;
  // ServiceOptions::write_gate. Default: none.
  std::function<absl::Status()> write_gate = nullptr;
  // A replica's state for /metrics (storeledgerd --replicate). Default:
  // none (no replication metrics).
  std::function<ReplicationGauges()> replication_gauges = nullptr;
  // ServiceOptions::router (a partitioned cluster). Not owned. Default: none.
  ClusterRouter* router = nullptr;
  // ServiceOptions::backup_dir. Default: empty (Backup refused).
  std::string backup_dir;
};

// The rule for every address storeledgerd listens on (`flag` names it in
// the message): a loopback address, or TLS and tokens. kFailedPrecondition
// saying what is missing otherwise.
absl::Status CheckExposure(absl::string_view flag, absl::string_view listen,
                           absl::string_view host, bool tls, bool tokens);

class LedgerServer {
 public:
  // Errors: kInvalidArgument for a bad address or option, kFailedPrecondition
  // for a non-loopback address without TLS, a token file others can read or
  // a locked database, kUnavailable when the port cannot be bound (the
  // message says why: in use, not an address of this machine, ...).
  static absl::StatusOr<std::unique_ptr<LedgerServer>> Start(
      ServerOptions options);
  ~LedgerServer();

  // The bound port (the chosen one when listening on port 0).
  int port() const { return port_; }
  std::string address() const;  // host:port as bound
  Ledger& ledger() { return *ledger_; }
  const LedgerService& service() const { return *service_; }
  bool tls() const { return tls_; }
  // The HTTP console, or nullptr when not asked for.
  const HttpConsole* http() const { return http_.get(); }

  // Stops accepting calls, lets the in-flight ones finish (commands in hand
  // are executed and answered; subscribers end with UNAVAILABLE), cancels
  // what is left after `grace`, and closes the ledger. Idempotent.
  void Shutdown(absl::Duration grace = kShutdownGraceDefault);

 private:
  LedgerServer() = default;

  std::string host_;
  int port_ = 0;
  bool tls_ = false;
  std::unique_ptr<TokenTable> tokens_;
  std::unique_ptr<ServerMetrics> metrics_;  // before the ledger: it observes
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LedgerService> service_;
  std::unique_ptr<HttpConsole> http_;
  std::unique_ptr<CheckpointSigner> signer_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_SERVER_H_
