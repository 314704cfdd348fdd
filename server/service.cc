// The storeledger.v1.Ledger gRPC service (server/service.h).
//
// Subscribe reads the log with EventLog::Scan from the subscriber's position
// and then waits for new appends: this process holds the only writable
// Ledger, so every acknowledged Execute wakes the waiting subscribers. It
// reads a batch (kReadBatchEvents, kReadBatchBytes), lets go of
// the scan, and only then sends: no subscriber holds a RocksDB iterator,
// snapshot or memtable while it waits for its client, so a client that stops
// reading cannot hold back the flushes that writers wait for (RocksDB's
// write-buffer budget stalls every write while a memtable stays pinned).
//
// A subscriber is cut off with RESOURCE_EXHAUSTED and its resume position
// (trailing metadata `storeledger-resume-position`, and "resume with
// from_position=N" in the message) when its client has not taken an
// envelope for `subscriber_drain_timeout`, or, once caught up, when it
// trails the head by more than `subscriber_buffer_events`. The status
// follows the envelopes already sent, so a client that reads on receives
// every envelope up to the resume position and then the status; it resumes
// from there without a gap. The log is the buffer: a slow subscriber costs
// a batch of memory, and writers nothing. ReadStream reads a store's stream
// the same way, a batch at a time, and ListPostings the log's postings
// (ForEachPosting). On a partitioned cluster, another
// partition's feed is relayed from that partition's leader (Relay), with
// the same cut-off.

#include "server/service.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/check.h"
#include "base/status_macros.h"
#include "core/limits.h"
#include "core/policy.h"
#include "core/streams.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replay/lookup.h"
#include "replay/read_views.h"
#include "storage/backup.h"
#include "storage/merkle_store.h"

