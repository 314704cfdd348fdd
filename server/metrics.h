// storeledgerd's Prometheus metrics (docs/server.md lists each):
// commands by outcome and rule, group size and write / sync latency of the
// group commit (as a LedgerObserver), append and read latency, the log's
// head, subscribers and their lag. Labels are fixed vocabularies (outcome,
// rule, read endpoint): never a store, merchant, order or command id, so
// the metrics tell no merchant's business. Thread-safe.
#ifndef STORELEDGER_SERVER_METRICS_H_
#define STORELEDGER_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ledger/ledger.h"
#include "storeledger/v1/ledger.pb.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace storeledger {

// What the metrics read at scrape time.
struct MetricsGauges {
  uint64_t head_position = 0;
  uint64_t subscribers = 0;
  // The largest (head - last position sent) over the live subscribers.
  uint64_t subscriber_lag_events_max = 0;
};

class ServerMetrics final : public LedgerObserver {
 public:
  ServerMetrics();
  ~ServerMetrics() override;

  // One executed command's outcome (ACCEPTED / REJECTED / INVALID, and the
  // deciding rule: R0..R15, or "" for an accepted one).
  void CountCommand(const v1::CommandResult& result);
  // A command that failed to execute (an I/O error): outcome "ERROR".
  void CountCommandError();
  // The wall time of one Execute / ExecuteBatch call, per command in it.
  void ObserveAppend(absl::Duration duration);
  // The wall time of one read; `endpoint` is a fixed name ("GetStore",
  // "/api/store", ...).
  void ObserveRead(absl::string_view endpoint, absl::Duration duration);

  void OnGroupDecided(size_t commands) override;
  void OnGroupWritten(absl::Duration duration) override;
  void OnSynced(absl::Duration duration) override;

  // The Prometheus text exposition format (version 0.0.4).
  std::string Render(const MetricsGauges& gauges);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* commands_;
  prometheus::Family<prometheus::Histogram>* read_seconds_;
  prometheus::Histogram* group_commands_;
  prometheus::Histogram* group_write_seconds_;
  prometheus::Histogram* sync_seconds_;
  prometheus::Histogram* append_seconds_;
  prometheus::Gauge* head_position_;
  prometheus::Gauge* subscribers_;
  prometheus::Gauge* subscriber_lag_;
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_METRICS_H_
