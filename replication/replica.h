// One replica of a partition (DESIGN.md §7, docs/cluster.md): it follows
// the partition's JetStream stream into its Ledger, or, holding the
// partition's lease, leads: every group its Ledger appends is published to
// the stream, fenced by the stream's expected last sequence, before it is
// stored (BeforeWrite, for LedgerOptions::before_write).
//
// Errors: a leader whose publish is refused or whose lease is lost is
// deposed (on_deposed) and answers nothing more; a follower stops at a bad
// message with kDataLoss naming its position (status().data_loss), and
// stores nothing past it. How: replica.cc.
// Thread-safe. The Ledger must outlive the Replica.
#ifndef STORELEDGER_REPLICATION_REPLICA_H_
#define STORELEDGER_REPLICATION_REPLICA_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ledger/ledger.h"
#include "replication/jetstream.h"

namespace storeledger {

// How long a lease lives unless renewed; it is renewed 4 times as often.
inline constexpr absl::Duration kLeaseTtlDefault = absl::Seconds(2);
// A follower that found nothing new asks the stream again after this.
inline constexpr absl::Duration kFollowPollInterval = absl::Milliseconds(20);
// A follower asks the stream for its last sequence (for the lag it
// exports) at most this often.
inline constexpr absl::Duration kStreamLastCheckInterval =
    absl::Milliseconds(250);
// Groups an `--ack local` leader may have stored but not yet published;
// an append waits for room beyond it.
inline constexpr size_t kUnpublishedGroupsMax = 1024;
// A follower behind the stream applies up to this many messages, and up
// to kApplyBytesMax of them, in one synced append: catching up costs a
// WAL sync per that many, not per message.
inline constexpr size_t kApplyMessagesMax = 256;
inline constexpr size_t kApplyBytesMax = 16 << 20;

struct ReplicaOptions {
  // nats://HOST:PORT, one cluster. Required. Default: empty.
  std::vector<std::string> nats_urls;
  uint32_t partition = 0;  // Default: 0
  enum class Ack { kReplicated, kLocal };
  Ack ack = Ack::kReplicated;  // Default: kReplicated
  bool follow_only = false;    // never take the lease. Default: false
  // Copies JetStream keeps of the stream and the lease bucket. 0: 3 when
  // nats_urls names 3 servers or more, else 1. Default: 0.
  int replicas = 0;
  // This replica's name in the lease, where writers are sent: its gRPC
  // address. Required. Default: empty.
  std::string name;
  // How long a lease lives unless renewed (renewed 4 times as often).
  // Default: kLeaseTtlDefault (2 s).
  absl::Duration lease_ttl = kLeaseTtlDefault;
  // Tests only: the acknowledgement of every Nth publish is dropped as if
  // lost on the way (the message is stored), so that settling by asking
  // the stream is exercised. 0: none. Default: 0.
  uint64_t drop_publish_ack_every = 0;
  // Called once, on a thread of the replica, when it has been deposed.
  // Default: none.
  std::function<void(const absl::Status& why)> on_deposed = nullptr;
};

enum class ReplicaRole { kFollower, kLeader, kDeposed };

struct ReplicaStatus {
  ReplicaRole role = ReplicaRole::kFollower;
  std::string leader;            // the lease holder as last seen
  uint64_t stream_sequence = 0;  // last message applied or published
  // The stream's last sequence as last seen (a follower asks every
  // kStreamLastCheckInterval); at least stream_sequence.
  uint64_t stream_last_sequence = 0;
  uint64_t published_position = 0;  // leader: last position in the stream
  absl::Status data_loss;           // a follower stopped by a bad message
  // Follower: the synced appends that applied messages (each applies one
  // or more, kApplyMessagesMax).
  uint64_t applied_appends = 0;
};

class Replica {
 public:
  // Connects, and makes the partition's stream and the lease bucket if
  // missing.
  static absl::StatusOr<std::unique_ptr<Replica>> Connect(
      ReplicaOptions options);
  ~Replica();  // Stop()
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // For LedgerOptions::before_write of the ledger given to Start.
  std::function<absl::Status(const StoredGroup&)> BeforeWrite();

  // Before the ledger in `db_dir` is opened: when its log holds positions
  // the stream does not (a diverged tail: written locally and never
  // published, or the stream extended differently since), moves them aside
  // into a diverged record (storage/diverged.h) and rebuilds the
  // projections, so that the log ends where the stream holds it. Returns
  // the record made, nullopt when the log was a prefix of the stream (or
  // there is no ledger yet).
  absl::StatusOr<std::optional<v1::DivergedRecord>> Reconcile(
      const std::string& db_dir);

  // Finds where the ledger's log stands in the stream and starts following
  // (and competing for the lease). kFailedPrecondition when the log holds
  // positions the stream does not (Reconcile was not called).
  absl::Status Start(Ledger* ledger);
  void Stop();

  // Ok while leading; UNAVAILABLE naming the leader otherwise
  // (ServiceOptions::write_gate).
  absl::Status WriteGate() const;
  ReplicaStatus status() const;
  // Positions stored locally and not yet in the stream (--ack local lag).
  uint64_t publish_lag_events() const;

 private:
  explicit Replica(ReplicaOptions options) : options_(std::move(options)) {}

  // Where `log` and the stream part: the last message whose end the log
  // holds with the same hash (its sequence and end position; 0, 0 when
  // none). Messages hold whole commands, so the log up to there is a
  // prefix of the stream.
  struct Fork {
    uint64_t sequence = 0;
    uint64_t position = 0;
  };
  absl::StatusOr<Fork> FindFork(const EventLog& log);
  void Run();
  void CheckStreamLast();  // stream_last_sequence_, now and then
  bool ApplyAvailable();   // true when it applied something
  // Applies the messages at sequences first_sequence, ... in one synced
  // append, or a first part of them that passes every check (at least the
  // first message, else its error and nothing stored); *applied says how
  // many.
  absl::Status ApplyMessages(uint64_t first_sequence,
                             absl::Span<const std::string> messages,
                             size_t* applied);
  void TryLead();
  void Renew();
  absl::Status Publish(const StoredGroup& group);
  absl::Status PublishMessage(const std::string& data, uint64_t first_position);
  absl::Status Depose(absl::Status why);
  void PublishLoop();  // --ack local

  const ReplicaOptions options_;
  std::unique_ptr<JetStream> js_;
  Ledger* ledger_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  ReplicaRole role_ ABSL_GUARDED_BY(mu_) = ReplicaRole::kFollower;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t stream_last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time stream_last_checked_ ABSL_GUARDED_BY(mu_);
  uint64_t published_position_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t lease_revision_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time renew_at_ ABSL_GUARDED_BY(mu_);
  absl::Status data_loss_ ABSL_GUARDED_BY(mu_);
  uint64_t applied_appends_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status deposed_ ABSL_GUARDED_BY(mu_);
  bool deposed_reported_ ABSL_GUARDED_BY(mu_) = false;
  // --ack local: stored groups waiting to be published, as messages.
  struct Pending {
    std::vector<std::string> messages;
    std::vector<uint64_t> first_positions;
    uint64_t last_position = 0;
  };
  std::deque<Pending> unpublished_ ABSL_GUARDED_BY(mu_);
  uint64_t appended_position_ ABSL_GUARDED_BY(mu_) = 0;

  std::mutex publish_mu_;   // one publish at a time, in order
  uint64_t publishes_ = 0;  // guarded by publish_mu_
  std::thread runner_;
  std::thread publisher_;
};

}  // namespace storeledger

#endif  // STORELEDGER_REPLICATION_REPLICA_H_