namespace storeledger {
namespace {

constexpr char kAuthorizationMetadata[] = "authorization";

// The caller's authorization metadata ("" when none), for a routed call.
std::string AuthorizationOf(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kAuthorizationMetadata);
  if (it == metadata.end()) return std::string();
  return std::string(it->second.data(), it->second.size());
}

// A call another node answers: `there` is that node's stub, or nullptr when
// this node answers it (then nullopt). Otherwise `call` is made on it with
// the caller's token and marked routed, and its status is the answer.
template <typename Call>
std::optional<grpc::Status> Forward(
    const grpc::ServerContextBase& context,
    absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> there,
    Call call) {
  if (!there.ok()) return ToGrpc(there.status());
  if (*there == nullptr) return std::nullopt;
  grpc::ClientContext routed;
  PrepareRoutedCall(&routed, AuthorizationOf(context));
  return call(**there, &routed);
}

// The answer of a handler that computed `answer`: its value in `response`,
// or its status.
template <typename Message>
grpc::Status Reply(absl::StatusOr<Message> answer, Message* response) {
  if (!answer.ok()) return ToGrpc(answer.status());
  *response = *std::move(answer);
  return grpc::Status::OK;
}

// The AsOf a read asks for (GetStore, GetBalances): business time `as_of`,
// checked as a ledger time, and knowledge time `position`, each when set.
template <typename Request>
absl::StatusOr<AsOf> AsOfOf(const Request& request) {
  AsOf as_of;
  if (request.has_as_of()) {
    RETURN_IF_ERROR(CheckLedgerTime("as_of", request.as_of()));
    as_of.business_time = ToTime(request.as_of());
  }
  if (request.has_position()) as_of.position = request.position();
  return as_of;
}

// Forward for a server-streaming call: `open` starts it on the other node's
// stub, and every message it sends is written to `writer` in turn.
template <typename Message, typename Open>
std::optional<grpc::Status> ForwardStream(
    const grpc::ServerContextBase& context,
    absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> there,
    grpc::ServerWriter<Message>* writer, Open open) {
  if (!there.ok()) return ToGrpc(there.status());
  if (*there == nullptr) return std::nullopt;
  grpc::ClientContext routed;
  PrepareRoutedCall(&routed, AuthorizationOf(context));
  std::unique_ptr<grpc::ClientReaderInterface<Message>> reader =
      open(**there, &routed);
  Message message;
  while (reader->Read(&message)) {
    if (!writer->Write(message)) {
      routed.TryCancel();
      reader->Finish();
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  return reader->Finish();
}

// A `partition` named to a ledger that is not partitioned: 0 is its one log;
// any other is refused, not ignored. (A partitioned node's router checks the
// range itself.)
grpc::Status CheckPartitionExists(const ClusterRouter* router,
                                  bool has_partition, uint32_t partition) {
  if (router != nullptr || !has_partition || partition == 0) {
    return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT,
      absl::StrCat("partition ", partition,
                   ": this ledger is not partitioned (its one log is "
                   "partition 0)"));
}

// A partitioned cluster's answer that holds one partition's records and
// positions (balances, every store's postings) must name the partition.
grpc::Status PartitionRequired(const ClusterRouter& router, const char* what,
                               const char* cli) {
  return grpc::Status(
      grpc::StatusCode::FAILED_PRECONDITION,
      absl::StrCat("this cluster has ", router.partitions(),
                   " partitions and positions are per partition: set "
                   "partition (0..",
                   router.partitions() - 1, ") to get ", what, " of one (", cli,
                   ")"));
}

// What the reactors driven by a worker thread (ExecuteStream, Subscribe)
// share: one write in flight at a time and its outcome, cancellation, and
// the two references that free the reactor -- gRPC's until OnDone, the
// worker's until it has called Finish (a reactor refused at once has no
// worker and sets references_ to 1).
template <typename Reactor>
class WorkerReactor : public Reactor {
 public:
  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    write_pending_ = false;
    write_ok_ = ok;
    changed_.notify_all();
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    changed_.notify_all();
  }

  void OnDone() override { Unref(); }

 protected:
  void Unref() {
    if (references_.fetch_sub(1) == 1) delete this;
  }

  std::atomic<int> references_{2};
  std::mutex mu_;
  std::condition_variable changed_;
  bool cancelled_ = false;
  bool write_pending_ = false;
  bool write_ok_ = true;
};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

void BatchCounter::Count(uint64_t commands) {
  batches_.fetch_add(1);
  commands_.fetch_add(commands);
  uint64_t largest = largest_.load();
  while (commands > largest &&
         !largest_.compare_exchange_weak(largest, commands)) {
  }
}

BatchStats BatchCounter::stats() const {
  BatchStats stats;
  stats.batches = batches_.load();
  stats.commands = commands_.load();
  stats.largest_batch_commands = largest_.load();
  return stats;
}

LedgerService::LedgerService(ServiceOptions options)
    : options_(std::move(options)) {
  {
    absl::MutexLock lock(&mu_);
    notified_head_ = options_.ledger->log().head().position;
  }
  for (size_t i = 0; i < kExecuteThreads; ++i) {
    execute_threads_.emplace_back([this] { ExecuteLoop(); });
  }
  if (options_.router != nullptr) {
    for (size_t i = 0; i < kRouteThreads; ++i) {
      route_threads_.emplace_back([this] { RouteLoop(); });
    }
  }
}

LedgerService::~LedgerService() {
  {
    std::lock_guard<std::mutex> lock(execute_mu_);
    execute_threads_stop_ = true;
  }
  execute_cv_.notify_all();
  for (std::thread& thread : execute_threads_) thread.join();
  {
    std::lock_guard<std::mutex> lock(route_mu_);
    route_threads_stop_ = true;
  }
  route_cv_.notify_all();
  for (std::thread& thread : route_threads_) thread.join();
}

void LedgerService::BeginShutdown() {
  stopping_ = true;
  {
    // Routed calls waiting behind a partition's batch are answered now.
    // Taking the lock between setting stopping_ and the notify means a
    // routing thread is either waiting already (and woken) or will see
    // stopping_ when it checks its condition: the wake-up is never lost.
    std::lock_guard<std::mutex> lock(route_mu_);
  }
  route_cv_.notify_all();
  absl::MutexLock lock(&mu_);
  appended_.SignalAll();
}

MetricsGauges LedgerService::Gauges() const {
  MetricsGauges gauges;
  gauges.head_position = options_.ledger->log().head().position;
  absl::MutexLock lock(&mu_);
  gauges.subscribers = subscriber_positions_.size();
  for (const std::atomic<uint64_t>* position : subscriber_positions_) {
    const uint64_t sent = position->load();
    if (gauges.head_position > sent) {
      gauges.subscriber_lag_events_max = std::max(
          gauges.subscriber_lag_events_max, gauges.head_position - sent);
    }
  }
  return gauges;
}

void LedgerService::NotifyAppended() {
  const uint64_t head = options_.ledger->log().head().position;
  absl::MutexLock lock(&mu_);
  if (head > notified_head_) {
    notified_head_ = head;
    appended_.SignalAll();
  }
}

grpc::Status LedgerService::Authorize(const grpc::ServerContextBase& context,
                                      Permission permission,
                                      Principal* principal) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kAuthorizationMetadata);
  std::optional<absl::string_view> authorization;
  if (it != metadata.end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<Principal> found =
      storeledger::Authorize(options_.tokens, authorization, permission);
  if (!found.ok()) return ToGrpc(found.status());
  *principal = *std::move(found);
  return grpc::Status::OK;
}

grpc::Status LedgerService::WriteGate() const {
  if (!options_.write_gate) return grpc::Status::OK;
  return ToGrpc(options_.write_gate());
}

grpc::Status LedgerService::WaitForPosition(
    uint64_t min_position,
    std::chrono::system_clock::time_point deadline) const {
  const EventLog& log = options_.ledger->log();
  if (min_position == 0 || log.head().position >= min_position) {
    return grpc::Status::OK;
  }
  const absl::Time started = absl::Now();
  const absl::Time until =
      std::min(started + kMinPositionWaitMax, absl::FromChrono(deadline));
  while (absl::Now() < until && !stopping_) {
    absl::SleepFor(kMinPositionPollInterval);
    if (log.head().position >= min_position) return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::UNAVAILABLE,
      absl::StrCat("this replica's log is at position ", log.head().position,
                   ", below the requested min_position ", min_position,
                   " (waited ", absl::FormatDuration(absl::Now() - started),
                   "); retry, or read from a replica further on"));
}

grpc::Status LedgerService::CheckStoreAccess(const Principal& principal,
                                             absl::string_view store_id) const {
  return ToGrpc(
      storeledger::CheckStoreAccess(principal, *options_.ledger, store_id));
}

grpc::ServerUnaryReactor* LedgerService::Execute(
    grpc::CallbackServerContext* context, const v1::Command* request,
    v1::CommandResult* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Principal principal;
  grpc::Status allowed = Authorize(*context, Permission::kWrite, &principal);
  ClusterRouter* own_partition = nullptr;
  if (allowed.ok()) {
    ClusterRouter* router = RouterFor(*context);
    // A command of this node's partition, while it leads, takes the queue
    // every unary call takes (batched with the others); ExecuteQueued sends
    // it on if this node no longer leads when it runs.
    if (router != nullptr) {
      absl::StatusOr<uint32_t> partition = router->PartitionOfCommand(*request);
      if (partition.ok() && *partition == router->partition() &&
          WriteGate().ok()) {
        own_partition = router;
        router = nullptr;
      } else {
        // Another partition's: sent on to its leader by a routing thread.
        {
          std::lock_guard<std::mutex> lock(route_mu_);
          route_queue_.push_back({request, response, reactor, router,
                                  AuthorizationOf(*context),
                                  partition.ok() ? *partition : kAnyPartition});
        }
        route_cv_.notify_one();
        return reactor;
      }
    }
    allowed = WriteGate();
  }
  if (!allowed.ok()) {
    reactor->Finish(allowed);
    return reactor;
  }
  {
    std::lock_guard<std::mutex> lock(execute_mu_);
    execute_queue_.push_back(
        {request, response, reactor, own_partition,
         own_partition != nullptr ? AuthorizationOf(*context) : ""});
  }
  execute_cv_.notify_one();
  return reactor;
}

void LedgerService::ExecuteLoop() {
  while (true) {
    std::vector<QueuedExecute> calls;
    {
      std::unique_lock<std::mutex> lock(execute_mu_);
      execute_cv_.wait(
          lock, [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(execute_mu_) {
            return execute_threads_stop_ || !execute_queue_.empty();
          });
      if (execute_queue_.empty()) return;  // stopping, nothing left
      const size_t take =
          std::min(execute_queue_.size(), kStreamBatchCommandsMax);
      calls.assign(execute_queue_.begin(), execute_queue_.begin() + take);
      execute_queue_.erase(execute_queue_.begin(),
                           execute_queue_.begin() + take);
      // More queued than one batch takes: let another thread (when there
      // are several) take it.
      if (!execute_queue_.empty()) execute_cv_.notify_one();
    }
    ExecuteQueued(std::move(calls));
  }
}

void LedgerService::ExecuteQueued(std::vector<QueuedExecute> calls) {
  if (RefusedWhenStopping(calls)) return;
  std::vector<v1::Command> commands = CommandsOf(calls);
  unary_batches_.Count(commands.size());
  const absl::Time started = absl::Now();
  std::vector<absl::StatusOr<v1::CommandResult>> results =
      options_.ledger->ExecuteBatch(std::move(commands));
  // ExecuteBatch stops at the first command whose execution fails (an I/O
  // error); the ones after it were not executed (kCancelled). Each of those
  // gets what Ledger::Execute answers it on its own, as if it had come alone.
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!results[i].ok() && absl::IsCancelled(results[i].status())) {
      results[i] = options_.ledger->Execute(*calls[i].command);
    }
  }
  CountResults(results, absl::Now() - started);
  // Every acknowledged command is in the log before its caller hears of it,
  // and the subscribers are woken before the answers go out.
  NotifyAppended();
  // A partitioned node's own commands: answered with the partition, or,
  // refused because this node no longer leads, sent to the leader the lease
  // now names (its command id makes that safe, as every routed retry). The
  // routing threads send them, so that this thread -- the only one that
  // executes -- neither waits for another node nor for a call that the
  // lease sends back here.
  std::vector<QueuedExecute> answered;
  ClusterRouter::Results answers;
  std::vector<QueuedExecute> send_on;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].router != nullptr && !results[i].ok() &&
        absl::IsUnavailable(results[i].status())) {
      calls[i].partition = calls[i].router->partition();
      send_on.push_back(std::move(calls[i]));
      continue;
    }
    if (calls[i].router != nullptr && results[i].ok()) {
      results[i]->set_partition(calls[i].router->partition());
    }
    answered.push_back(std::move(calls[i]));
    answers.push_back(std::move(results[i]));
  }
  Answer(answered, std::move(answers));
  if (send_on.empty()) return;
  {
    std::lock_guard<std::mutex> lock(route_mu_);
    for (QueuedExecute& call : send_on) route_queue_.push_back(std::move(call));
  }
  route_cv_.notify_all();
}

