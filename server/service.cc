#include "server/service.h"

#include <algorithm>
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

void LedgerService::NotifyAppended() {
  const uint64_t head = options_.ledger->log().head().position;
  absl::MutexLock lock(&mu_);
  if (head > notified_head_) {
    notified_head_ = head;
    appended_.SignalAll();
  }
}

grpc::Status LedgerService::Authorize(const grpc::ServerContext& context,
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
  return ExecuteOne(*request, response);
}

grpc::Status LedgerService::ExecuteStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::CommandResult, v1::Command>* stream) {
  Principal principal;
  if (grpc::Status s = Authorize(*context, Permission::kWrite, &principal);
      !s.ok()) {
    return s;
  }
  v1::Command command;
  while (!stopping_ && stream->Read(&command)) {
    v1::CommandResult result;
    if (grpc::Status s = ExecuteOne(command, &result); !s.ok()) return s;
    if (!stream->Write(result)) {
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          "the client went away; its last command was "
                          "executed but not acknowledged");
    }
  }
  if (stopping_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; commands after the last "
                        "result were not executed");
  }
  return grpc::Status::OK;
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
