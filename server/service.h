// LedgerService: the storeledger.v1.Ledger gRPC service over one writable
// Ledger (ServiceOptions::ledger, not owned). Every handler authenticates
// the caller's bearer token and checks its role (server/auth.h) before
// touching the ledger; errors are the canonical codes of the ledger's
// statuses (ToGrpc).
//
// Subscribe and ReadStream hold no RocksDB state while they send: a slow
// client costs a batch of memory and writers nothing. A subscriber too far
// behind is cut off with RESOURCE_EXHAUSTED and its resume position, from
// which it resumes without a gap (service.cc says when and how).
// Safe for concurrent use: gRPC calls the handlers from many threads.
#ifndef STORELEDGER_SERVER_SERVICE_H_
#define STORELEDGER_SERVER_SERVICE_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "ledger/ledger.h"
#include "replay/read_views.h"
#include "server/auth.h"
#include "server/cluster_router.h"
#include "server/metrics.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {

// How far (in events) a caught-up subscriber may trail the head.
inline constexpr size_t kSubscriberBufferEventsDefault = 4096;
// Concurrent Subscribe calls; each holds a thread while it follows.
inline constexpr size_t kSubscribersMax = 64;
// A subscriber whose client takes no envelope for this long is cut off.
inline constexpr absl::Duration kSubscriberDrainTimeoutDefault =
    absl::Seconds(10);
// A waiting subscriber re-checks for cancellation this often.
inline constexpr absl::Duration kSubscriberPollInterval =
    absl::Milliseconds(100);
// ExecuteStream hands the commands that have arrived on a stream, up to this
// many, to one Ledger::ExecuteBatch (one group commit, one sync). It also
// bounds what a stream buffers: reading pauses while this many wait.
inline constexpr size_t kStreamBatchCommandsMax = 256;
// Threads that execute unary Execute calls. Concurrent calls queue, and each
// of these threads takes every command queued so far (up to
// kStreamBatchCommandsMax) into one Ledger::ExecuteBatch: one thread per
// concurrent call would cost a thread wake-up and a group of one or two
// commands each. One: the calls that arrive while its batch is written
// and synced make the next batch, and on 2 cores that beat 4 threads'
// smaller batches by 1.3-1.4x at 16 clients (docs/performance.md "The
// unary gRPC row"; 4 threads made batches of 2.1-2.7 commands, 1 of 4-4.5).
// The calls of a batch that this node no longer leads for are sent on by
// the routing threads (kRouteThreads), never from this one.
inline constexpr size_t kExecuteThreads = 1;
// A partitioned node sends the unary commands of other partitions on from
// these threads, not from the gRPC threads that receive every call: the
// commands queued for one partition go together (one routed batch), and
// each partition has at most one batch in flight, so a partition whose
// leader is gone holds one of them for up to the router's retry time
// (kRouteRetryDefault) and holds up nothing else.
inline constexpr size_t kRouteThreads = 8;
// An idle ExecuteStream re-checks for shutdown this often.
inline constexpr absl::Duration kStreamPollInterval = absl::Milliseconds(100);
// How long a read carrying min_position waits for this replica's log to
// reach it (a follower behind) before it answers UNAVAILABLE; the call's
// own deadline, when sooner, bounds it too.
inline constexpr absl::Duration kMinPositionWaitMax = absl::Seconds(2);
// A read waiting for min_position re-checks the head this often.
inline constexpr absl::Duration kMinPositionPollInterval =
    absl::Milliseconds(5);
// Trailing metadata naming where a cut-off subscriber should resume.
inline constexpr char kResumePositionMetadata[] = "storeledger-resume-position";

// The Ledger::ExecuteBatch calls that ExecuteStream, or the unary Execute
// calls, made since the service started (for tests and benchmarks), and the
// commands they executed.
struct BatchStats {
  uint64_t batches = 0;
  uint64_t commands = 0;
  uint64_t largest_batch_commands = 0;
};

// Counts batches into BatchStats; thread-safe.
class BatchCounter {
 public:
  void Count(uint64_t commands);
  BatchStats stats() const;

 private:
  std::atomic<uint64_t> batches_{0};
  std::atomic<uint64_t> commands_{0};
  std::atomic<uint64_t> largest_{0};
};