void LedgerService::RouteLoop() {
  while (true) {
    std::vector<QueuedExecute> calls;
    uint32_t partition = kAnyPartition;
    {
      std::unique_lock<std::mutex> lock(route_mu_);
      // The first queued call whose partition has no batch in flight (any,
      // once stopping: it is answered at once).
      auto first = route_queue_.end();
      route_cv_.wait(lock, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(route_mu_) {
        const bool stopping = stopping_ || route_threads_stop_;
        first = std::find_if(route_queue_.begin(), route_queue_.end(),
                             [&](const QueuedExecute& call)
                                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(route_mu_) {
                                   return stopping ||
                                          !routing_.contains(call.partition);
                                 });
        return route_threads_stop_ || first != route_queue_.end();
      });
      if (first == route_queue_.end()) return;  // stopped, nothing left
      partition = first->partition;
      const std::string authorization = first->authorization;
      // Every call queued for that partition with that authorization, in
      // the order they came.
      for (auto it = first; it != route_queue_.end() &&
                            calls.size() < kStreamBatchCommandsMax;) {
        if (it->partition == partition && it->authorization == authorization) {
          calls.push_back(std::move(*it));
          it = route_queue_.erase(it);
        } else {
          ++it;
        }
      }
      routing_.insert(partition);
    }
    RouteQueued(std::move(calls));
    {
      std::lock_guard<std::mutex> lock(route_mu_);
      routing_.erase(partition);
    }
    route_cv_.notify_all();
  }
}

void LedgerService::RouteQueued(std::vector<QueuedExecute> calls) {
  if (RefusedWhenStopping(calls)) return;
  std::vector<v1::Command> commands = CommandsOf(calls);
  ClusterRouter::Results results = ExecuteRouted(
      calls.front().router, calls.front().authorization, std::move(commands));
  SL_CHECK(results.size() == calls.size(),
           results.size() << " results for " << calls.size() << " commands");
  for (size_t i = 0; i < calls.size(); ++i) {
    // Not executed because an unrelated call's command before it failed:
    // what it gets on its own.
    if (!results[i].ok() && absl::IsCancelled(results[i].status())) {
      results[i] =
          std::move(ExecuteRouted(calls[i].router, calls[i].authorization,
                                  {*calls[i].command})
                        .front());
    }
  }
  Answer(calls, std::move(results));
}

bool LedgerService::RefusedWhenStopping(
    const std::vector<QueuedExecute>& calls) const {
  if (!stopping_) return false;
  for (const QueuedExecute& call : calls) {
    call.reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAVAILABLE,
                     "the server is shutting down; command not executed"));
  }
  return true;
}

std::vector<v1::Command> LedgerService::CommandsOf(
    const std::vector<QueuedExecute>& calls) {
  std::vector<v1::Command> commands;
  commands.reserve(calls.size());
  for (const QueuedExecute& call : calls) commands.push_back(*call.command);
  return commands;
}

void LedgerService::Answer(const std::vector<QueuedExecute>& calls,
                           ClusterRouter::Results results) {
  for (size_t i = 0; i < calls.size(); ++i) {
    if (!results[i].ok()) {
      calls[i].reactor->Finish(ToGrpc(results[i].status()));
      continue;
    }
    *calls[i].response = *std::move(results[i]);
    calls[i].reactor->Finish(grpc::Status::OK);
  }
}

ClusterRouter* LedgerService::RouterFor(
    const grpc::ServerContextBase& context) const {
  if (options_.router == nullptr) return nullptr;
  const auto& metadata = context.client_metadata();
  if (metadata.find(kRoutedMetadata) != metadata.end()) return nullptr;
  return options_.router;
}

ClusterRouter::Results LedgerService::ExecuteRouted(
    ClusterRouter* router, const std::string& authorization,
    std::vector<v1::Command> commands) {
  auto local = [this](std::vector<v1::Command> batch) {
    if (grpc::Status gate = WriteGate(); !gate.ok()) {
      return ClusterRouter::Results(
          batch.size(),
          absl::Status(static_cast<absl::StatusCode>(gate.error_code()),
                       gate.error_message()));
    }
    ClusterRouter::Results results =
        options_.ledger->ExecuteBatch(std::move(batch));
    NotifyAppended();
    return results;
  };
  if (router == nullptr) return local(std::move(commands));
  return router->Execute(std::move(commands), authorization, local);
}

