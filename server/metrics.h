// storeledgerd's Prometheus metrics (docs/server.md lists each):
// commands by outcome and rule, group size and write / sync latency of the
// group commit (as a LedgerObserver), append and read latency, the log's
// head, subscribers and their lag; a replica's role, stream sequence, lag
// and data-loss stop. Labels are fixed vocabularies (outcome,
// rule, read endpoint): never a store, merchant, order or command id, so
// the metrics tell no merchant's business. Thread-safe.
#ifndef STORELEDGER_SERVER_METRICS_H_
#define STORELEDGER_SERVER_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
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

// A replica's state (storeledgerd --replicate, replication/replica.h), as
// the metrics show it.
struct ReplicationGauges {
  uint32_t partition = 0;
  std::string ack;  // "replicated" or "local"
  bool follow_only = false;
  std::string role;  // "follower", "leader" or "deposed"
  // The last stream message this replica applied or published, and the
  // stream's last sequence as it last saw it.
  uint64_t stream_sequence = 0;
  uint64_t stream_last_sequence = 0;
  // Events stored here and not yet in the stream (an --ack local leader).
  uint64_t unpublished_events = 0;
  bool data_loss =
      false;  // a follower stopped by a message that failed a check
  uint64_t diverged_records = 0;  // tails moved aside (storage/diverged.h)
};

// What the metrics read at scrape time.
struct MetricsGauges {
  uint64_t head_position = 0;
  uint64_t subscribers = 0;
  // The largest (head - last position sent) over the live subscribers.
  uint64_t subscriber_lag_events_max = 0;
  std::optional<ReplicationGauges> replication;  // with --replicate only
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
  // Registered at the first scrape that carries ReplicationGauges.
  struct Replication;
  std::mutex replication_mu_;                 // scrapes may run at once
  std::unique_ptr<Replication> replication_;  // guarded by replication_mu_
  void RenderReplication(const ReplicationGauges& gauges);
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_METRICS_H_