struct ServiceOptions {
  // Not owned; must outlive the service. Required. Default: nullptr.
  Ledger* ledger = nullptr;
  // Not owned. nullptr: no authentication, every caller may do everything
  // (the server allows that on loopback only). Default: nullptr.
  const TokenTable* tokens = nullptr;
  // How far (in events) a caught-up subscriber may trail the head before it
  // is cut off with RESOURCE_EXHAUSTED. Default:
  // kSubscriberBufferEventsDefault (4096).
  size_t subscriber_buffer_events = kSubscriberBufferEventsDefault;
  // Not owned. Counts commands, append and read latency. Default: nullptr.
  ServerMetrics* metrics = nullptr;
  // A subscriber whose client takes no envelope for this long is cut off.
  // Default: kSubscriberDrainTimeoutDefault (10 s).
  absl::Duration subscriber_drain_timeout = kSubscriberDrainTimeoutDefault;
  // Asked before every Execute and ExecuteStream: a status other than ok
  // refuses the call with it (a replica that does not lead its partition
  // answers UNAVAILABLE naming the leader, replication/replica.h).
  // Default: none (every write is let through).
  std::function<absl::Status()> write_gate = nullptr;
  // A partitioned cluster (server/cluster_router.h): commands, store reads
  // and reads naming another partition are sent to the partition that
  // holds them; calls that a router sent here are served here. Not owned;
  // must outlive the service. Default: nullptr (everything is served here).
  ClusterRouter* router = nullptr;
  // Where Backup writes its copies (each in a new directory under it, on
  // this machine). Default: empty -- Backup is refused FAILED_PRECONDITION.
  std::string backup_dir;
};

