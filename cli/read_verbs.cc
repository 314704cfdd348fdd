// The verbs that read the log: state, history, digest, verify, export, tail.
#include <algorithm>
#include <csignal>
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "cli/cli.h"
#include "cli/history_filter.h"
#include "cli/tail_flags.h"
#include "core/streams.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "json/json.h"
#include "replay/feed.h"
#include "replay/lookup.h"
#include "replay/projection_store.h"
#include "replay/read_views.h"

namespace storeledger {
namespace {

// `tail --follow` stops on SIGINT / SIGTERM: the handler only sets a flag
// the poll loop reads.
volatile std::sig_atomic_t tail_stop_requested = 0;
extern "C" void RequestTailStop(int) { tail_stop_requested = 1; }

// Between two polls of `tail --follow` (DESIGN.md: a few per second).
constexpr uint64_t kTailPollMsDefault = 200;
constexpr uint64_t kTailPollMsMax = 60'000;

}  // namespace

std::optional<std::string> TailPastHead(uint64_t from, uint64_t head) {
  if (from <= head) return std::nullopt;
  return absl::StrCat("--from-position ", from,
                      " is past the head of the log (position ", head,
                      "): the consumer's position is ahead of this ledger");
}

int StateVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store)
    return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  AsOf as_of;
  absl::StatusOr<std::optional<absl::Time>> t = ctx.flags.GetTime("as-of");
  if (!t.ok()) return ctx.Fail(t.status());
  as_of.business_time = *t;
  absl::StatusOr<CliContext::LedgerRead> read = ctx.OpenLedgerForRead();
  if (!read.ok()) return ctx.Fail(read.status());
  as_of.position = read->position;
  ctx.EchoTime("as-of");
  absl::StatusOr<v1::StoreState> state = read->ledger->State(*store, as_of);
  if (!state.ok()) return ctx.Fail(state.status());
  *ctx.out << ToJson(*state) << "\n";
  return kExitOk;
}

namespace {

// The store that owns the order, withdrawal or product a history asks about
// (R13: an order or withdrawal lives in one store; a product id may be in a
// legacy store and in the WeChat Store it was synced into, so all of them).
// Empty when the ledger has no such id.
absl::StatusOr<std::vector<std::string>> OwnersOf(const EventLog& log,
                                                  const HistoryFilter& filter) {
  ProjectionReader reader(&log);
  std::vector<std::string> owners;
  if (filter.order_id.has_value()) {
    ASSIGN_OR_RETURN(RecordRef<OrderRecord> order,
                     reader.Order(*filter.order_id));
    if (order != nullptr) owners.push_back(order->store_id());
  } else if (filter.withdrawal_id.has_value()) {
    ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal,
                     reader.Withdrawal(*filter.withdrawal_id));
    if (withdrawal != nullptr) owners.push_back(withdrawal->store_id());
  } else if (filter.product_id.has_value()) {
    ASSIGN_OR_RETURN(owners, StoresWithProduct(reader, *filter.product_id));
  }
  return owners;
}

// The envelopes `filter` selects in one store's history: its stream (with
// `own_stream`), the ProductsSynced of the store it upgraded into that
// copied from it, and (with `refusals`) the refused commands naming it.
absl::Status CollectHistory(const EventLog& log, const std::string& store_id,
                            const HistoryFilter& filter, bool own_stream,
                            bool refusals, bool* exists,
                            std::vector<v1::Envelope>* out) {
  ASSIGN_OR_RETURN(std::optional<StreamHead> head,
                   log.GetStreamHead(StoreStream(store_id)));
  *exists = head.has_value();
  if (own_stream) {
    RETURN_IF_ERROR(
        log.ScanStream(StoreStream(store_id), 0, [&](const v1::Envelope& e) {
          if (filter.Selects(e)) out->push_back(e);
          return true;
        }));
  }
  ASSIGN_OR_RETURN(std::vector<v1::Envelope> syncs, SyncsFrom(log, store_id));
  for (v1::Envelope& e : syncs) {
    if (filter.Selects(e)) out->push_back(std::move(e));
  }
  if (!refusals) return absl::OkStatus();
  bool refused = false;
  RETURN_IF_ERROR(
      log.ScanStream(kRejectionsStream, 0, [&](const v1::Envelope& e) {
        const auto& ids = e.payload().command_rejected().store_ids();
        if (std::find(ids.begin(), ids.end(), store_id) == ids.end()) {
          return true;
        }
        // A refusal the filters drop does not make the store exist (as
        // in --server mode, where the server sends them all).
        if (filter.Selects(e)) {
          refused = true;
          out->push_back(e);
        }
        return true;
      }));
  *exists = *exists || refused;
  return absl::OkStatus();
}

}  // namespace

int HistoryVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  absl::StatusOr<HistoryFilter> filter = HistoryFilter::FromFlags(ctx.flags);
  if (!filter.ok()) return ctx.Fail(filter.status());
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!filter->by_id()) {
    if (absl::Status s = HistoryStores(*filter, store, {}).status(); !s.ok()) {
      return ctx.Fail(s);
    }
  }
  absl::StatusOr<std::optional<uint64_t>> limit = ctx.flags.GetUint("limit");
  if (!limit.ok()) return ctx.Fail(limit.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  const bool refusals = ctx.flags.Has("include-rejections");

  std::vector<std::string> owners;
  if (filter->by_id()) {
    absl::StatusOr<std::vector<std::string>> found = OwnersOf(log, *filter);
    if (!found.ok()) return ctx.Fail(found.status());
    owners = *std::move(found);
  }
  absl::StatusOr<std::vector<std::string>> history_stores =
      HistoryStores(*filter, store, owners);
  if (!history_stores.ok()) return ctx.Fail(history_stores.status());
  const std::vector<std::string>& stores = *history_stores;

  // One store's own stream is streamed, so that --limit stops its scan
  // early; the rest (refusals, syncs, a second store) is collected first.
  const bool stream_one = stores.size() == 1;
  std::vector<v1::Envelope> selected;
  bool any_exists = false;
  for (const std::string& id : stores) {
    bool exists = false;
    if (absl::Status s = CollectHistory(log, id, *filter, !stream_one, refusals,
                                        &exists, &selected);
        !s.ok()) {
      return ctx.Fail(s);
    }
    any_exists = any_exists || exists;
  }
  if (!any_exists) {
    return ctx.Fail(HistoryNotFound(absl::StrJoin(stores, ", "), refusals));
  }
  std::sort(selected.begin(), selected.end(),
            [](const v1::Envelope& a, const v1::Envelope& b) {
              return a.position() < b.position();
            });
  // Merged by position; a sync seen from both of its stores prints once.
  uint64_t printed = 0, last_position = 0;
  auto print = [&](const v1::Envelope& envelope) {
    if (limit->has_value() && printed >= **limit) return false;
    if (envelope.position() == last_position) return true;
    last_position = envelope.position();
    *ctx.out << ToJson(envelope) << "\n";
    ++printed;
    return true;
  };
  size_t next = 0;
  if (stream_one) {
    absl::Status status = log.ScanStream(
        StoreStream(stores.front()), 0, [&](const v1::Envelope& e) {
          while (next < selected.size() &&
                 selected[next].position() <= e.position()) {
            if (!print(selected[next++])) return false;
          }
          return !filter->Selects(e) || print(e);
        });
    if (!status.ok()) return ctx.Fail(status);
  }
  while (next < selected.size() && print(selected[next])) ++next;
  if (printed == 0 && limit->value_or(1) != 0) {
    SayHistoryFilteredOut(ctx, absl::StrJoin(stores, ", "));
  }
  return kExitOk;
}

int DigestVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const Head head = (*ledger)->log().head();
  v1::Digest digest;
  digest.set_position(head.position);
  digest.set_hash(ToHex(head.hash));
  *ctx.out << ToJson(digest) << "\n";
  return kExitOk;
}

int VerifyVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<DigestText> digest =
      ParseDigestText(ctx.flags.GetOr("digest", ""));
  if (!digest.ok()) {
    return ctx.Fail(absl::InvalidArgumentError(
        absl::StrCat("--digest ", digest.status().message())));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  if (absl::Status s = VerifyDigest((*ledger)->log(), *digest); !s.ok()) {
    *ctx.err << "storeledger verify: FAILED: "
             << (absl::IsFailedPrecondition(s) ? std::string(s.message())
                                               : s.ToString())
             << "\n";
    return kExitCheckFailed;
  }
  const uint64_t position = digest->position;
  *ctx.out << "verified: the log up to position " << position
           << " is unchanged\n";
  return kExitOk;
}

// Shared by export and tail: envelopes after `from`, as JSON lines or as
// varint-length-prefixed protobuf.
static int WriteEnvelopes(CliContext& ctx, bool delimited) {
  absl::StatusOr<std::optional<uint64_t>> from =
      ctx.flags.GetUint("from-position");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  // Past the head, an export is empty: say so, as tail does.
  if (std::optional<std::string> ahead =
          TailPastHead(from->value_or(0), (*ledger)->log().head().position)) {
    return ctx.Fail(absl::OutOfRangeError(*ahead));
  }
  google::protobuf::io::OstreamOutputStream raw_out(ctx.out);
  std::optional<google::protobuf::io::CodedOutputStream> coded;
  if (delimited) coded.emplace(&raw_out);
  absl::Status status = (*ledger)->log().Scan(
      from->value_or(0),
      [&](const v1::Envelope& envelope, absl::string_view raw) {
        if (delimited) {
          coded->WriteVarint32(static_cast<uint32_t>(raw.size()));
          coded->WriteRaw(raw.data(), static_cast<int>(raw.size()));
        } else {
          *ctx.out << ToJson(envelope) << "\n";
        }
        return true;
      });
  coded.reset();
  ctx.out->flush();
  if (!status.ok()) return ctx.Fail(status);
  return kExitOk;
}

int ExportVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  const std::string format = ctx.flags.GetOr("format", "delimited");
  if (format != "delimited" && format != "jsonl") {
    return ctx.Fail(absl::InvalidArgumentError(
        "--format must be delimited or jsonl, got '" + format + "'"));
  }
  return WriteEnvelopes(ctx, format == "delimited");
}

int TailVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<TailFlags> tail = TailFlags::Parse(ctx.flags);
  if (!tail.ok()) return ctx.Fail(tail.status());
  absl::StatusOr<std::optional<uint64_t>> idle_exit_ms =
      ctx.flags.GetUint("idle-exit-ms");
  if (!idle_exit_ms.ok()) return ctx.Fail(idle_exit_ms.status());
  absl::StatusOr<std::optional<uint64_t>> poll_ms =
      ctx.flags.GetUint("poll-ms");
  if (!poll_ms.ok()) return ctx.Fail(poll_ms.status());
  const uint64_t poll = poll_ms->value_or(kTailPollMsDefault);
  if (poll == 0 || poll > kTailPollMsMax) {
    return ctx.Fail(absl::InvalidArgumentError(
        absl::StrCat("--poll-ms must be 1..", kTailPollMsMax)));
  }
  const bool follow = tail->follow;

  uint64_t emitted = 0;
  // The stored bytes, as JSON or varint-length-prefixed.
  auto emit = [&](const v1::Envelope& envelope, absl::string_view raw) {
    if (tail->delimited) {
      WriteDelimited(*ctx.out, raw);
    } else {
      *ctx.out << ToJson(envelope) << "\n";
    }
    ++emitted;
  };
  auto done = [&] {
    return tail->max_events.has_value() && emitted >= *tail->max_events;
  };

  // A consumer ahead of the log (restored from the wrong backup, pointed at
  // the wrong ledger) must notice: an error, or with --follow a warning.
  {
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
    if (!ledger.ok()) return ctx.Fail(ledger.status());
    if (std::optional<std::string> ahead = TailPastHead(
            tail->from_position, (*ledger)->log().head().position)) {
      if (!follow) return ctx.Fail(absl::OutOfRangeError(*ahead));
      *ctx.err << "storeledger tail: warning: " << *ahead
               << "; waiting for the log to reach it\n";
    }
  }
  if (!follow) {
    // Scan checks that positions are contiguous and that the hash chain
    // links from --from-position: no gap, no duplicate.
    absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
    if (!ledger.ok()) return ctx.Fail(ledger.status());
    absl::Status status = (*ledger)->log().Scan(
        tail->from_position,
        [&](const v1::Envelope& envelope, absl::string_view raw) {
          if (done()) return false;
          emit(envelope, raw);
          return true;
        });
    ctx.out->flush();
    if (!status.ok()) return ctx.Fail(status);
    return kExitOk;
  }

  // --follow: one RocksDB secondary instance catching up with the writer on
  // each poll (replay/feed.h), with the same checks as Scan. A consumer that
  // restarts with --from-position <the last position it saw> picks up
  // exactly where it stopped.
  absl::StatusOr<std::unique_ptr<LogFollower>> follower = LogFollower::Open(
      ctx.flags.GetOr("db", "./storeledger-data"), tail->from_position);
  if (!follower.ok()) return ctx.Fail(follower.status());
  tail_stop_requested = 0;
  void (*previous_int)(int) = std::signal(SIGINT, RequestTailStop);
  void (*previous_term)(int) = std::signal(SIGTERM, RequestTailStop);
  absl::Status status;
  absl::Time last_event_at = absl::Now();
  while (!tail_stop_requested && !done()) {
    absl::StatusOr<uint64_t> delivered = (*follower)->Poll(
        [&](const v1::Envelope& envelope, absl::string_view raw) {
          if (done() || tail_stop_requested) return false;
          emit(envelope, raw);
          return true;
        });
    ctx.out->flush();
    if (!delivered.ok()) {
      status = delivered.status();
      break;
    }
    if (done()) break;
    if (*delivered > 0) {
      last_event_at = absl::Now();
    } else if (idle_exit_ms->has_value() &&
               absl::Now() - last_event_at >=
                   absl::Milliseconds(**idle_exit_ms)) {
      break;
    }
    // Sleep in short slices so a signal ends the wait promptly.
    const absl::Time wake = absl::Now() + absl::Milliseconds(poll);
    while (!tail_stop_requested && absl::Now() < wake) {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min<uint64_t>(poll, 20)));
    }
  }
  std::signal(SIGINT, previous_int);
  std::signal(SIGTERM, previous_term);
  if (!status.ok()) return ctx.Fail(status);
  return kExitOk;
}

}  // namespace storeledger
