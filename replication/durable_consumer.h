// A JetStream durable pull consumer of one partition's stream, with
// explicit acknowledgements (DESIGN.md §7 "Downstream consumers"): what a
// downstream projection reads the log through. Messages come in batches;
// each is acknowledged with a double ack (AckSync: the server confirms it
// recorded the ack) after the caller committed its effect. An unacknowledged
// message is delivered again after `ack_wait`, possibly after later ones, so
// the caller keeps the stream sequence it applied with its effects and
// skips what is at or below it (replication/balances_feed.h).
//
// Not thread-safe; the JetStream connection must outlive it.
#ifndef STORELEDGER_REPLICATION_DURABLE_CONSUMER_H_
#define STORELEDGER_REPLICATION_DURABLE_CONSUMER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replication/jetstream.h"

struct __natsSubscription;
struct __natsMsg;

namespace storeledger {

// How long the server waits for an ack before delivering a message again.
inline constexpr absl::Duration kConsumerAckWaitDefault = absl::Seconds(30);
// Messages delivered and not yet acknowledged, at most (the server's
// MaxAckPending for the consumer).
inline constexpr int64_t kConsumerAckPendingMax = 1024;

struct FeedMessage {
  uint64_t sequence = 0;    // the stream sequence
  uint64_t deliveries = 0;  // 1 the first time, more when redelivered
  std::string data;
};

class DurableConsumer {
 public:
  // Binds to the durable consumer `durable` of the partition's stream,
  // creating it (deliver all, explicit ack) when missing. The stream must
  // exist (kNotFound naming it otherwise).
  static absl::StatusOr<std::unique_ptr<DurableConsumer>> Bind(
      JetStream* js, uint32_t partition, const std::string& durable,
      absl::Duration ack_wait = kConsumerAckWaitDefault);
  ~DurableConsumer();
  DurableConsumer(const DurableConsumer&) = delete;
  DurableConsumer& operator=(const DurableConsumer&) = delete;

  // Up to `batch_max` messages, waiting at most `wait`; empty when none
  // came. Each stays unacknowledged until AckSync.
  absl::StatusOr<std::vector<FeedMessage>> Fetch(int batch_max,
                                                 absl::Duration wait);
  // Double ack of the fetched message at stream sequence `sequence`:
  // returns once the server confirmed it. kNotFound when no fetched,
  // unacknowledged message has that sequence.
  absl::Status AckSync(uint64_t sequence);

 private:
  DurableConsumer() = default;
  JetStream* js_ = nullptr;
  uint32_t partition_ = 0;
  __natsSubscription* subscription_ = nullptr;
  std::map<uint64_t, __natsMsg*> unacked_;  // by stream sequence, owned
};

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_DURABLE_CONSUMER_H_
