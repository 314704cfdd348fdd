// The storeledger.v1.Ledger gRPC service over one writable Ledger (issue 7).
// Every handler authenticates the caller's bearer token and checks its role
// (server/auth.h) before touching the ledger.
//
// Subscribe reads the log with EventLog::Scan from the subscriber's position
// and then waits for new appends: this process holds the only writable
// Ledger, so every acknowledged Execute wakes the waiting subscribers. Each
// subscriber may be at most `subscriber_buffer_events` events behind the
// head once it has caught up; one that falls further behind is cut off with
// RESOURCE_EXHAUSTED (trailing metadata `storeledger-resume-position`) and
// resumes from the last position it received. The log is the buffer, so a
// slow subscriber costs no memory, and it never slows the writers.
//
// Safe for concurrent use: gRPC calls the handlers from many threads.
#ifndef STORELEDGER_SERVER_SERVICE_H_
#define STORELEDGER_SERVER_SERVICE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "ledger/ledger.h"
#include "server/auth.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {

// How far (in events) a caught-up subscriber may trail the head.
inline constexpr size_t kSubscriberBufferEventsDefault = 4096;
// Concurrent Subscribe calls; each holds a server thread while it follows.
inline constexpr size_t kSubscribersMax = 64;
// A waiting subscriber re-checks for cancellation this often.
inline constexpr absl::Duration kSubscriberPollInterval = absl::Milliseconds(100);
// ExecuteStream hands the commands that have arrived on a stream, up to this
// many, to one Ledger::ExecuteBatch (one group commit, one sync). It also
// bounds what a stream buffers: reading pauses while this many wait.
inline constexpr size_t kStreamBatchCommandsMax = 256;
// An idle ExecuteStream re-checks for shutdown this often.
inline constexpr absl::Duration kStreamPollInterval = absl::Milliseconds(100);
// Trailing metadata naming where a cut-off subscriber should resume.
inline constexpr char kResumePositionMetadata[] = "storeledger-resume-position";

// What ExecuteStream did since the service started (for tests and
// benchmarks): Ledger::ExecuteBatch calls and the commands they executed.
struct StreamBatchStats {
  uint64_t batches = 0;
  uint64_t commands = 0;
  uint64_t largest_batch_commands = 0;
};

struct ServiceOptions {
  // Not owned; must outlive the service.
  Ledger* ledger = nullptr;
  // Not owned. nullptr: no authentication, every caller may do everything
  // (the server allows that on loopback only).
  const TokenTable* tokens = nullptr;
  // The database directory, for Audit's read-only view of the log.
  std::string db_dir;
  size_t subscriber_buffer_events = kSubscriberBufferEventsDefault;
  // Asked before every Execute and ExecuteStream: a status other than ok
  // refuses the call with it (a replica that does not lead its partition
  // answers UNAVAILABLE naming the leader, replication/replica.h).
  // Default: none (every write is let through).
  std::function<absl::Status()> write_gate = nullptr;
};

// ExecuteStream is a callback-API method (a reactor) so that it can see which
// commands have already arrived and end the call with a status while a read
// is still pending; the other methods are synchronous.
class LedgerService final
    : public v1::Ledger::WithCallbackMethod_ExecuteStream<v1::Ledger::Service> {
 public:
  explicit LedgerService(ServiceOptions options);

  // Shutdown, step one: new commands are refused (UNAVAILABLE), streams end
  // after the command in hand, subscribers end with UNAVAILABLE and their
  // resume position.
  void BeginShutdown();

  StreamBatchStats stream_batch_stats() const;

  grpc::Status Execute(grpc::ServerContext* context, const v1::Command* request,
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
  grpc::Status Subscribe(grpc::ServerContext* context,
                         const v1::SubscribeRequest* request,
                         grpc::ServerWriter<v1::Envelope>* writer) override;
  grpc::Status Digest(grpc::ServerContext* context,
                      const v1::DigestRequest* request,
                      v1::Digest* response) override;
  grpc::Status Audit(grpc::ServerContext* context,
                     const v1::AuditRequest* request,
                     v1::AuditReport* response) override;

 private:
  enum class Permission { kWrite, kReadStore, kReadLog, kDigest, kAudit };

  class StreamExecution;  // one ExecuteStream call (server/service.cc)

  // The caller's principal if its token allows `permission`;
  // UNAUTHENTICATED or PERMISSION_DENIED otherwise.
  grpc::Status Authorize(const grpc::ServerContextBase& context,
                         Permission permission, Principal* principal) const;
  // PERMISSION_DENIED unless `principal` may read `store_id` (a merchant
  // reads only its own stores; an unknown store is denied too, so that a
  // merchant cannot probe which stores exist).
  grpc::Status CheckStoreAccess(const Principal& principal,
                                absl::string_view store_id) const;
  // ServiceOptions::write_gate's answer.
  grpc::Status WriteGate() const;
  // Executes one command and wakes the subscribers.
  grpc::Status ExecuteOne(const v1::Command& command, v1::CommandResult* result);
  void NotifyAppended();
  void CountStreamBatch(uint64_t commands);

  const ServiceOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> subscribers_{0};

  std::atomic<uint64_t> stream_batches_{0};
  std::atomic<uint64_t> stream_batch_commands_{0};
  std::atomic<uint64_t> stream_largest_batch_commands_{0};

  absl::Mutex mu_;
  uint64_t notified_head_ ABSL_GUARDED_BY(mu_) = 0;
  absl::CondVar appended_;
};

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_SERVICE_H_
