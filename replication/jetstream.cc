#include "replication/jetstream.h"

#include <nats/nats.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"

namespace storeledger {
namespace {

// A libnats status (and JetStream error code) as an absl::Status.
absl::Status FromNats(natsStatus s, int code, absl::string_view what) {
  if (s == NATS_OK) return absl::OkStatus();
  const char* last = nats_GetLastError(nullptr);
  const std::string message = absl::StrCat(
      what, ": ", natsStatus_GetText(s),
      code != 0 ? absl::StrCat(" (JetStream error ", code, ")") : std::string(),
      last != nullptr && *last != '\0' ? absl::StrCat(": ", last)
                                       : std::string());
  if (code == JSStreamWrongLastSequenceErr) {
    return absl::AbortedError(message);
  }
  switch (s) {
    case NATS_TIMEOUT:
    case NATS_NO_RESPONDERS:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_NOT_YET_CONNECTED:
      return absl::UnavailableError(message);
    default:
      // A JetStream API error without a code we know (no quorum yet, a
      // leader election under way): also worth asking again later.
      return absl::UnavailableError(message);
  }
}

}  // namespace

absl::Status FromNatsStatus(int status, int js_code, absl::string_view what) {
  return FromNats(static_cast<natsStatus>(status), js_code, what);
}

std::string StreamName(uint32_t partition) {
  return absl::StrCat("SL_P", partition);
}
std::string LogSubject(uint32_t partition) {
  return absl::StrCat("storeledger.p", partition, ".log");
}
std::string LeaseKey(uint32_t partition) {
  return absl::StrCat("p", partition);
}
std::string LogMsgId(uint32_t partition, uint64_t first_position) {
  return absl::StrCat("p", partition, ":", first_position);
}

absl::StatusOr<std::unique_ptr<JetStream>> JetStream::Connect(
    const std::vector<std::string>& urls, absl::Duration wait) {
  if (urls.empty()) return absl::InvalidArgumentError("no NATS server given");
  std::unique_ptr<JetStream> js(new JetStream());
  js->wait_ms_ = absl::ToInt64Milliseconds(wait);
  natsOptions* options = nullptr;
  natsStatus s = natsOptions_Create(&options);
  std::vector<const char*> servers;
  for (const std::string& url : urls) servers.push_back(url.c_str());
  if (s == NATS_OK) {
    s = natsOptions_SetServers(options, servers.data(),
                               static_cast<int>(servers.size()));
  }
  if (s == NATS_OK) s = natsOptions_SetTimeout(options, js->wait_ms_);
  // Keep reconnecting for as long as the process lives: a replica outlives
  // any one server, and a publish that finds no server waits and is asked
  // about again (replica.cc).
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(options, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(options, 100);
  if (s == NATS_OK) s = natsConnection_Connect(&js->connection_, options);
  natsOptions_Destroy(options);
  RETURN_IF_ERROR(FromNats(s, 0, absl::StrCat("connect to ", urls.front())));
  jsOptions js_options;
  jsOptions_Init(&js_options);
  js_options.Wait = js->wait_ms_;
  RETURN_IF_ERROR(
      FromNats(natsConnection_JetStream(&js->js_, js->connection_, &js_options),
               0, "JetStream context"));
  return js;
}

JetStream::~JetStream() {
  for (auto& [name, bucket] : buckets_) kvStore_Destroy(bucket);
  if (leases_ != nullptr) kvStore_Destroy(leases_);
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (connection_ != nullptr) {
    natsConnection_Close(connection_);
    natsConnection_Destroy(connection_);
  }
}

namespace {
// How long EnsureStream retries a stream it could neither create nor find.
constexpr absl::Duration kEnsureStreamTimeout = absl::Seconds(15);

// The partition stream is the log: any replica, consumer or backup may need
// any message of it. kFailedPrecondition naming a limit that would drop one.
absl::Status CheckKeepsEveryMessage(const jsStreamConfig& config) {
  if (config.Retention != js_LimitsPolicy || config.MaxMsgs > 0 ||
      config.MaxBytes > 0 || config.MaxAge > 0 ||
      config.MaxMsgsPerSubject > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "stream ", config.Name, " would drop messages (retention ",
        static_cast<int>(config.Retention), ", max_msgs ", config.MaxMsgs,
        ", max_bytes ", config.MaxBytes, ", max_age ", config.MaxAge,
        " ns, max_msgs_per_subject ", config.MaxMsgsPerSubject,
        "); a partition stream keeps every message: recreate it without "
        "limits (docs/cluster.md)"));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status JetStream::EnsureStream(uint32_t partition, int replicas) {
  const std::string name = StreamName(partition);
  const std::string subject = LogSubject(partition);
  const char* subjects[] = {subject.c_str()};
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = name.c_str();
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  config.Replicas = replicas;
  // Every message kept, none deleted: no age, size or count limit (the
  // defaults, stated), and the API may neither delete nor purge one.
  config.Retention = js_LimitsPolicy;
  config.MaxMsgs = -1;
  config.MaxBytes = -1;
  config.MaxAge = 0;
  config.MaxMsgsPerSubject = -1;
  config.DenyDelete = true;
  config.DenyPurge = true;
  // Replicas starting together race to create the stream, and a cluster
  // just started may have no JetStream meta leader yet: either answers an
  // error for a moment (seen: "Not Found", 10059, right after another
  // replica's create). Retried for a bounded time, then the last error.
  const absl::Time deadline = absl::Now() + kEnsureStreamTimeout;
  while (true) {
    jsStreamInfo* info = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    natsStatus s = js_AddStream(&info, js_, &config, nullptr, &code);
    if (info != nullptr) jsStreamInfo_Destroy(info);
    if (s == NATS_OK) return absl::OkStatus();
    // Another replica may have created it meanwhile, or someone else did
    // before us: it must keep every message too.
    info = nullptr;
    code = static_cast<jsErrCode>(0);
    s = js_GetStreamInfo(&info, js_, name.c_str(), nullptr, &code);
    absl::Status status =
        FromNats(s, code, absl::StrCat("create stream ", name));
    if (status.ok()) status = CheckKeepsEveryMessage(*info->Config);
    if (info != nullptr) jsStreamInfo_Destroy(info);
    if (status.ok() || absl::IsFailedPrecondition(status) ||
        absl::Now() >= deadline) {
      return status;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

absl::StatusOr<uint64_t> JetStream::LastSequence(uint32_t partition) {
  const std::string name = StreamName(partition);
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, js_, name.c_str(), nullptr, &code);
  RETURN_IF_ERROR(FromNats(s, code, absl::StrCat("stream info of ", name)));
  const uint64_t last = info->State.LastSeq;
  jsStreamInfo_Destroy(info);
  return last;
}

absl::StatusOr<std::optional<std::string>> JetStream::Get(uint32_t partition,
                                                          uint64_t sequence) {
  const std::string name = StreamName(partition);
  natsMsg* msg = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&msg, js_, name.c_str(), sequence, nullptr, &code);
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) {
    if (msg != nullptr) natsMsg_Destroy(msg);
    return std::nullopt;
  }
  RETURN_IF_ERROR(
      FromNats(s, code, absl::StrCat("get message ", sequence, " of ", name)));
  std::string data(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
  return data;
}

absl::StatusOr<PublishAck> JetStream::Publish(
    uint32_t partition, absl::string_view data, absl::string_view msg_id,
    std::optional<uint64_t> expected_last_sequence) {
  const std::string subject = LogSubject(partition);
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(),
                                static_cast<int>(data.size()));
  const std::string id(msg_id);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
  // The header itself rather than jsPubOptions.ExpectLastSeq, where 0
  // means "not set": the first message of a partition expects 0 too.
  if (s == NATS_OK && expected_last_sequence.has_value()) {
    const std::string expected = absl::StrCat(*expected_last_sequence);
    s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence", expected.c_str());
  }
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.MaxWait = wait_ms_;
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (s == NATS_OK) s = js_PublishMsg(&ack, js_, msg, &options, &code);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    if (ack != nullptr) jsPubAck_Destroy(ack);
    return FromNats(s, code, absl::StrCat("publish ", id, " to ", subject));
  }
  PublishAck result{ack->Sequence, ack->Duplicate};
  jsPubAck_Destroy(ack);
  return result;
}

absl::Status JetStream::EnsureLeaseBucket(absl::Duration ttl, int replicas) {
  kvConfig config;
  kvConfig_Init(&config);
  config.Bucket = kLeaderBucket;
  config.History = 1;
  config.TTL = absl::ToInt64Nanoseconds(ttl);  // libnats 3.4.1: nanoseconds
  config.StorageType = js_FileStorage;
  config.Replicas = replicas;
  natsStatus s = js_CreateKeyValue(&leases_, js_, &config);
  if (s == NATS_OK) return absl::OkStatus();
  const absl::Status created =
      FromNats(s, 0, absl::StrCat("create KV bucket ", kLeaderBucket));
  // Made by another replica already (with the same config)?
  s = js_KeyValue(&leases_, js_, kLeaderBucket);
  if (s == NATS_OK) return absl::OkStatus();
  return created;
}

absl::StatusOr<std::optional<LeaseEntry>> JetStream::GetLease(
    absl::string_view key) {
  kvEntry* entry = nullptr;
  const std::string k(key);
  natsStatus s = kvStore_Get(&entry, leases_, k.c_str());
  if (s == NATS_NOT_FOUND) return std::nullopt;
  RETURN_IF_ERROR(FromNats(s, 0, absl::StrCat("get lease ", key)));
  LeaseEntry lease{std::string(static_cast<const char*>(kvEntry_Value(entry)),
                               kvEntry_ValueLen(entry)),
                   kvEntry_Revision(entry)};
  kvEntry_Destroy(entry);
  return lease;
}

absl::StatusOr<uint64_t> JetStream::CreateLease(absl::string_view key,
                                                absl::string_view holder) {
  uint64_t revision = 0;
  const std::string k(key);
  natsStatus s = kvStore_Create(&revision, leases_, k.c_str(), holder.data(),
                                static_cast<int>(holder.size()));
  if (s == NATS_OK) return revision;
  absl::Status status = FromNats(s, 0, absl::StrCat("take lease ", key));
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS) return status;
  return absl::AlreadyExistsError(status.message());
}

absl::StatusOr<uint64_t> JetStream::RenewLease(absl::string_view key,
                                               absl::string_view holder,
                                               uint64_t revision) {
  uint64_t next = 0;
  const std::string k(key);
  natsStatus s = kvStore_Update(&next, leases_, k.c_str(), holder.data(),
                                static_cast<int>(holder.size()), revision);
  if (s == NATS_OK) return next;
  absl::Status status = FromNats(s, 0, absl::StrCat("renew lease ", key));
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS) return status;
  return absl::AbortedError(status.message());
}