// One ExecuteStream call. gRPC delivers the commands (OnReadDone) into a
// queue; the call's worker thread takes every command queued so far, up to
// kStreamBatchCommandsMax, runs them through one Ledger::ExecuteBatch, writes
// their results in order (one write in flight at a time) and takes the next
// batch. While a batch executes, the commands that arrive meanwhile queue up
// for the next one: a client that pipelines gets group commits of its own
// commands, one that waits for each result gets one-command batches. Reading
// pauses while a full batch waits (back-pressure through gRPC flow control).
//
// The worker ends the call (Finish) when the client has half-closed and
// everything it sent is answered, at the first command that fails, when the
// client goes away, or at shutdown. The reactor deletes itself when both
// gRPC (OnDone) and the worker are done with it.
class LedgerService::StreamExecution final
    : public WorkerReactor<
          grpc::ServerBidiReactor<v1::Command, v1::CommandResult>> {
 public:
  StreamExecution(LedgerService* service, grpc::Status refused,
                  ClusterRouter* router, std::string authorization)
      : service_(service),
        router_(router),
        authorization_(std::move(authorization)) {
    if (!refused.ok()) {
      references_ = 1;  // no worker
      Finish(std::move(refused));
      return;
    }
    StartRead(&incoming_);
    std::thread([this] {
      Finish(Run());
      Unref();
    }).detach();
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      // The client half-closed, or the call is over.
      reads_over_ = true;
    } else {
      queue_.push_back(std::move(incoming_));
      incoming_.Clear();
      if (finishing_) {
        reads_over_ = true;
      } else if (queue_.size() < kStreamBatchCommandsMax) {
        StartRead(&incoming_);
      } else {
        read_paused_ = true;
      }
    }
    changed_.notify_all();
  }

 private:
  // The worker: batches until the call should end; returns its status.
  grpc::Status Run() {
    std::vector<v1::Command> batch;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        while (queue_.empty() && !reads_over_ && !cancelled_ &&
               !service_->stopping_) {
          changed_.wait_for(lock,
                            absl::ToChronoMilliseconds(kStreamPollInterval));
        }
        if (cancelled_) {
          finishing_ = true;
          return ClientGone();
        }
        if (service_->stopping_) {
          finishing_ = true;
          return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "the server is shutting down; commands after "
                              "the last result were not executed");
        }
        if (queue_.empty()) {  // half-closed and all answered
          finishing_ = true;
          return grpc::Status::OK;
        }
        const size_t take = std::min(queue_.size(), kStreamBatchCommandsMax);
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.begin() + take));
        queue_.erase(queue_.begin(), queue_.begin() + take);
        if (read_paused_) {
          read_paused_ = false;
          StartRead(&incoming_);
        }
      }
      service_->stream_batches_.Count(batch.size());
      const absl::Time started = absl::Now();
      std::vector<absl::StatusOr<v1::CommandResult>> results =
          service_->ExecuteRouted(router_, authorization_, std::move(batch));
      batch.clear();
      service_->CountResults(results, absl::Now() - started);
      for (absl::StatusOr<v1::CommandResult>& result : results) {
        // ExecuteBatch stops at the first failed command; the ones after it
        // (kCancelled) were not executed. Nothing after the last result
        // written is acknowledged.
        if (!result.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          finishing_ = true;
          return ToGrpc(result.status());
        }
        if (!Write(*result)) {
          std::lock_guard<std::mutex> lock(mu_);
          finishing_ = true;
          return ClientGone();
        }
      }
    }
  }

  // Writes one result and waits for it to leave; false if the client is gone.
  bool Write(const v1::CommandResult& result) {
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_) return false;
    write_pending_ = true;
    StartWrite(&result);
    changed_.wait(lock, [&] { return !write_pending_; });
    return write_ok_;
  }

  static grpc::Status ClientGone() {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "the client went away; commands after the last result "
                        "it received may have been executed");
  }

  LedgerService* const service_;
  ClusterRouter* const router_;  // nullptr: this ledger
  const std::string authorization_;
  v1::Command incoming_;  // the read in flight writes here
  std::deque<v1::Command> queue_;
  bool read_paused_ = false;  // the queue was full; no read in flight
  bool reads_over_ = false;   // no more commands will arrive
  bool finishing_ = false;    // the worker is ending the call: no new reads
};

void LedgerService::CountResults(
    const std::vector<absl::StatusOr<v1::CommandResult>>& results,
    absl::Duration took) {
  ServerMetrics* metrics = options_.metrics;
  if (metrics == nullptr) return;
  for (const absl::StatusOr<v1::CommandResult>& result : results) {
    if (result.ok()) {
      metrics->CountCommand(*result);
      metrics->ObserveAppend(took);
    } else if (!absl::IsCancelled(result.status())) {
      metrics->CountCommandError();
    }
  }
}

grpc::ServerBidiReactor<v1::Command, v1::CommandResult>*
LedgerService::ExecuteStream(grpc::CallbackServerContext* context) {
  Principal principal;
  grpc::Status allowed = Authorize(*context, Permission::kWrite, &principal);
  ClusterRouter* router = RouterFor(*context);
  if (allowed.ok() && router == nullptr) allowed = WriteGate();
  return new StreamExecution(this, std::move(allowed), router,
                             AuthorizationOf(*context));
}

template <typename Request, typename Call>
std::optional<grpc::Status> LedgerService::StartStoreRead(
    const grpc::ServerContext& context, const Request& request,
    Call call) const {
  Principal principal;
  if (grpc::Status s = Authorize(context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  if (request.store_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "store_id is required");
  }
  // In another partition: asked there (which checks access itself).
  if (ClusterRouter* router = RouterFor(context); router != nullptr) {
    if (std::optional<grpc::Status> answered =
            Forward(context, router->StoreReader(request.store_id()), call)) {
      return answered;
    }
  }
  if (grpc::Status s = CheckStoreAccess(principal, request.store_id());
      !s.ok()) {
    return s;
  }
  if (grpc::Status s =
          WaitForPosition(request.min_position(), context.deadline());
      !s.ok()) {
    return s;
  }
  return std::nullopt;
}

grpc::Status LedgerService::GetStore(grpc::ServerContext* context,
                                     const v1::GetStoreRequest* request,
                                     v1::StoreState* response) {
  if (std::optional<grpc::Status> answered = StartStoreRead(
          *context, *request,
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.GetStore(call, *request, response);
          })) {
    return *answered;
  }
  const absl::Time started = absl::Now();
  absl::StatusOr<AsOf> as_of = AsOfOf(*request);
  if (!as_of.ok()) return ToGrpc(as_of.status());
  absl::StatusOr<v1::StoreState> state =
      options_.ledger->State(request->store_id(), *as_of);
  if (options_.metrics != nullptr) {
    options_.metrics->ObserveRead("GetStore", absl::Now() - started);
  }
  return Reply(std::move(state), response);
}

grpc::Status LedgerService::ReadStream(
    grpc::ServerContext* context, const v1::ReadStreamRequest* request,
    grpc::ServerWriter<v1::Envelope>* writer) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  const std::string& store = request->store_id();
  if (store.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "store_id is required");
  }
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    if (std::optional<grpc::Status> answered = ForwardStream(
            *context, router->StoreReader(store), writer,
            [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
              return stub.ReadStream(call, *request);
            })) {
      return *answered;
    }
  }
  absl::StatusOr<std::optional<std::vector<std::string>>> readable =
      ReadableStores(principal, *options_.ledger);
  if (!readable.ok()) return ToGrpc(readable.status());
  if (absl::Status s =
          storeledger::CheckStoreAccess(principal, *readable, store);
      !s.ok()) {
    return ToGrpc(s);
  }
  if (grpc::Status s =
          WaitForPosition(request->min_position(), context->deadline());
      !s.ok()) {
    return s;
  }
  bool client_gone = false;
  absl::StatusOr<bool> found = ScanStoreHistory(
      options_.ledger->log(), store, request->from_version(),
      request->include_rejections(),
      [&](const v1::Envelope& e) {
        // A merchant is not shown a refusal that names a store (or
        // merchant) other than its own.
        return MayReadRefusal(principal, *readable,
                              e.payload().command_rejected());
      },
      [&](const v1::Envelope& e) {
        client_gone = !writer->Write(e);
        return !client_gone;
      });
  if (!found.ok()) return ToGrpc(found.status());
  if (!*found) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat(
            "store ", store, " has no events",
            request->include_rejections() ? " and no refused commands" : "",
            " in this ledger"));
  }
  if (client_gone) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

