// The reference downstream consumer (DESIGN.md §7): a partition's log, read
// through a JetStream durable pull consumer, applied exactly once (the
// pattern of docs/cluster.md "Write your own projection") to SQLite tables
// of balances per store and per store kind, folded with the ledger's own
// code (replay/finance.h FoldStoreBalances), so the tables equal
// `storeledger balances` at the same position. The schema: kSchema in
// balances_feed.cc.
// Errors: a message that fails a follower's checks (replication/
// log_batch.h) is kDataLoss naming its position; nothing of its batch is
// committed or acknowledged.
#ifndef STORELEDGER_REPLICATION_BALANCES_FEED_H_
#define STORELEDGER_REPLICATION_BALANCES_FEED_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "replication/durable_consumer.h"

namespace storeledger {

// Messages fetched, applied in one transaction and then acknowledged.
inline constexpr int kFeedBatchMessagesDefault = 64;
// How long one fetch waits for messages.
inline constexpr absl::Duration kFeedFetchWait = absl::Milliseconds(200);

struct BalancesFeedOptions {
  // nats://HOST:PORT, one cluster. Required. Default: empty.
  std::vector<std::string> nats_urls;
  uint32_t partition = 0;  // Default: 0
  // The consumer's name. Required. Default: empty.
  std::string durable;
  // The database file. Required. Default: empty.
  std::string sqlite_path;
  // Default: kFeedBatchMessagesDefault.
  int batch_messages = kFeedBatchMessagesDefault;
  // Default: kConsumerAckWaitDefault.
  absl::Duration ack_wait = kConsumerAckWaitDefault;
  // Stop once this many messages were applied. 0: no limit. Default: 0.
  uint64_t max_messages = 0;
  // Stop after this long without a new message. Default: never.
  absl::Duration idle_exit = absl::InfiniteDuration();
  // Asked between batches: true stops. Default: none.
  std::function<bool()> stop = nullptr;
};

struct BalancesFeedStats {
  uint64_t stream_sequence = 0;   // the last applied, as stored
  uint64_t position = 0;          // the log position it ends at
  uint64_t messages_applied = 0;  // this run
  uint64_t messages_skipped = 0;  // delivered again, at or below the stored
  uint64_t messages_read = 0;     // read from the stream to fill a gap
  uint64_t events_applied = 0;
  absl::Duration took;
};

// Runs the consumer until `options` says stop. A message that fails a
// check is kDataLoss naming the position: nothing of the batch holding it
// is committed or acknowledged (the stored sequence stays before the
// batch), and a later run stops at it again. SQLite errors are
// kUnavailable; NATS errors as replication/jetstream.h.
absl::StatusOr<BalancesFeedStats> RunBalancesFeed(
    const BalancesFeedOptions& options);

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_BALANCES_FEED_H_