absl::Status JetStream::EnsureBucket(absl::string_view bucket, int replicas) {
  const std::string name(bucket);
  kvConfig config;
  kvConfig_Init(&config);
  config.Bucket = name.c_str();
  config.History = 1;
  config.StorageType = js_FileStorage;
  config.Replicas = replicas;
  kvStore* kv = nullptr;
  natsStatus s = js_CreateKeyValue(&kv, js_, &config);
  if (s != NATS_OK) {
    // Made by another process already (with the same config)?
    const absl::Status created =
        FromNats(s, 0, absl::StrCat("create KV bucket ", name));
    s = js_KeyValue(&kv, js_, name.c_str());
    if (s != NATS_OK) return created;
  }
  std::lock_guard<std::mutex> lock(buckets_mu_);
  auto [it, inserted] = buckets_.emplace(name, kv);
  if (!inserted) kvStore_Destroy(kv);
  return absl::OkStatus();
}

absl::StatusOr<kvStore*> JetStream::Bucket(absl::string_view bucket) {
  std::lock_guard<std::mutex> lock(buckets_mu_);
  if (auto it = buckets_.find(bucket); it != buckets_.end()) return it->second;
  const std::string name(bucket);
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, js_, name.c_str());
  if (s == NATS_NOT_FOUND) {
    return absl::NotFoundError(absl::StrCat("no KV bucket ", name));
  }
  RETURN_IF_ERROR(FromNats(s, 0, absl::StrCat("KV bucket ", name)));
  buckets_.emplace(name, kv);
  return kv;
}

