// Migration: an existing single-node ledger published into its
// partition's EMPTY JetStream stream, in the format a leader publishes
// (LogBatch, docs/cluster.md "Wire format"): whole commands, each with its
// stored outcome, cut below kLogBatchBytesMax, every publish fenced by the
// expected last sequence. A replica started on that stream then follows it
// byte for byte, and one started on the published ledger's own directory
// finds its head at the stream's end and may lead.
#ifndef STORELEDGER_REPLICATION_PUBLISH_LOG_H_
#define STORELEDGER_REPLICATION_PUBLISH_LOG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "replication/jetstream.h"
#include "storage/event_log.h"

namespace storeledger {

// Envelopes gathered from the log before they are cut into messages.
inline constexpr size_t kPublishGroupEventsMax = 4096;
// Attempts at one message while the cluster gives no answer.
inline constexpr int kPublishAttemptsMax = 50;

struct PublishLogStats {
  uint64_t messages = 0;  // published; the stream's last sequence
  uint64_t position = 0;  // the last position published
  std::string hash;       // its hash (the log's head hash)
};

// Publishes every envelope of `log` (the stream must exist and be empty:
// kFailedPrecondition naming its last sequence otherwise). kFailedPrecondition
// naming the position for an envelope no stored outcome covers; kAborted
// when someone else wrote the stream meanwhile (the fence); kUnavailable
// when the cluster stops answering (what was published stays; the stream
// is then not empty, and the partition is best rebuilt: delete the stream).
absl::StatusOr<PublishLogStats> PublishLog(const EventLog& log, JetStream* js,
                                           uint32_t partition);

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_PUBLISH_LOG_H_
