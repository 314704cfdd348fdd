// A real NATS JetStream on loopback for the replication tests: 1 server, or
// a 3-server cluster, of Debian's nats-server (no mock of NATS), each with
// its own free ports and store directory under a temporary directory.
// Servers can be killed and restarted; all are killed when this is
// destroyed. Without nats-server, Start fails with the install line (the
// tests fail, they do not skip). Not thread-safe.
#ifndef STORELEDGER_TESTS_SUPPORT_NATS_CLUSTER_H_
#define STORELEDGER_TESTS_SUPPORT_NATS_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/support/child_process.h"
#include "tests/support/test_support.h"

namespace storeledger::testing {

// How long a started or restarted server has to accept connections.
inline constexpr absl::Duration kNatsStartTimeout = absl::Seconds(10);

// A free loopback TCP port (bound, read and released: another process may
// take it meanwhile, which a test then sees as a failed start).
absl::StatusOr<int> FreeLoopbackPort();

class NatsCluster {
 public:
  // `servers`: 1 (a single JetStream server) or 3 (a cluster).
  static absl::StatusOr<std::unique_ptr<NatsCluster>> Start(int servers);
  ~NatsCluster();

  int size() const { return static_cast<int>(servers_.size()); }
  std::string url(int i) const;  // nats://127.0.0.1:PORT
  std::vector<std::string> urls() const;
  std::string urls_flag() const;  // for --replicate: a,b,c

  void Kill(int i);             // SIGKILL
  absl::Status Restart(int i);  // same ports, same store

 private:
  struct Server {
    int client_port = 0;
    int cluster_port = 0;
    std::string config_path;
    std::unique_ptr<ChildProcess> process;
  };
  NatsCluster() = default;
  absl::Status Launch(int i);

  TempDir dir_;
  std::vector<Server> servers_;
};

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_NATS_CLUSTER_H_
