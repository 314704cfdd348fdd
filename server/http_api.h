// ConsoleApi: the console's read-only JSON API (docs/server.md lists every
// endpoint), answered by the read code the CLI verbs use (replay/
// read_views.h, replay/finance.h, Ledger::State), so the console and
// `storeledger` agree by construction; tokens and roles are gRPC's
// (server/auth.h).
//
// Errors are {"error": message, "code": canonical code} with the HTTP status
// of HttpStatusOf. A merchant asking about another merchant's store, order,
// withdrawal or command gets the answer of an id that does not exist, so it
// cannot probe. Thread-safe: the HTTP server calls it from many threads.
#ifndef STORELEDGER_SERVER_HTTP_API_H_
#define STORELEDGER_SERVER_HTTP_API_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "server/auth.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// A store's history on the console holds at most this many envelopes; a
// longer one is a 413 naming the CLI verb that pages through it.
inline constexpr size_t kConsoleHistoryEventsMax = 20'000;
// Search answers at most this many stores for a merchant id.
inline constexpr size_t kSearchStoresMax = 1'000;

struct ApiReply {
  int http_status = 200;
  std::string content_type = "application/json";
  std::string body;
  // For a download: the file name a browser saves it under ("" for none).
  std::string attachment_name;
};

// The HTTP status of a canonical status code.
int HttpStatusOf(absl::StatusCode code);

// What the console reads: `ledger`, which on a partitioned cluster is one
// partition's log. Its endpoints are not routed to other partitions (the
// gRPC calls are, docs/cluster.md "Routing"): /api/whoami names the
// partition, and an answer that something was not found (or may not be
// read) says that it was looked for in this partition only.
struct ConsoleScope {
  uint32_t partition = 0;
  uint32_t partitions = 0;  // 0: not partitioned
};

class ConsoleApi {
 public:
  // `ledger` and `tokens` are not owned and must outlive the API; `tokens`
  // nullptr means no authentication (loopback only, as for gRPC).
  ConsoleApi(const Ledger* ledger, const TokenTable* tokens,
             ConsoleScope scope = {});

  // Answers GET `path` (e.g. "/api/store") with query `params`, for the
  // caller presenting `authorization` (the header's value, if any).
  ApiReply Get(absl::string_view path,
               const std::map<std::string, std::string>& params,
               std::optional<absl::string_view> authorization);

  // Authorization alone (for /metrics).
  absl::StatusOr<Principal> Authorize(
      std::optional<absl::string_view> authorization,
      Permission permission) const;

 private:
  using Params = std::map<std::string, std::string>;
  absl::StatusOr<ApiReply> Route(
      absl::string_view path, const Params& params,
      std::optional<absl::string_view> authorization);
  absl::StatusOr<std::string> Search(const Principal& principal,
                                     const Params& params) const;
  absl::StatusOr<std::string> Store(const Principal& principal,
                                    const Params& params) const;
  absl::StatusOr<std::string> History(const Principal& principal,
                                      const Params& params) const;
  absl::StatusOr<std::string> BalanceSeries(const Principal& principal,
                                            const Params& params) const;
  absl::StatusOr<std::string> Diff(const Principal& principal,
                                   const Params& params) const;
  absl::StatusOr<std::string> Explain(const Principal& principal,
                                      const Params& params) const;
  absl::StatusOr<std::string> Balances(const Params& params) const;
  absl::StatusOr<ApiReply> Statement(const Principal& principal,
                                     const Params& params) const;
  absl::StatusOr<std::string> Audit(const Params& params);
  absl::StatusOr<std::string> Verify(const Params& params) const;

  const Ledger* const ledger_;
  const TokenTable* const tokens_;
  const ConsoleScope scope_;

  absl::Mutex audit_mu_;
  // The last audit's JSON answer ("" before the first).
  std::string last_audit_ ABSL_GUARDED_BY(audit_mu_);
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_HTTP_API_H_
