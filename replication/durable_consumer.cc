#include "replication/durable_consumer.h"

#include <nats/nats.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace storeledger {

absl::StatusOr<std::unique_ptr<DurableConsumer>> DurableConsumer::Bind(
    JetStream* js, uint32_t partition, const std::string& durable,
    absl::Duration ack_wait) {
  std::unique_ptr<DurableConsumer> consumer(new DurableConsumer());
  consumer->js_ = js;
  consumer->partition_ = partition;
  const std::string stream = StreamName(partition);
  const std::string subject = LogSubject(partition);
  jsSubOptions options;
  jsSubOptions_Init(&options);
  options.Stream = stream.c_str();
  options.ManualAck = true;
  options.Config.Durable = durable.c_str();
  options.Config.DeliverPolicy = js_DeliverAll;
  options.Config.AckPolicy = js_AckExplicit;
  options.Config.AckWait = absl::ToInt64Nanoseconds(ack_wait);
  options.Config.MaxAckPending = kConsumerAckPendingMax;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_PullSubscribe(&consumer->subscription_, js->js_, subject.c_str(),
                       durable.c_str(), nullptr, &options, &code);
  if (code == JSStreamNotFoundErr) {
    return absl::NotFoundError(
        absl::StrCat("stream ", stream,
                     " does not exist: nothing was published to "
                     "partition ",
                     partition, " yet"));
  }
  absl::Status bound = FromNatsStatus(
      s, code, absl::StrCat("durable consumer ", durable, " of ", stream));
  if (s == NATS_ERR && code == 0) {
    // libnats refuses to bind to a durable consumer made with another
    // configuration (its message names the field).
    return absl::FailedPreconditionError(absl::StrCat(
        bound.message(),
        " (a durable consumer keeps the configuration it "
        "was made with: use the same settings, or another durable name)"));
  }
  RETURN_IF_ERROR(bound);
  return consumer;
}

DurableConsumer::~DurableConsumer() {
  // Unacknowledged messages are delivered again after ack_wait.
  for (auto& [sequence, msg] : unacked_) natsMsg_Destroy(msg);
  if (subscription_ != nullptr) {
    natsSubscription_Destroy(subscription_);  // keeps the durable consumer
  }
}

absl::StatusOr<std::vector<FeedMessage>> DurableConsumer::Fetch(
    int batch_max, absl::Duration wait) {
  natsMsgList list = {nullptr, 0};
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = natsSubscription_Fetch(&list, subscription_, batch_max,
                                        absl::ToInt64Milliseconds(wait), &code);
  std::vector<FeedMessage> messages;
  if (s == NATS_TIMEOUT && list.Count == 0) {
    natsMsgList_Destroy(&list);
    return messages;
  }
  absl::Status status = FromNatsStatus(
      s, code, absl::StrCat("fetch from ", StreamName(partition_)));
  for (int i = 0; i < list.Count; ++i) {
    natsMsg* msg = list.Msgs[i];
    list.Msgs[i] = nullptr;  // ours now
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
      natsMsg_Destroy(msg);
      if (status.ok()) {
        status = absl::DataLossError(
            absl::StrCat("a message of ", StreamName(partition_),
                         " carries no JetStream metadata"));
      }
      continue;
    }
    FeedMessage& message = messages.emplace_back();
    message.sequence = meta->Sequence.Stream;
    message.deliveries = meta->NumDelivered;
    message.data.assign(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    jsMsgMetaData_Destroy(meta);
    auto [it, inserted] = unacked_.emplace(message.sequence, msg);
    if (!inserted) {  // delivered again while we still hold it
      natsMsg_Destroy(it->second);
      it->second = msg;
    }
  }
  natsMsgList_Destroy(&list);
  // Messages that came are handed over even when the fetch ended in an
  // error after them; the error comes with the next call if it lasts.
  if (!messages.empty() || status.ok()) return messages;
  return status;
}

absl::Status DurableConsumer::AckSync(uint64_t sequence) {
  auto it = unacked_.find(sequence);
  if (it == unacked_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no unacknowledged message at sequence ", sequence, " of ",
                     StreamName(partition_)));
  }
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = natsMsg_AckSync(it->second, nullptr, &code);
  RETURN_IF_ERROR(FromNatsStatus(s, code,
                                 absl::StrCat("ack of sequence ", sequence,
                                              " of ", StreamName(partition_))));
  natsMsg_Destroy(it->second);
  unacked_.erase(it);
  return absl::OkStatus();
}

}  // namespace storeledger
