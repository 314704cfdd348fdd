#include "tests/support/nats_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace storeledger::testing {
namespace {

constexpr char kInstallLine[] =
    "nats-server not found: install it with `apt-get install -y nats-server` "
    "(scripts/install-deps)";

std::string FindNatsServer() {
  for (const char* path : {"/usr/bin/nats-server", "/usr/local/bin/nats-server",
                           "/usr/sbin/nats-server"}) {
    if (access(path, X_OK) == 0) return path;
  }
  return "";
}

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

}  // namespace

absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = 0;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    close(fd);
    return absl::InternalError("bind a loopback port");
  }
  close(fd);
  return ntohs(address.sin_port);
}

absl::StatusOr<std::unique_ptr<NatsCluster>> NatsCluster::Start(int servers) {
  if (servers != 1 && servers != 3) {
    return absl::InvalidArgumentError("a NatsCluster has 1 or 3 servers");
  }
  const std::string binary = FindNatsServer();
  if (binary.empty()) return absl::FailedPreconditionError(kInstallLine);
  std::unique_ptr<NatsCluster> cluster(new NatsCluster());
  cluster->servers_.resize(servers);
  for (Server& server : cluster->servers_) {
    absl::StatusOr<int> client = FreeLoopbackPort();
    absl::StatusOr<int> route = FreeLoopbackPort();
    if (!client.ok()) return client.status();
    if (!route.ok()) return route.status();
    server.client_port = *client;
    server.cluster_port = *route;
  }
  for (int i = 0; i < servers; ++i) {
    Server& server = cluster->servers_[i];
    std::string config = absl::StrCat(
        "server_name: n", i, "\nlisten: 127.0.0.1:", server.client_port,
        "\njetstream { store_dir: \"", cluster->dir_.Sub(absl::StrCat("n", i)),
        "\" }\n");
    if (servers > 1) {
      std::vector<std::string> routes;
      for (int j = 0; j < servers; ++j) {
        if (j == i) continue;
        routes.push_back(absl::StrCat("nats://127.0.0.1:",
                                      cluster->servers_[j].cluster_port));
      }
      absl::StrAppend(&config,
                      "cluster { name: storeledger\n  listen: 127.0.0.1:",
                      server.cluster_port, "\n  routes: [",
                      absl::StrJoin(routes, ", "), "]\n}\n");
    }
    server.config_path = cluster->dir_.Sub(absl::StrCat("n", i, ".conf"));
    std::ofstream(server.config_path) << config;
  }
  for (int i = 0; i < servers; ++i) {
    if (absl::Status s = cluster->Launch(i); !s.ok()) return s;
  }
  return cluster;
}

NatsCluster::~NatsCluster() {
  for (int i = 0; i < size(); ++i) Kill(i);
}

absl::Status NatsCluster::Launch(int i) {
  Server& server = servers_[i];
  ChildOptions options;
  options.argv = {FindNatsServer(), "-c", server.config_path};
  options.stderr_path = dir_.Sub(absl::StrCat("n", i, ".log"));
  absl::StatusOr<std::unique_ptr<ChildProcess>> process =
      ChildProcess::Start(options);
  if (!process.ok()) return process.status();
  server.process = *std::move(process);
  const absl::Time deadline = absl::Now() + kNatsStartTimeout;
  while (!Accepts(server.client_port)) {
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "nats-server n", i, " does not accept on port ", server.client_port,
          " (log: ", options.stderr_path, ")"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::OkStatus();
}

std::string NatsCluster::url(int i) const {
  return absl::StrCat("nats://127.0.0.1:", servers_[i].client_port);
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> all;
  for (int i = 0; i < size(); ++i) all.push_back(url(i));
  return all;
}

std::string NatsCluster::urls_flag() const {
  return absl::StrJoin(urls(), ",");
}

void NatsCluster::Kill(int i) {
  if (servers_[i].process == nullptr) return;
  servers_[i].process->Kill(SIGKILL);
  servers_[i].process->Wait();
  servers_[i].process.reset();
}

absl::Status NatsCluster::Restart(int i) {
  Kill(i);
  return Launch(i);
}

}  // namespace storeledger::testing