// Execute is a callback-API method so that a call holds no thread while its
// command waits in a group commit (the kExecuteThreads thread executes the
// calls in batches); ExecuteStream is one so that it can see which commands
// have already arrived and end the call with a status while a read is still
// pending; Subscribe is one so that it can end the call while a write waits
// for a client that does not read. The other methods are synchronous.
class LedgerService final
    : public v1::Ledger::WithCallbackMethod_Execute<
          v1::Ledger::WithCallbackMethod_ExecuteStream<
              v1::Ledger::WithCallbackMethod_Subscribe<v1::Ledger::Service>>> {
 public:
  explicit LedgerService(ServiceOptions options);
  // REQUIRES: the gRPC server that served it has shut down (no call left).
  ~LedgerService() override;

  // Shutdown, step one: new commands are refused (UNAVAILABLE), streams end
  // after the command in hand, subscribers end with UNAVAILABLE and their
  // resume position.
  void BeginShutdown();

  BatchStats stream_batch_stats() const { return stream_batches_.stats(); }
  BatchStats unary_batch_stats() const { return unary_batches_.stats(); }
  // The head, the live subscribers and the slowest one's lag (metrics).
  MetricsGauges Gauges() const;
  // Subscribers cut off because their client took nothing for
  // subscriber_drain_timeout (for tests).
  uint64_t stalled_subscribers_cut_off() const {
    return stalled_subscribers_cut_off_.load();
  }

  // The command joins the ones other Execute calls have queued; the
  // kExecuteThreads thread runs them through Ledger::ExecuteBatch and answers
  // each call once its command is durable, with what Ledger::Execute would have
  // answered.
  grpc::ServerUnaryReactor* Execute(grpc::CallbackServerContext* context,
                                    const v1::Command* request,
                                    v1::CommandResult* response) override;
  // Commands in, results out in the same order. The commands that have
  // arrived (up to kStreamBatchCommandsMax) are executed together with
  // Ledger::ExecuteBatch; each result is written once its command is
  // durable. A command whose execution fails (an I/O error, not a
  // rejection) ends the call with that status; the commands after it are
  // not executed and get no result.
  grpc::ServerBidiReactor<v1::Command, v1::CommandResult>* ExecuteStream(
      grpc::CallbackServerContext* context) override;
  grpc::Status GetStore(grpc::ServerContext* context,
                        const v1::GetStoreRequest* request,
                        v1::StoreState* response) override;
  grpc::Status ReadStream(grpc::ServerContext* context,
                          const v1::ReadStreamRequest* request,
                          grpc::ServerWriter<v1::Envelope>* writer) override;
  grpc::ServerWriteReactor<v1::Envelope>* Subscribe(
      grpc::CallbackServerContext* context,
      const v1::SubscribeRequest* request) override;
  grpc::Status Digest(grpc::ServerContext* context,
                      const v1::DigestRequest* request,
                      v1::Digest* response) override;
  grpc::Status Audit(grpc::ServerContext* context,
                     const v1::AuditRequest* request,
                     v1::AuditReport* response) override;
  // `explain --command-id` (docs/cluster.md "Routing"): kReadStore; a
  // merchant sees only a command whose stores are all its own.
  grpc::Status Explain(grpc::ServerContext* context,
                       const v1::ExplainRequest* request,
                       v1::Explanation* response) override;
  // Proofs over the Merkle tree (auditor and investigator, as Digest). A tree
  // size of 0 is the latest checkpoint's.
  grpc::Status GetInclusionProof(grpc::ServerContext* context,
                                 const v1::GetInclusionProofRequest* request,
                                 v1::InclusionProof* response) override;
  grpc::Status GetConsistencyProof(
      grpc::ServerContext* context,
      const v1::GetConsistencyProofRequest* request,
      v1::ConsistencyProof* response) override;
  // The latest stored checkpoint; NOT_FOUND when none was signed yet.
  grpc::Status GetCheckpoint(grpc::ServerContext* context,
                             const v1::GetCheckpointRequest* request,
                             v1::SignedCheckpoint* response) override;
  // The answers of `find`, `position-at` and `statement`
  // (replay/lookup.h). Find: auditor and investigator, as Digest;
  // PositionAt (`--known-at` on a merchant's own store) and GetStatement:
  // also a merchant, GetStatement for its own stores.
  grpc::Status Find(grpc::ServerContext* context,
                    const v1::FindRequest* request,
                    v1::FindResult* response) override;
  grpc::Status PositionAt(grpc::ServerContext* context,
                          const v1::PositionAtRequest* request,
                          v1::PositionAt* response) override;
  grpc::Status GetStatement(grpc::ServerContext* context,
                            const v1::GetStatementRequest* request,
                            v1::Statements* response) override;
  // `diff` (replay/read_views.h DiffStoreAt): as GetStore, also a
  // merchant for its own stores.
  grpc::Status GetDiff(grpc::ServerContext* context,
                       const v1::GetDiffRequest* request,
                       v1::StoreDiff* response) override;
  // `balances` (auditor, investigator) and `postings` (a merchant for its
  // own store; every store: auditor, investigator).
  grpc::Status GetBalances(grpc::ServerContext* context,
                           const v1::GetBalancesRequest* request,
                           v1::BalancesReport* response) override;
  grpc::Status ListPostings(
      grpc::ServerContext* context, const v1::ListPostingsRequest* request,
      grpc::ServerWriter<v1::PostingLine>* writer) override;
  // An online consistent copy of the database (storage/backup.h) in a new
  // directory `name` under backup_dir (auditor, as Audit). INVALID_ARGUMENT
  // for a name that is not one plain path component, ALREADY_EXISTS when
  // it is taken.
  grpc::Status Backup(grpc::ServerContext* context,
                      const v1::BackupRequest* request,
                      v1::BackupResult* response) override;

 private:
  class StreamExecution;  // one ExecuteStream call (server/service.cc)
  // One Execute call waiting for an execute thread.
  struct QueuedExecute {
    const v1::Command* command;  // gRPC's, valid until Finish
    v1::CommandResult* response;
    grpc::ServerUnaryReactor* reactor;
    // A partitioned node's own command: its router, to send it on to the
    // partition's leader if this node no longer leads when it runs; and
    // the caller's authorization, passed on then. nullptr: not partitioned.
    ClusterRouter* router = nullptr;
    std::string authorization;
    // A command of another partition (RouteLoop): that partition, or
    // kAnyPartition when the router places it itself (applyPolicy goes to
    // every partition).
    uint32_t partition = 0;
  };
  static constexpr uint32_t kAnyPartition = ~0u;
  class Subscription;  // one Subscribe call (server/service.cc)

  // The caller's principal if its token allows `permission`;
  // UNAUTHENTICATED or PERMISSION_DENIED otherwise.
  grpc::Status Authorize(const grpc::ServerContextBase& context,
                         Permission permission, Principal* principal) const;
  // PERMISSION_DENIED unless `principal` may read `store_id`
  // (server/auth.h's CheckStoreAccess).
  grpc::Status CheckStoreAccess(const Principal& principal,
                                absl::string_view store_id) const;
  // ServiceOptions::write_gate's answer.
  grpc::Status WriteGate() const;
  // An execute thread: takes what is queued, executes it, answers it.
  void ExecuteLoop();
  void ExecuteQueued(std::vector<QueuedExecute> calls);
  void RouteLoop();
  // Sends calls of one partition and one authorization on as one batch.
  void RouteQueued(std::vector<QueuedExecute> calls);
  // For both: every call answered UNAVAILABLE when the server is stopping
  // (true then); the calls' commands; each call answered with its result.
  bool RefusedWhenStopping(const std::vector<QueuedExecute>& calls) const;
  static std::vector<v1::Command> CommandsOf(
      const std::vector<QueuedExecute>& calls);
  static void Answer(const std::vector<QueuedExecute>& calls,
                     ClusterRouter::Results results);
  // OK once the log holds `min_position` (0: at once); waits at most
  // kMinPositionWaitMax or until `deadline`, then UNAVAILABLE naming this
  // replica's head.
  grpc::Status WaitForPosition(
      uint64_t min_position,
      std::chrono::system_clock::time_point deadline) const;
  // The router this call goes through: nullptr when there is none or a
  // router sent the call here.
  ClusterRouter* RouterFor(const grpc::ServerContextBase& context) const;
  // The start of a read that may name a partition (Digest, Audit,
  // Explain): the caller must be allowed `permission` (its principal in
  // `principal` when not nullptr); a partition another node serves is
  // asked there (`call` on its stub, as Forward in service.cc); then this
  // replica's log must reach request.min_position(). nullopt: answer here.
  template <typename Request, typename Call>
  std::optional<grpc::Status> StartPartitionRead(
      const grpc::ServerContext& context, Permission permission,
      const Request& request, Call call, Principal* principal = nullptr) const;
  // The start of a read of one store (GetStore, GetDiff): the caller may
  // read stores, request.store_id() is set, a store of another partition is
  // asked there (`call` on its stub, which checks access itself), the
  // caller may read this store, and this replica's log reaches
  // request.min_position(). nullopt: answer here.
  template <typename Request, typename Call>
  std::optional<grpc::Status> StartStoreRead(const grpc::ServerContext& context,
                                             const Request& request,
                                             Call call) const;
  // Explain with no partition on a partitioned cluster: every partition
  // asked, the one holding the command answers.
  grpc::Status ExplainInEveryPartition(grpc::ServerContext* context,
                                       const ClusterRouter& router,
                                       const v1::ExplainRequest& request,
                                       v1::Explanation* response);
  // `commands` through `router` (nullptr: this ledger), as ExecuteBatch.
  ClusterRouter::Results ExecuteRouted(ClusterRouter* router,
                                       const std::string& authorization,
                                       std::vector<v1::Command> commands);
  void NotifyAppended();
  // Metrics for one ExecuteBatch's results, which took `took` in all.
  void CountResults(
      const std::vector<absl::StatusOr<v1::CommandResult>>& results,
      absl::Duration took);

  const ServiceOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> subscribers_{0};
  std::atomic<uint64_t> stalled_subscribers_cut_off_{0};

  BatchCounter stream_batches_;
  BatchCounter unary_batches_;

  std::mutex execute_mu_;
  std::condition_variable execute_cv_;
  std::deque<QueuedExecute> execute_queue_ ABSL_GUARDED_BY(execute_mu_);
  bool execute_threads_stop_ ABSL_GUARDED_BY(execute_mu_) = false;
  std::vector<std::thread> execute_threads_;

  std::mutex route_mu_;
  std::condition_variable route_cv_;
  std::deque<QueuedExecute> route_queue_ ABSL_GUARDED_BY(route_mu_);
  // The partitions with a routed batch in flight.
  absl::flat_hash_set<uint32_t> routing_ ABSL_GUARDED_BY(route_mu_);
  bool route_threads_stop_ ABSL_GUARDED_BY(route_mu_) = false;
  std::vector<std::thread> route_threads_;  // kRouteThreads when partitioned

  mutable absl::Mutex mu_;
  uint64_t notified_head_ ABSL_GUARDED_BY(mu_) = 0;
  // The last position each live subscriber was sent (for its lag).
  absl::flat_hash_set<const std::atomic<uint64_t>*> subscriber_positions_
      ABSL_GUARDED_BY(mu_);
  absl::CondVar appended_;
};

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_SERVICE_H_
