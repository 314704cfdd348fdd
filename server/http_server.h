// storeledgerd's HTTP side: the console (static pages compiled
// into the binary, server/console/), its JSON API (server/http_api.h) and
// GET /metrics (server/metrics.h), on cpp-httplib (Debian's
// libcpp-httplib-dev). Same rules as gRPC: a non-loopback address needs TLS
// (the same certificate) and tokens, or it is refused; every API call and
// /metrics need a token whose role allows it (none when the server runs
// without tokens, on loopback). The pages themselves hold no data and need
// no token: the sign-in page keeps the token in the browser's
// sessionStorage and the pages send it as `Authorization: Bearer`.
//
// Serves from its own threads from Start until Stop; thread-safe.
#ifndef STORELEDGER_SERVER_HTTP_SERVER_H_
#define STORELEDGER_SERVER_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/ledger.h"
#include "server/auth.h"
#include "server/http_api.h"
#include "server/metrics.h"

namespace httplib {
class Server;
}

namespace storeledger {

// A compiled-in file of server/console/ (made by server/console/embed.cmake).
struct ConsoleAsset {
  const char* path;  // "/index.html"
  const unsigned char* data;
  size_t size;
};
extern const ConsoleAsset kConsoleAssets[];
extern const size_t kConsoleAssetsCount;

struct HttpConsoleOptions {
  // host:port; port 0 picks a free port (HttpConsole::port()). Required.
  // Default: empty.
  std::string listen;
  // PEM files, both or neither (HTTPS with them). Default: both empty
  // (HTTP).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Not owned; must outlive the console. Required. Default: nullptr.
  const Ledger* ledger = nullptr;
  // Not owned; nullptr: no authentication (loopback only). Default: nullptr.
  const TokenTable* tokens = nullptr;
  // On a partitioned cluster, the partition this node serves and their
  // count: the console reads this node's log, one partition, and says so.
  // Default: 0 and 0 (not partitioned).
  uint32_t partition = 0;
  uint32_t partitions = 0;
  // Not owned; nullptr: /metrics answers 404. Default: nullptr.
  ServerMetrics* metrics = nullptr;
  // What /metrics reads at scrape time (head, subscribers); may be empty.
  // Default: empty.
  std::function<MetricsGauges()> gauges;
};

class HttpConsole {
 public:
  // kInvalidArgument for a bad address, kFailedPrecondition for a
  // non-loopback address without TLS or tokens, kUnavailable when the port
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpConsole>> Start(
      HttpConsoleOptions options);
  ~HttpConsole();

  int port() const { return port_; }
  std::string address() const;  // host:port as bound
  bool tls() const { return tls_; }
  // Stops serving and joins the server's threads. Idempotent.
  void Stop();

 private:
  HttpConsole() = default;
  void Route();

  HttpConsoleOptions options_;
  std::string host_;
  int port_ = 0;
  bool tls_ = false;
  std::unique_ptr<ConsoleApi> api_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_HTTP_SERVER_H_