// One Subscribe call. A worker thread reads the log in batches (EventLog::
// Scan, which has let go of its iterator when it returns) and writes each
// envelope of a batch once the one before it has left; it waits for the
// client at most subscriber_drain_timeout per envelope, and never while it
// holds anything of RocksDB. When the client is gone, the server stops, or
// the subscriber is cut off, the worker ends the call (Finish). The reactor
// deletes itself when both gRPC (OnDone) and the worker are done with it.
class LedgerService::Subscription final
    : public WorkerReactor<grpc::ServerWriteReactor<v1::Envelope>> {
 public:
  // `refused`: not ok when the call is refused (no worker, no slot); ok when
  // it holds one of the kSubscribersMax slots, which the worker gives back.
  // `relay`: a replica of the partition asked for, when that is not this
  // node's (the feed is read there and written on); nullptr: this log.
  Subscription(LedgerService* service, grpc::CallbackServerContext* context,
               const v1::SubscribeRequest& request, grpc::Status refused,
               std::shared_ptr<v1::Ledger::StubInterface> relay = nullptr)
      : service_(service),
        context_(context),
        request_(request),
        relay_(std::move(relay)) {
    if (!refused.ok()) {
      references_ = 1;  // no worker
      Finish(std::move(refused));
      return;
    }
    std::thread([this] {
      sent_ = request_.from_position();
      // The lag metric is this log's: a relayed feed is another's.
      if (relay_ == nullptr) {
        absl::MutexLock lock(&service_->mu_);
        service_->subscriber_positions_.insert(&sent_);
      }
      grpc::Status status = relay_ != nullptr ? Relay() : Run();
      if (relay_ == nullptr) {
        absl::MutexLock lock(&service_->mu_);
        service_->subscriber_positions_.erase(&sent_);
      }
      // The last touch of the service: once Finish is called, OnDone may
      // come and the server may go.
      service_->subscribers_.fetch_sub(1);
      Finish(std::move(status));
      Unref();
    }).detach();
  }

 private:
  enum class Sent { kSent, kClientGone, kStalled };

  grpc::Status Run() {
    if (grpc::Status s = service_->WaitForPosition(request_.min_position(),
                                                   context_->deadline());
        !s.ok()) {
      return s;
    }
    const EventLog& log = service_->options_.ledger->log();
    last_ = request_.from_position();
    const uint64_t start_head = log.head().position;
    // Caught up once it has reached the head as of the call; from then on
    // it may trail the head by at most subscriber_buffer_events.
    bool live = last_ >= start_head;
    std::vector<v1::Envelope> batch;
    while (true) {
      if (Cancelled()) return ClientGone();
      if (service_->stopping_) {
        return Resume(grpc::StatusCode::UNAVAILABLE,
                      "the server is shutting down");
      }
      if (request_.catch_up_only() && last_ >= start_head) {
        return grpc::Status::OK;
      }
      if (last_ >= log.head().position) {
        live = true;
        absl::MutexLock lock(&service_->mu_);
        if (service_->notified_head_ <= last_ && !service_->stopping_) {
          service_->appended_.WaitWithTimeout(&service_->mu_,
                                              kSubscriberPollInterval);
        }
        continue;
      }
      if (absl::Status s = ReadBatch(log, start_head, &batch); !s.ok()) {
        return ToGrpc(s);
      }
      for (v1::Envelope& envelope : batch) {
        const uint64_t position = envelope.position();
        switch (Write(std::move(envelope))) {
          case Sent::kSent:
            break;
          case Sent::kClientGone:
            return ClientGone();
          case Sent::kStalled:
            // The envelope in flight reaches a client that reads on, before
            // the status: it resumes after it.
            last_ = position;
            sent_ = position;
            service_->stalled_subscribers_cut_off_.fetch_add(1);
            return Resume(
                grpc::StatusCode::RESOURCE_EXHAUSTED,
                absl::StrCat("the subscriber took no event for ",
                             absl::FormatDuration(
                                 service_->options_.subscriber_drain_timeout)));
        }
        last_ = position;
        sent_ = position;
        if (last_ >= start_head) live = true;
        if (live && log.head().position - last_ >
                        service_->options_.subscriber_buffer_events) {
          return Resume(
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("the subscriber fell more than ",
                           service_->options_.subscriber_buffer_events,
                           " events behind the head"));
        }
        if (service_->stopping_ || Cancelled()) break;
      }
    }
  }

  // Another partition's feed: the same call made on a replica of it, each
  // envelope written on as it comes, with the same cut-off for a client
  // that stops reading (the upstream call is then cancelled: it holds
  // nothing there either). Its end is the upstream's, resume position
  // included (the last envelope written here is the last received).
  grpc::Status Relay() {
    grpc::ClientContext upstream;
    PrepareRoutedCall(&upstream, AuthorizationOf(*context_));
    upstream.set_deadline(context_->deadline());
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cancelled_) return ClientGone();
      upstream_ = &upstream;
    }
    std::unique_ptr<grpc::ClientReaderInterface<v1::Envelope>> reader =
        relay_->Subscribe(&upstream, request_);
    last_ = request_.from_position();
    std::optional<grpc::Status> ended;
    v1::Envelope envelope;
    while (!ended.has_value() && reader->Read(&envelope)) {
      const uint64_t position = envelope.position();
      switch (Write(std::move(envelope))) {
        case Sent::kSent:
          last_ = position;
          sent_ = position;
          break;
        case Sent::kClientGone:
          ended = ClientGone();
          break;
        case Sent::kStalled:
          last_ = position;
          sent_ = position;
          service_->stalled_subscribers_cut_off_.fetch_add(1);
          ended = Resume(
              grpc::StatusCode::RESOURCE_EXHAUSTED,
              absl::StrCat("the subscriber took no event for ",
                           absl::FormatDuration(
                               service_->options_.subscriber_drain_timeout)));
          break;
      }
    }
    if (ended.has_value()) {
      upstream.TryCancel();
      while (reader->Read(&envelope)) {
      }
    }
    grpc::Status finished = reader->Finish();
    {
      std::lock_guard<std::mutex> lock(mu_);
      upstream_ = nullptr;
    }
    if (ended.has_value()) return *ended;
    if (finished.ok()) return finished;
    if (upstream.GetServerTrailingMetadata().count(kResumePositionMetadata)) {
      context_->AddTrailingMetadata(kResumePositionMetadata,
                                    absl::StrCat(last_));
    }
    return grpc::Status(finished.error_code(),
                        absl::StrCat("partition ", request_.partition(), ": ",
                                     finished.error_message()));
  }

  void OnCancel() override {
    WorkerReactor::OnCancel();
    std::lock_guard<std::mutex> lock(mu_);
    if (upstream_ != nullptr) upstream_->TryCancel();
  }

  // The envelopes after last_ (up to start_head for a catch-up-only call),
  // at most kReadBatchEvents of them and stopping after the one that
  // reaches kReadBatchBytes. The scan is over when this returns.
  absl::Status ReadBatch(const EventLog& log, uint64_t start_head,
                         std::vector<v1::Envelope>* batch) const {
    batch->clear();
    size_t bytes = 0;
    return log.Scan(
        last_, [&](const v1::Envelope& envelope, absl::string_view raw) {
          if (request_.catch_up_only() && envelope.position() > start_head) {
            return false;
          }
          batch->push_back(envelope);
          bytes += raw.size();
          return batch->size() < kReadBatchEvents && bytes < kReadBatchBytes;
        });
  }

  // Hands `envelope` to gRPC and waits, at most subscriber_drain_timeout,
  // for it to leave. kStalled leaves the write pending (outgoing_ stays
  // alive with the reactor).
  Sent Write(v1::Envelope envelope) {
    std::unique_lock<std::mutex> lock(mu_);
    if (cancelled_) return Sent::kClientGone;
    outgoing_ = std::move(envelope);
    write_pending_ = true;
    StartWrite(&outgoing_);
    if (!changed_.wait_for(lock,
                           absl::ToChronoMilliseconds(
                               service_->options_.subscriber_drain_timeout),
                           [&] { return !write_pending_ || cancelled_; })) {
      return Sent::kStalled;
    }
    return !write_pending_ && write_ok_ ? Sent::kSent : Sent::kClientGone;
  }

  bool Cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

  // Ends the call with `code`, naming the position to resume from.
  grpc::Status Resume(grpc::StatusCode code, absl::string_view why) {
    context_->AddTrailingMetadata(kResumePositionMetadata, absl::StrCat(last_));
    return grpc::Status(
        code, absl::StrCat(why, "; resume with from_position=", last_));
  }

  static grpc::Status ClientGone() {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }

  LedgerService* const service_;
  grpc::CallbackServerContext* const context_;
  const v1::SubscribeRequest request_;
  const std::shared_ptr<v1::Ledger::StubInterface> relay_;
  grpc::ClientContext* upstream_ = nullptr;  // Relay's call; guarded by mu_
  uint64_t last_ = 0;  // the last position handed to gRPC (worker only)
  std::atomic<uint64_t> sent_{0};  // last_, for the lag metric
  v1::Envelope outgoing_;          // the write in flight reads it
};

