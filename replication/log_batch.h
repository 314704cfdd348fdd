// LogBatch (proto/storeledger/v1/replication.proto, docs/cluster.md "Wire
// format"): a leader's group cut into messages, and a follower's checks of
// a message before anything of it is stored. Pure functions of bytes.
#ifndef STORELEDGER_REPLICATION_LOG_BATCH_H_
#define STORELEDGER_REPLICATION_LOG_BATCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/event_log.h"
#include "storeledger/v1/replication.pb.h"

namespace storeledger {

// The messages (serialized LogBatch) that carry `group`, in order: whole
// commands only (a command's envelopes and outcome in one message), each at
// most `bytes_max` serialized. kResourceExhausted naming the command when
// one command alone is over it; kInternal when the outcomes do not cover
// the envelopes as the format requires.
absl::StatusOr<std::vector<std::string>> SplitGroup(const StoredGroup& group,
                                                    uint32_t partition,
                                                    uint64_t lease_revision,
                                                    size_t bytes_max);

// A message checked against the log it must extend (`head`): it parses, is
// of `partition`, starts at head.position + 1 with prev_hash head.hash, and
// every envelope is the verified envelope at its position linked to the
// one before; the outcomes cover the envelopes exactly. Every failure is
// kDataLoss naming the stream sequence and the position.
struct VerifiedBatch {
  v1::LogBatch batch;
  std::vector<Envelope> envelopes;  // parsed, in position order
  std::vector<v1::StoredOutcome> outcomes;
};
absl::StatusOr<VerifiedBatch> VerifyLogBatch(absl::string_view data,
                                             uint32_t partition,
                                             uint64_t sequence,
                                             const Head& head);

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_LOG_BATCH_H_