absl::StatusOr<std::optional<std::string>> JetStream::KvGet(
    absl::string_view bucket, absl::string_view key) {
  ASSIGN_OR_RETURN(kvStore* const kv, Bucket(bucket));
  kvEntry* entry = nullptr;
  const std::string k(key);
  natsStatus s = kvStore_Get(&entry, kv, k.c_str());
  if (s == NATS_NOT_FOUND) return std::nullopt;
  RETURN_IF_ERROR(FromNats(s, 0, absl::StrCat("get ", bucket, "/", key)));
  std::string value(static_cast<const char*>(kvEntry_Value(entry)),
                    kvEntry_ValueLen(entry));
  kvEntry_Destroy(entry);
  return value;
}

absl::StatusOr<bool> JetStream::KvCreate(absl::string_view bucket,
                                         absl::string_view key,
                                         absl::string_view value) {
  ASSIGN_OR_RETURN(kvStore* const kv, Bucket(bucket));
  uint64_t revision = 0;
  const std::string k(key);
  natsStatus s = kvStore_Create(&revision, kv, k.c_str(), value.data(),
                                static_cast<int>(value.size()));
  if (s == NATS_OK) return true;
  const absl::Status status =
      FromNats(s, 0, absl::StrCat("create ", bucket, "/", key));
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS) return status;
  // Refused: the key exists, unless the refusal was about something else.
  ASSIGN_OR_RETURN(std::optional<std::string> existing, KvGet(bucket, key));
  if (existing.has_value()) return false;
  return status;
}

}  // namespace storeledger