grpc::ServerWriteReactor<v1::Envelope>* LedgerService::Subscribe(
    grpc::CallbackServerContext* context, const v1::SubscribeRequest* request) {
  Principal principal;
  grpc::Status refused = Authorize(*context, Permission::kReadLog, &principal);
  if (refused.ok()) {
    refused = CheckPartitionExists(options_.router, request->has_partition(),
                                   request->partition());
  }
  // Another partition's feed is relayed from a replica of it; a call routed
  // here already is served from this log or refused (routed at most once).
  std::shared_ptr<v1::Ledger::StubInterface> relay;
  if (refused.ok() && request->has_partition() && options_.router != nullptr &&
      request->partition() != options_.router->partition()) {
    if (ClusterRouter* router = RouterFor(*context); router == nullptr) {
      refused =
          grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                       absl::StrCat("this node serves partition ",
                                    options_.router->partition(),
                                    "; a routed subscription to partition ",
                                    request->partition(), " reached it"));
    } else if (absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>>
                   there = router->PartitionReader(request->partition());
               !there.ok()) {
      refused = ToGrpc(there.status());
    } else {
      relay = *std::move(there);
    }
  }
  if (refused.ok() && subscribers_.fetch_add(1) >= kSubscribersMax) {
    subscribers_.fetch_sub(1);
    refused = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                           absl::StrCat("more than ", kSubscribersMax,
                                        " subscribers; retry later"));
  }
  return new Subscription(this, context, *request, std::move(refused),
                          std::move(relay));
}

template <typename Request, typename Call>
std::optional<grpc::Status> LedgerService::StartPartitionRead(
    const grpc::ServerContext& context, Permission permission,
    const Request& request, Call call, Principal* principal) const {
  Principal caller;
  if (grpc::Status s = Authorize(context, permission, &caller); !s.ok()) {
    return s;
  }
  if (principal != nullptr) *principal = caller;
  if (grpc::Status s = CheckPartitionExists(
          options_.router, request.has_partition(), request.partition());
      !s.ok()) {
    return s;
  }
  if (ClusterRouter* router = RouterFor(context);
      router != nullptr && request.has_partition()) {
    if (std::optional<grpc::Status> answered = Forward(
            context, router->PartitionReader(request.partition()), call)) {
      return answered;
    }
  }
  if (grpc::Status s =
          WaitForPosition(request.min_position(), context.deadline());
      !s.ok()) {
    return s;
  }
  return std::nullopt;
}

grpc::Status LedgerService::Digest(grpc::ServerContext* context,
                                   const v1::DigestRequest* request,
                                   v1::Digest* response) {
  if (std::optional<grpc::Status> answered = StartPartitionRead(
          *context, Permission::kDigest, *request,
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.Digest(call, *request, response);
          })) {
    return *answered;
  }
  if (options_.router != nullptr) {
    response->set_partition(options_.router->partition());
    response->set_partitions(options_.router->partitions());
  }
  const Head head = options_.ledger->log().head();
  response->set_position(head.position);
  response->set_hash(ToHex(head.hash));
  return grpc::Status::OK;
}

