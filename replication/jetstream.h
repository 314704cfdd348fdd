// A connection to NATS JetStream for one partition's replicated log and
// its leader lease (DESIGN.md §7, docs/cluster.md), over libnats 3.4.1.
// It knows subjects, headers and sequences, not envelopes: replica.h gives
// the bytes meaning. Safe for concurrent use (libnats connections are).
//
// Errors: kUnavailable when no answer came (timeout, no quorum, no
// server): whether a publish was stored is then unknown, and the caller
// asks the stream (Get) rather than deciding again. kAborted when the
// stream refused a publish for its expected last sequence: the fence.
#ifndef STORELEDGER_REPLICATION_JETSTREAM_H_
#define STORELEDGER_REPLICATION_JETSTREAM_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct __natsConnection;
struct __jsCtx;
struct __kvStore;

namespace storeledger {

// NATS's default max_payload is 1 MiB; headers and framing fit in the rest.
inline constexpr size_t kLogBatchBytesMax = (1 << 20) - (64 << 10);
// How long one JetStream request (a publish, a get) waits for its answer.
inline constexpr absl::Duration kJetStreamWaitDefault = absl::Seconds(2);
inline constexpr char kLeaderBucket[] = "storeledger-leaders";

std::string StreamName(uint32_t partition);  // SL_P<n>
std::string LogSubject(uint32_t partition);  // storeledger.p<n>.log
std::string LeaseKey(uint32_t partition);    // p<n>
std::string LogMsgId(uint32_t partition,
                     uint64_t first_position);  // p<n>:<pos>

// A libnats status (natsStatus) and JetStream error code (jsErrCode, 0 for
// none) as an absl::Status, by the rules above; `what` names the request.
absl::Status FromNatsStatus(int status, int js_code, absl::string_view what);

struct PublishAck {
  uint64_t sequence = 0;
  bool duplicate = false;  // the stream had this Nats-Msg-Id already
};

struct LeaseEntry {
  std::string holder;
  uint64_t revision = 0;
};

class JetStream {
 public:
  // `urls`: nats://HOST:PORT, one or more servers of one cluster.
  static absl::StatusOr<std::unique_ptr<JetStream>> Connect(
      const std::vector<std::string>& urls,
      absl::Duration wait = kJetStreamWaitDefault);
  ~JetStream();
  JetStream(const JetStream&) = delete;
  JetStream& operator=(const JetStream&) = delete;

  // The partition's stream, created if missing (file storage, `replicas`
  // copies, no age, size or count limit, deleting and purging denied).
  // kFailedPrecondition when it exists with a limit that drops messages.
  absl::Status EnsureStream(uint32_t partition, int replicas);
  // The stream's last sequence (0 when empty).
  absl::StatusOr<uint64_t> LastSequence(uint32_t partition);
  // The data of the message at `sequence`; nullopt when there is none.
  absl::StatusOr<std::optional<std::string>> Get(uint32_t partition,
                                                 uint64_t sequence);
  // Publishes `data` on the partition's subject with headers
  // Nats-Msg-Id = msg_id and, when given, Nats-Expected-Last-Sequence.
  absl::StatusOr<PublishAck> Publish(
      uint32_t partition, absl::string_view data, absl::string_view msg_id,
      std::optional<uint64_t> expected_last_sequence);

  // The lease bucket (KV storeledger-leaders), created if missing; its
  // entries live `ttl` unless renewed.
  absl::Status EnsureLeaseBucket(absl::Duration ttl, int replicas);
  // nullopt when no one holds the key (never taken, or lapsed).
  absl::StatusOr<std::optional<LeaseEntry>> GetLease(absl::string_view key);
  // Takes the key when no one holds it: its revision, or kAlreadyExists.
  absl::StatusOr<uint64_t> CreateLease(absl::string_view key,
                                       absl::string_view holder);
  // Renews by compare-and-set on `revision`: the new revision, or kAborted
  // when someone else wrote the key since (the lease is lost).
  absl::StatusOr<uint64_t> RenewLease(absl::string_view key,
                                      absl::string_view holder,
                                      uint64_t revision);

  // A KV bucket holding one value a key, with no TTL (the cluster's
  // configuration, the store directory: docs/cluster.md "Partitions"),
  // created if missing.
  absl::Status EnsureBucket(absl::string_view bucket, int replicas);
  // The value of `key`; nullopt when the key is absent. kNotFound naming
  // the bucket when the bucket does not exist.
  absl::StatusOr<std::optional<std::string>> KvGet(absl::string_view bucket,
                                                   absl::string_view key);
  // Creates `key` = `value` when the key is absent (KV create): true; false
  // when it exists (its value unchanged).
  absl::StatusOr<bool> KvCreate(absl::string_view bucket, absl::string_view key,
                                absl::string_view value);

 private:
  friend class DurableConsumer;  // replication/durable_consumer.h
  JetStream() = default;
  // The bucket's handle, bound on first use.
  absl::StatusOr<__kvStore*> Bucket(absl::string_view bucket);
  std::mutex buckets_mu_;
  std::map<std::string, __kvStore*, std::less<>> buckets_;
  __natsConnection* connection_ = nullptr;
  __jsCtx* js_ = nullptr;
  __kvStore* leases_ = nullptr;
  int64_t wait_ms_ = 2000;
};

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_JETSTREAM_H_
