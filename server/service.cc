#include "server/service.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/policy.h"
#include "core/streams.h"
#include "replay/audit.h"

namespace storeledger {
namespace {

constexpr char kAuthorizationMetadata[] = "authorization";

grpc::Status Denied(absl::string_view what) {
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(what));
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

LedgerService::LedgerService(ServiceOptions options)
    : options_(std::move(options)) {
  absl::MutexLock lock(&mu_);
  notified_head_ = options_.ledger->log().head().position;
}

void LedgerService::BeginShutdown() {
  stopping_ = true;
  absl::MutexLock lock(&mu_);
  appended_.SignalAll();
}

StreamBatchStats LedgerService::stream_batch_stats() const {
  StreamBatchStats stats;
  stats.batches = stream_batches_.load();
  stats.commands = stream_batch_commands_.load();
  stats.largest_batch_commands = stream_largest_batch_commands_.load();
  return stats;
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
  if (options_.tokens == nullptr) {
    principal->unrestricted = true;
    return grpc::Status::OK;
  }
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kAuthorizationMetadata);
  if (it == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing `authorization: Bearer <token>` metadata");
  }
  std::optional<absl::string_view> token = BearerToken(
      absl::string_view(it->second.data(), it->second.size()));
  if (!token.has_value()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "authorization metadata is not `Bearer <token>`");
  }
  std::optional<Principal> found = options_.tokens->Lookup(*token);
  if (!found.has_value()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unknown token");
  }
  *principal = *std::move(found);
  const Role role = principal->role;
  bool allowed = false;
  switch (permission) {
    case Permission::kWrite:
      allowed = role == Role::kWriter;
      break;
    case Permission::kReadStore:
      allowed = role == Role::kAuditor || role == Role::kInvestigator ||
                role == Role::kMerchant;
      break;
    case Permission::kReadLog:
    case Permission::kDigest:
      allowed = role == Role::kAuditor || role == Role::kInvestigator;
      break;
    case Permission::kAudit:
      allowed = role == Role::kAuditor;
      break;
  }
  if (!allowed) {
    return Denied(absl::StrCat("role ", RoleName(*principal),
                               " may not call this method"));
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::WriteGate() const {
  if (!options_.write_gate) return grpc::Status::OK;
  return ToGrpc(options_.write_gate());
}

grpc::Status LedgerService::CheckStoreAccess(const Principal& principal,
                                             absl::string_view store_id) const {
  if (principal.unrestricted || principal.role != Role::kMerchant) {
    return grpc::Status::OK;
  }
  absl::StatusOr<v1::StoreState> state = options_.ledger->State(store_id);
  if (!state.ok() && !absl::IsNotFound(state.status())) {
    return ToGrpc(state.status());
  }
  if (!state.ok() || state->merchant_id() != principal.merchant_id) {
    return Denied(absl::StrCat("role ", RoleName(principal),
                               " may not read store ", store_id));
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::ExecuteOne(const v1::Command& command,
                                       v1::CommandResult* result) {
  if (stopping_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; command not executed");
  }
  absl::StatusOr<v1::CommandResult> executed = options_.ledger->Execute(command);
  // Even a failed Execute may have moved the head (it did not, by contract,
  // but waking subscribers costs nothing).
  NotifyAppended();
  if (!executed.ok()) return ToGrpc(executed.status());
  *result = *std::move(executed);
  return grpc::Status::OK;
}

grpc::Status LedgerService::Execute(grpc::ServerContext* context,
                                    const v1::Command* request,
                                    v1::CommandResult* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kWrite, &principal);
      !s.ok()) {
    return s;
  }
  if (grpc::Status s = WriteGate(); !s.ok()) return s;
  return ExecuteOne(*request, response);
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
    : public grpc::ServerBidiReactor<v1::Command, v1::CommandResult> {
 public:
  StreamExecution(LedgerService* service, grpc::Status refused)
      : service_(service) {
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
      service_->CountStreamBatch(batch.size());
      std::vector<absl::StatusOr<v1::CommandResult>> results =
          service_->options_.ledger->ExecuteBatch(std::move(batch));
      batch.clear();
      service_->NotifyAppended();
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

  void Unref() {
    if (references_.fetch_sub(1) == 1) delete this;
  }

  LedgerService* const service_;
  // gRPC's (until OnDone) and the worker's (until it has called Finish).
  std::atomic<int> references_{2};

  std::mutex mu_;
  std::condition_variable changed_;
  v1::Command incoming_;  // the read in flight writes here
  std::deque<v1::Command> queue_;
  bool read_paused_ = false;   // the queue was full; no read in flight
  bool reads_over_ = false;    // no more commands will arrive
  bool finishing_ = false;     // the worker is ending the call: no new reads
  bool cancelled_ = false;
  bool write_pending_ = false;
  bool write_ok_ = true;
};

void LedgerService::CountStreamBatch(uint64_t commands) {
  stream_batches_.fetch_add(1);
  stream_batch_commands_.fetch_add(commands);
  uint64_t largest = stream_largest_batch_commands_.load();
  while (commands > largest &&
         !stream_largest_batch_commands_.compare_exchange_weak(largest,
                                                               commands)) {
  }
}

grpc::ServerBidiReactor<v1::Command, v1::CommandResult>*
LedgerService::ExecuteStream(grpc::CallbackServerContext* context) {
  Principal principal;
  grpc::Status allowed = Authorize(*context, Permission::kWrite, &principal);
  if (allowed.ok()) allowed = WriteGate();
  return new StreamExecution(this, std::move(allowed));
}

grpc::Status LedgerService::GetStore(grpc::ServerContext* context,
                                     const v1::GetStoreRequest* request,
                                     v1::StoreState* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadStore, &principal);
      !s.ok()) {
    return s;
  }
  if (request->store_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "store_id is required");
  }
  if (grpc::Status s = CheckStoreAccess(principal, request->store_id());
      !s.ok()) {
    return s;
  }
  AsOf as_of;
  if (request->has_as_of()) as_of.business_time = ToTime(request->as_of());
  if (request->has_position()) as_of.position = request->position();
  absl::StatusOr<v1::StoreState> state =
      options_.ledger->State(request->store_id(), as_of);
  if (!state.ok()) return ToGrpc(state.status());
  *response = *std::move(state);
  return grpc::Status::OK;
}

grpc::Status LedgerService::ReadStream(grpc::ServerContext* context,
                                       const v1::ReadStreamRequest* request,
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
  if (grpc::Status s = CheckStoreAccess(principal, store); !s.ok()) return s;
  const EventLog& log = options_.ledger->log();

  // As `storeledger history`: the refusals naming the store (few), merged by
  // position with the store's own stream.
  std::vector<v1::Envelope> refusals;
  if (request->include_rejections()) {
    absl::Status status =
        log.ScanStream(kRejectionsStream, 0, [&](const v1::Envelope& e) {
          const auto& ids = e.payload().command_rejected().store_ids();
          if (std::find(ids.begin(), ids.end(), store) != ids.end()) {
            refusals.push_back(e);
          }
          return true;
        });
    if (!status.ok()) return ToGrpc(status);
  }
  absl::StatusOr<std::optional<StreamHead>> head =
      log.GetStreamHead(StoreStream(store));
  if (!head.ok()) return ToGrpc(head.status());
  if (!head->has_value() && refusals.empty()) {
    return grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("store ", store, " has no events",
                     request->include_rejections() ? " and no refused commands"
                                                   : "",
                     " in this ledger"));
  }
  size_t next_refusal = 0;
  bool client_gone = false;
  absl::Status status = log.ScanStream(
      StoreStream(store), request->from_version(), [&](const v1::Envelope& e) {
        while (next_refusal < refusals.size() &&
               refusals[next_refusal].position() < e.position()) {
          if (!writer->Write(refusals[next_refusal++])) {
            client_gone = true;
            return false;
          }
        }
        if (!writer->Write(e)) {
          client_gone = true;
          return false;
        }
        return true;
      });
  if (!status.ok()) return ToGrpc(status);
  while (!client_gone && next_refusal < refusals.size()) {
    if (!writer->Write(refusals[next_refusal++])) client_gone = true;
  }
  if (client_gone) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

grpc::Status LedgerService::Subscribe(grpc::ServerContext* context,
                                      const v1::SubscribeRequest* request,
                                      grpc::ServerWriter<v1::Envelope>* writer) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kReadLog, &principal);
      !s.ok()) {
    return s;
  }
  if (subscribers_.fetch_add(1) >= kSubscribersMax) {
    subscribers_.fetch_sub(1);
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("more than ", kSubscribersMax, " subscribers; retry later"));
  }
  struct Release {
    std::atomic<size_t>* count;
    ~Release() { count->fetch_sub(1); }
  } release{&subscribers_};

  const EventLog& log = options_.ledger->log();
  uint64_t last = request->from_position();
  const uint64_t start_head = log.head().position;
  // Caught up once it has reached the head as of the call; from then on it
  // may trail the head by at most subscriber_buffer_events.
  bool live = last >= start_head;
  auto resume = [&](grpc::StatusCode code, absl::string_view why) {
    context->AddTrailingMetadata(kResumePositionMetadata, absl::StrCat(last));
    return grpc::Status(
        code, absl::StrCat(why, "; resume with from_position=", last));
  };
  while (true) {
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
    if (stopping_) {
      return resume(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
    }
    const uint64_t head = log.head().position;
    if (request->catch_up_only() && last >= start_head) return grpc::Status::OK;
    if (last < head) {
      bool write_failed = false;
      bool too_slow = false;
      absl::Status status =
          log.Scan(last, [&](const v1::Envelope& envelope, absl::string_view) {
            if (request->catch_up_only() && envelope.position() > start_head) {
              return false;
            }
            if (!writer->Write(envelope)) {
              write_failed = true;
              return false;
            }
            last = envelope.position();
            if (last >= start_head) live = true;
            if (live && log.head().position - last >
                            options_.subscriber_buffer_events) {
              too_slow = true;
              return false;
            }
            return !stopping_;
          });
      if (!status.ok()) return ToGrpc(status);
      if (write_failed) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
      if (too_slow) {
        return resume(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("the subscriber fell more than ",
                         options_.subscriber_buffer_events,
                         " events behind the head"));
      }
      continue;
    }
    live = true;
    absl::MutexLock lock(&mu_);
    if (notified_head_ <= last && !stopping_) {
      appended_.WaitWithTimeout(&mu_, kSubscriberPollInterval);
    }
  }
}

grpc::Status LedgerService::Digest(grpc::ServerContext* context,
                                   const v1::DigestRequest*,
                                   v1::Digest* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kDigest, &principal);
      !s.ok()) {
    return s;
  }
  const Head head = options_.ledger->log().head();
  response->set_position(head.position);
  response->set_hash(ToHex(head.hash));
  return grpc::Status::OK;
}

grpc::Status LedgerService::Audit(grpc::ServerContext* context,
                                  const v1::AuditRequest*,
                                  v1::AuditReport* response) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kAudit, &principal);
      !s.ok()) {
    return s;
  }
  // The audit's passes use separate iterators; against the live database
  // they could see a command half way through. A read-only open is one
  // consistent view of the log as of now, and writers carry on meanwhile.
  EventLogOptions log_options;
  log_options.read_only = true;
  log_options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<EventLog>> view =
      EventLog::Open(options_.db_dir, log_options);
  if (!view.ok()) return ToGrpc(view.status());
  absl::StatusOr<v1::AuditReport> report = storeledger::Audit(**view);
  if (!report.ok()) return ToGrpc(report.status());
  *response = *std::move(report);
  return grpc::Status::OK;
}

}  // namespace storeledger