grpc::Status LedgerService::Audit(grpc::ServerContext* context,
                                  const v1::AuditRequest* request,
                                  v1::AuditReport* response) {
  if (std::optional<grpc::Status> answered = StartPartitionRead(
          *context, Permission::kAudit, *request,
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.Audit(call, *request, response);
          })) {
    return *answered;
  }
  // The live log, through one snapshot shared by every pass (replay/
  // audit.h); writers carry on meanwhile. Not a read-only open of the
  // directory beside this instance: RocksDB deletes the files it would read
  // as it compacts, and the audit answered DATA_LOSS on a sound ledger.
  absl::StatusOr<v1::AuditReport> report =
      storeledger::Audit(options_.ledger->log());
  if (!report.ok()) return ToGrpc(report.status());
  *response = *std::move(report);
  if (options_.router != nullptr) {
    response->set_partition(options_.router->partition());
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::Explain(grpc::ServerContext* context,
                                    const v1::ExplainRequest* request,
                                    v1::Explanation* response) {
  if (request->command_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "command_id is required");
  }
  if (ClusterRouter* router = RouterFor(*context);
      router != nullptr && !request->has_partition()) {
    return ExplainInEveryPartition(context, *router, *request, response);
  }
  Principal principal;
  if (std::optional<grpc::Status> answered = StartPartitionRead(
          *context, Permission::kReadStore, *request,
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.Explain(call, *request, response);
          },
          &principal)) {
    return *answered;
  }
  absl::StatusOr<v1::Explanation> explanation =
      ExplainAs(principal, *options_.ledger, request->command_id());
  if (!explanation.ok()) return ToGrpc(explanation.status());
  *response = *std::move(explanation);
  if (options_.router != nullptr) {
    response->mutable_outcome()->set_partition(options_.router->partition());
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::ExplainInEveryPartition(
    grpc::ServerContext* context, const ClusterRouter& router,
    const v1::ExplainRequest& request, v1::Explanation* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  if (request.min_position() != 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "min_position is a position of one partition's log: "
                        "set partition too");
  }
  // A command id is unique in its partition: each partition answers for
  // its own log (NOT_FOUND when the id is not there; a merchant's
  // PERMISSION_DENIED then too), and any other failure is the answer, as
  // the command may be where it failed.
  std::vector<uint32_t> holders;
  grpc::Status absent(grpc::StatusCode::NOT_FOUND, "");
  for (uint32_t p = 0; p < router.partitions(); ++p) {
    v1::ExplainRequest one = request;
    one.set_partition(p);
    v1::Explanation there;
    grpc::Status s = Explain(context, &one, &there);
    if (s.ok()) {
      holders.push_back(p);
      *response = std::move(there);
    } else if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
               s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
      if (absent.error_message().empty() ||
          s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        absent = s;
      }
    } else {
      const std::string named = absl::StrCat("partition ", p);
      return grpc::Status(
          s.error_code(),
          absl::StrCat(absl::StartsWith(s.error_message(), named)
                           ? ""
                           : absl::StrCat(named, ": "),
                       s.error_message(),
                       " (the command may be there; set partition to ask "
                       "another alone)"));
    }
  }
  if (holders.empty()) return absent;
  if (holders.size() > 1) {
    response->Clear();
    return grpc::Status(
        grpc::StatusCode::FAILED_PRECONDITION,
        absl::StrCat("command ", request.command_id(), " is in partitions ",
                     absl::StrJoin(holders, ", "),
                     " (an applyPolicy runs in each): set partition to "
                     "explain one's (storeledger explain --partition N)"));
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::Backup(grpc::ServerContext* context,
                                   const v1::BackupRequest* request,
                                   v1::BackupResult* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kAudit, &principal);
      !s.ok()) {
    return s;
  }
  if (options_.backup_dir.empty()) {
    return ToGrpc(absl::FailedPreconditionError(
        "this storeledgerd takes no backups: start it with --backup-dir DIR"));
  }
  // One plain path component: a caller names a copy, never a place.
  const std::string& name = request->name();
  const bool plain =
      !name.empty() && name.size() <= kIdBytesMax && name != "." &&
      name != ".." && std::all_of(name.begin(), name.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
               c == '-' || c == '_';
      });
  if (!plain) {
    return ToGrpc(absl::InvalidArgumentError(absl::StrCat(
        "backup name '", name, "' must be 1..", kIdBytesMax,
        " letters, digits, '.', '-' or '_' (a directory under --backup-dir)")));
  }
  const std::string path = absl::StrCat(options_.backup_dir, "/", name);
  absl::StatusOr<Head> head = BackupTo(options_.ledger->log(), path);
  if (!head.ok()) return ToGrpc(head.status());
  response->set_path(path);
  response->mutable_head()->set_position(head->position);
  response->mutable_head()->set_hash(ToHex(head->hash));
  return grpc::Status::OK;
}

grpc::Status LedgerService::GetInclusionProof(
    grpc::ServerContext* context, const v1::GetInclusionProofRequest* request,
    v1::InclusionProof* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  return Reply(InclusionProofMessage(options_.ledger->log(),
                                     request->position(), request->tree_size()),
               response);
}

grpc::Status LedgerService::GetConsistencyProof(
    grpc::ServerContext* context, const v1::GetConsistencyProofRequest* request,
    v1::ConsistencyProof* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  return Reply(
      ConsistencyProofMessage(options_.ledger->log(), request->first_size(),
                              request->second_size()),
      response);
}

grpc::Status LedgerService::GetCheckpoint(grpc::ServerContext* context,
                                          const v1::GetCheckpointRequest*,
                                          v1::SignedCheckpoint* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::optional<v1::SignedCheckpoint>> latest =
      LatestCheckpoint(options_.ledger->log());
  if (!latest.ok()) return ToGrpc(latest.status());
  if (!latest->has_value()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        "no checkpoint was signed yet (storeledgerd "
                        "--checkpoint-key, or storeledger checkpoint)");
  }
  *response = **std::move(latest);
  return grpc::Status::OK;
}

grpc::Status LedgerService::Find(grpc::ServerContext* context,
                                 const v1::FindRequest* request,
                                 v1::FindResult* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  if (request->id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "id is required");
  }
  absl::StatusOr<v1::FindResult> found =
      FindId(options_.ledger->log(), request->id());
  if (!found.ok()) return ToGrpc(found.status());
  *response = *std::move(found);
  // A partitioned cluster: what every other partition knows of the id too
  // (an applyPolicy's command id is in each; anything else in one).
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    for (uint32_t p = 0; p < router->partitions(); ++p) {
      v1::FindResult there;
      std::optional<grpc::Status> answered = Forward(
          *context, router->PartitionReader(p),
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.Find(call, *request, &there);
          });
      if (!answered.has_value()) continue;  // this node's partition
      if (!answered->ok()) return *answered;
      for (v1::IdMatch& match : *there.mutable_matches()) {
        *response->add_matches() = std::move(match);
      }
    }
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::PositionAt(grpc::ServerContext* context,
                                       const v1::PositionAtRequest* request,
                                       v1::PositionAt* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = CheckPartitionExists(
          options_.router, request->has_partition(), request->partition());
      !s.ok()) {
    return s;
  }
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> there =
        nullptr;  // this node's log
    if (!request->store_id().empty()) {
      there = router->StoreReader(request->store_id());
    } else if (request->has_partition()) {
      there = router->PartitionReader(request->partition());
    }
    if (std::optional<grpc::Status> answered = Forward(
            *context, std::move(there),
            [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
              return stub.PositionAt(call, *request, response);
            })) {
      return *answered;
    }
  }
  std::optional<absl::Time> at;
  if (request->has_at()) {
    if (absl::Status s = CheckLedgerTime("at", request->at()); !s.ok()) {
      return ToGrpc(s);
    }
    at = ToTime(request->at());
  }
  std::optional<uint64_t> position;
  if (request->has_position()) position = request->position();
  return Reply(
      ResolvePosition(options_.ledger->log(), at, position, request->written()),
      response);
}

