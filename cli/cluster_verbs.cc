// The cluster's tools (docs/cluster.md): consume (the reference
// exactly-once downstream consumer), publish (an existing ledger into an
// empty partition stream) and backup (an online consistent copy).
#include <csignal>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/cli.h"
#include "base/status_macros.h"
#include "replication/balances_feed.h"
#include "replication/jetstream.h"
#include "replication/publish_log.h"
#include "storage/backup.h"

namespace storeledger {
namespace {

// --nats URL[,URL...]: required.
absl::StatusOr<std::vector<std::string>> NatsUrls(const Flags& flags) {
  std::optional<std::string> urls = flags.Get("nats");
  std::vector<std::string> split;
  if (urls.has_value()) split = absl::StrSplit(*urls, ',', absl::SkipEmpty());
  if (split.empty()) {
    return absl::InvalidArgumentError(
        "--nats nats://HOST:PORT[,...] is required: the JetStream cluster");
  }
  return split;
}

absl::StatusOr<uint32_t> Partition(const Flags& flags) {
  ASSIGN_OR_RETURN(std::optional<uint64_t> partition,
                   flags.GetUint("partition"));
  if (partition.value_or(0) > UINT32_MAX) {
    return absl::InvalidArgumentError("--partition is too large");
  }
  return static_cast<uint32_t>(partition.value_or(0));
}

absl::StatusOr<std::optional<absl::Duration>> Millis(const Flags& flags,
                                                     absl::string_view name) {
  ASSIGN_OR_RETURN(std::optional<uint64_t> ms, flags.GetUint(name));
  if (!ms.has_value()) return std::optional<absl::Duration>();
  return std::optional<absl::Duration>(
      absl::Milliseconds(static_cast<int64_t>(*ms)));
}

volatile std::sig_atomic_t consume_stop = 0;
extern "C" void RequestConsumeStop(int) { consume_stop = 1; }

absl::StatusOr<BalancesFeedOptions> ConsumeOptions(const Flags& flags) {
  BalancesFeedOptions options;
  ASSIGN_OR_RETURN(options.nats_urls, NatsUrls(flags));
  ASSIGN_OR_RETURN(options.partition, Partition(flags));
  options.durable = flags.GetOr("durable", "");
  options.sqlite_path = flags.GetOr("sqlite", "");
  if (options.durable.empty() || options.sqlite_path.empty()) {
    return absl::InvalidArgumentError(
        "--durable NAME and --sqlite FILE are required");
  }
  ASSIGN_OR_RETURN(std::optional<uint64_t> batch, flags.GetUint("batch"));
  if (batch.has_value()) {
    if (*batch < 1 || *batch > kConsumerAckPendingMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("--batch must be 1..", kConsumerAckPendingMax));
    }
    options.batch_messages = static_cast<int>(*batch);
  }
  ASSIGN_OR_RETURN(std::optional<uint64_t> max, flags.GetUint("max-messages"));
  options.max_messages = max.value_or(0);
  ASSIGN_OR_RETURN(std::optional<absl::Duration> ack_wait,
                   Millis(flags, "ack-wait-ms"));
  if (ack_wait.has_value()) options.ack_wait = *ack_wait;
  ASSIGN_OR_RETURN(std::optional<absl::Duration> idle,
                   Millis(flags, "idle-exit-ms"));
  if (idle.has_value()) options.idle_exit = *idle;
  options.stop = [] { return consume_stop != 0; };
  return options;
}

}  // namespace

int ConsumeVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  absl::StatusOr<BalancesFeedOptions> options = ConsumeOptions(ctx.flags);
  if (!options.ok()) return ctx.Fail(options.status());
  consume_stop = 0;
  void (*previous_int)(int) = std::signal(SIGINT, RequestConsumeStop);
  void (*previous_term)(int) = std::signal(SIGTERM, RequestConsumeStop);
  absl::StatusOr<BalancesFeedStats> stats = RunBalancesFeed(*options);
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);
  if (!stats.ok()) return ctx.Fail(stats.status());
  const double seconds = absl::ToDoubleSeconds(stats->took);
  *ctx.out << absl::StrCat(
      R"({"partition":)", options->partition, R"(,"streamSequence":)",
      stats->stream_sequence, R"(,"position":)", stats->position,
      R"(,"messagesApplied":)", stats->messages_applied,
      R"(,"messagesSkipped":)", stats->messages_skipped, R"(,"messagesRead":)",
      stats->messages_read, R"(,"eventsApplied":)", stats->events_applied,
      R"(,"seconds":)", seconds, "}\n");
  return kExitOk;
}

int PublishVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  absl::StatusOr<std::vector<std::string>> urls = NatsUrls(ctx.flags);
  if (!urls.ok()) return ctx.Fail(urls.status());
  absl::StatusOr<uint32_t> partition = Partition(ctx.flags);
  if (!partition.ok()) return ctx.Fail(partition.status());
  absl::StatusOr<std::optional<uint64_t>> replicas =
      ctx.flags.GetUint("replicas");
  if (!replicas.ok()) return ctx.Fail(replicas.status());
  const int copies =
      static_cast<int>(replicas->value_or(urls->size() >= 3 ? 3 : 1));
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<std::unique_ptr<JetStream>> js = JetStream::Connect(*urls);
  if (!js.ok()) return ctx.Fail(js.status());
  if (absl::Status s = (*js)->EnsureStream(*partition, copies); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<PublishLogStats> stats =
      PublishLog((*ledger)->log(), js->get(), *partition);
  if (!stats.ok()) return ctx.Fail(stats.status());
  *ctx.out << absl::StrCat(R"({"partition":)", *partition, R"(,"stream":")",
                           StreamName(*partition), R"(","messages":)",
                           stats->messages, R"(,"position":)", stats->position,
                           R"(,"hash":")", ToHex(stats->hash), "\"}\n");
  return kExitOk;
}

int BackupVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  std::optional<std::string> to = ctx.flags.Get("to");
  if (!to.has_value() || to->empty() || ctx.flags.Has("name")) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--to DIR is required (--name NAME is for a running storeledgerd: "
        "storeledger --server ADDR backup --name NAME)"));
  }
  // Writable: RocksDB checkpoints a database this process opened for
  // writing. With storeledgerd running on it, the open fails on its lock:
  // use the Backup RPC instead.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(false);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<Head> head = BackupTo((*ledger)->log(), *to);
  if (!head.ok()) return ctx.Fail(head.status());
  *ctx.out << absl::StrCat(R"({"path":")", *to, R"(","position":)",
                           head->position, R"(,"hash":")", ToHex(head->hash),
                           "\"}\n");
  return kExitOk;
}

}  // namespace storeledger