grpc::Status LedgerService::GetDiff(grpc::ServerContext* context,
                                    const v1::GetDiffRequest* request,
                                    v1::StoreDiff* response) {
  if (std::optional<grpc::Status> answered = StartStoreRead(
          *context, *request,
          [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
            return stub.GetDiff(call, *request, response);
          })) {
    return *answered;
  }
  const absl::Time started = absl::Now();
  absl::StatusOr<AsOf> from = AsOfOf(request->from());
  if (!from.ok()) return ToGrpc(from.status());
  absl::StatusOr<AsOf> to = AsOfOf(request->to());
  if (!to.ok()) return ToGrpc(to.status());
  absl::StatusOr<v1::StoreDiff> diff = DiffStoreAt(
      [&](const AsOf& as_of) {
        return options_.ledger->State(request->store_id(), as_of);
      },
      *from, *to);
  if (options_.metrics != nullptr) {
    options_.metrics->ObserveRead("GetDiff", absl::Now() - started);
  }
  return Reply(std::move(diff), response);
}

grpc::Status LedgerService::GetStatement(grpc::ServerContext* context,
                                         const v1::GetStatementRequest* request,
                                         v1::Statements* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  if (request->store_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "store_id is required");
  }
  if (!request->has_from() || !request->has_to()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "from and to are required (the period is [from, to))");
  }
  if (absl::Status s = CheckLedgerTime("from", request->from()); !s.ok()) {
    return ToGrpc(s);
  }
  if (absl::Status s = CheckLedgerTime("to", request->to()); !s.ok()) {
    return ToGrpc(s);
  }
  // In another partition: asked there (which checks access itself).
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    if (std::optional<grpc::Status> answered = Forward(
            *context, router->StoreReader(request->store_id()),
            [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
              return stub.GetStatement(call, *request, response);
            })) {
      return *answered;
    }
  }
  if (grpc::Status s = CheckStoreAccess(principal, request->store_id());
      !s.ok()) {
    return s;
  }
  const EventLog& log = options_.ledger->log();
  // The head first: the statements hold nothing past it.
  absl::StatusOr<v1::PositionAt> head =
      ResolvePosition(log, std::nullopt, std::nullopt, "");
  if (!head.ok()) return ToGrpc(head.status());
  absl::StatusOr<std::vector<v1::Statement>> statements =
      StatementsOf(log, request->store_id(), request->pair(),
                   ToTime(request->from()), ToTime(request->to()));
  if (!statements.ok()) return ToGrpc(statements.status());
  // A merchant sees a pair only when both stores are its own (an upgrade
  // keeps the merchant, so they are).
  for (const v1::Statement& statement : *statements) {
    if (grpc::Status s = CheckStoreAccess(principal, statement.store_id());
        !s.ok()) {
      return s;
    }
    *response->add_statements() = statement;
  }
  response->set_position(head->position());
  *response->mutable_recorded_at() = head->recorded_at();
  return grpc::Status::OK;
}

grpc::Status LedgerService::GetBalances(grpc::ServerContext* context,
                                        const v1::GetBalancesRequest* request,
                                        v1::BalancesReport* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = CheckPartitionExists(
          options_.router, request->has_partition(), request->partition());
      !s.ok()) {
    return s;
  }
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    if (!request->has_partition()) {
      return PartitionRequired(*router, "balances",
                               "storeledger balances --server sums them");
    }
    if (std::optional<grpc::Status> answered = Forward(
            *context, router->PartitionReader(request->partition()),
            [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
              return stub.GetBalances(call, *request, response);
            })) {
      return *answered;
    }
  }
  absl::StatusOr<AsOf> as_of = AsOfOf(*request);
  if (!as_of.ok()) return ToGrpc(as_of.status());
  const EventLog& log = options_.ledger->log();
  return Reply(as_of->empty() ? BalancesFromProjections(log)
                              : BalancesFromPostings(log, *as_of),
               response);
}

grpc::Status LedgerService::ListPostings(
    grpc::ServerContext* context, const v1::ListPostingsRequest* request,
    grpc::ServerWriter<v1::PostingLine>* writer) {
  Principal principal;
  const bool one_store = !request->store_id().empty();
  if (grpc::Status s = Authorize(
          *context, one_store ? Permission::kReadStore : Permission::kDigest,
          &principal);
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = CheckPartitionExists(
          options_.router, request->has_partition(), request->partition());
      !s.ok()) {
    return s;
  }
  if (ClusterRouter* router = RouterFor(*context); router != nullptr) {
    if (!one_store && !request->has_partition()) {
      return PartitionRequired(
          *router, "postings",
          "storeledger postings --server --partition N lists one's");
    }
    if (std::optional<grpc::Status> answered = ForwardStream(
            *context,
            one_store ? router->StoreReader(request->store_id())
                      : router->PartitionReader(request->partition()),
            writer,
            [&](v1::Ledger::StubInterface& stub, grpc::ClientContext* call) {
              return stub.ListPostings(call, *request);
            })) {
      return *answered;
    }
  }
  PostingFilter filter;
  if (one_store) {
    if (grpc::Status s = CheckStoreAccess(principal, request->store_id());
        !s.ok()) {
      return s;
    }
    filter.store_id = request->store_id();
  }
  if (request->has_from()) {
    if (absl::Status s = CheckLedgerTime("from", request->from()); !s.ok()) {
      return ToGrpc(s);
    }
    filter.from = ToTime(request->from());
  }
  if (request->has_to()) {
    if (absl::Status s = CheckLedgerTime("to", request->to()); !s.ok()) {
      return ToGrpc(s);
    }
    filter.to = ToTime(request->to());
  }
  if (request->has_max_position())
    filter.max_position = request->max_position();
  bool client_gone = false;
  absl::Status status = ForEachPosting(options_.ledger->log(), filter,
                                       [&](const v1::PostingLine& line) {
                                         client_gone = !writer->Write(line);
                                         return !client_gone;
                                       });
  if (!status.ok()) return ToGrpc(status);
  if (client_gone) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

}  // namespace storeledger
