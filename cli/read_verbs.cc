// The verbs that read the log: state, history, digest, verify, export, tail.
#include <algorithm>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/cli.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl.h"
#include "ledger/json.h"

namespace storeledger {
namespace {

// The order, withdrawal or product an event is about, for history filters.
std::string OrderIdOf(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kOrderPlaced: return event.order_placed().order_id();
    case v1::Event::kOrderCancelled: return event.order_cancelled().order_id();
    case v1::Event::kOrderPaid: return event.order_paid().order_id();
    case v1::Event::kOrderShipped: return event.order_shipped().order_id();
    case v1::Event::kOrderSettled: return event.order_settled().order_id();
    case v1::Event::kOrderRefunded: return event.order_refunded().order_id();
    case v1::Event::kCommandRejected: {
      const v1::Command& c = event.command_rejected().command();
      switch (c.body_case()) {
        case v1::Command::kPlaceOrder: return c.place_order().order_id();
        case v1::Command::kCancelOrder: return c.cancel_order().order_id();
        case v1::Command::kPayOrder: return c.pay_order().order_id();
        case v1::Command::kShipOrder: return c.ship_order().order_id();
        case v1::Command::kSettleOrder: return c.settle_order().order_id();
        case v1::Command::kRefundOrder: return c.refund_order().order_id();
        default: return "";
      }
    }
    default: return "";
  }
}

}  // namespace

int StateVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"store", "as-of", "position"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  AsOf as_of;
  absl::StatusOr<std::optional<absl::Time>> t = ctx.flags.GetTime("as-of");
  if (!t.ok()) return ctx.Fail(t.status());
  as_of.business_time = *t;
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.flags.GetUint("position");
  if (!position.ok()) return ctx.Fail(position.status());
  as_of.position = *position;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::StoreState> state = (*ledger)->State(*store, as_of);
  if (!state.ok()) return ctx.Fail(state.status());
  *ctx.out << ToJson(*state) << "\n";
  return kExitOk;
}

int HistoryVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown(
          {"store", "order", "from-position", "limit", "include-rejections"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  std::optional<std::string> order = ctx.flags.Get("order");
  absl::StatusOr<std::optional<uint64_t>> from = ctx.flags.GetUint("from-position");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<uint64_t>> limit = ctx.flags.GetUint("limit");
  if (!limit.ok()) return ctx.Fail(limit.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();

  // The store's facts, and (optionally) the refusals naming it, merged by
  // position.
  std::vector<v1::Envelope> events;
  auto keep = [&](const v1::Envelope& envelope) {
    if (envelope.position() <= from->value_or(0)) return true;
    if (order && OrderIdOf(envelope.payload()) != *order) return true;
    events.push_back(envelope);
    return true;
  };
  absl::Status status = log.ScanStream(StoreStream(*store), 0, keep);
  if (status.ok() && ctx.flags.Has("include-rejections")) {
    status = log.ScanStream(kRejectionsStream, 0, [&](const v1::Envelope& e) {
      const auto& ids = e.payload().command_rejected().store_ids();
      if (std::find(ids.begin(), ids.end(), *store) == ids.end()) return true;
      return keep(e);
    });
  }
  if (!status.ok()) return ctx.Fail(status);
  std::sort(events.begin(), events.end(),
            [](const v1::Envelope& a, const v1::Envelope& b) {
              return a.position() < b.position();
            });
  uint64_t printed = 0;
  for (const v1::Envelope& envelope : events) {
    if (limit->has_value() && printed >= **limit) break;
    *ctx.out << ToJson(envelope) << "\n";
    ++printed;
  }
  return kExitOk;
}

int DigestVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({}); !s.ok()) return ctx.Fail(s);
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
  if (absl::Status s = ctx.flags.CheckKnown({"digest"}); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> digest = ctx.flags.Get("digest");
  const size_t colon = digest ? digest->find(':') : std::string::npos;
  uint64_t position = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(digest->substr(0, colon), &position) ||
      digest->size() - colon - 1 != 64) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--digest must be POSITION:HASH with a 64-digit hex SHA-256, as "
        "printed by `storeledger digest`"));
  }
  const std::string want = absl::AsciiStrToLower(digest->substr(colon + 1));
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  if (position > log.head().position) {
    *ctx.err << "storeledger verify: FAILED: the log ends at position "
             << log.head().position << ", before the digest's " << position
             << " (events were removed)\n";
    return kExitCheckFailed;
  }
  std::string got(32, '\0');
  // Scan re-hashes every envelope and checks every prev_hash link.
  absl::Status status =
      log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
        if (envelope.position() > position) return false;
        got = envelope.hash();
        return envelope.position() < position;
      });
  if (!status.ok()) {
    *ctx.err << "storeledger verify: FAILED: " << status << "\n";
    return kExitCheckFailed;
  }
  if (ToHex(got) != want) {
    *ctx.err << "storeledger verify: FAILED: the log up to position "
             << position << " hashes to " << ToHex(got) << ", not " << want
             << "\n";
    return kExitCheckFailed;
  }
  *ctx.out << "verified: the log up to position " << position
           << " is unchanged\n";
  return kExitOk;
}

// Shared by export and tail: envelopes after `from`, as JSON lines or as
// varint-length-prefixed protobuf.
static int WriteEnvelopes(CliContext& ctx, bool delimited) {
  absl::StatusOr<std::optional<uint64_t>> from = ctx.flags.GetUint("from-position");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  google::protobuf::io::OstreamOutputStream raw_out(ctx.out);
  std::optional<google::protobuf::io::CodedOutputStream> coded;
  if (delimited) coded.emplace(&raw_out);
  absl::Status status = (*ledger)->log().Scan(
      from->value_or(0), [&](const v1::Envelope& envelope, absl::string_view raw) {
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
  if (absl::Status s = ctx.flags.CheckKnown({"from-position", "format"});
      !s.ok()) {
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
  if (absl::Status s = ctx.flags.CheckKnown({"from-position", "format"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  if (!ctx.flags.Has("from-position")) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--from-position is required (0 for the whole log)"));
  }
  const std::string format = ctx.flags.GetOr("format", "jsonl");
  if (format != "delimited" && format != "jsonl") {
    return ctx.Fail(absl::InvalidArgumentError(
        "--format must be jsonl or delimited, got '" + format + "'"));
  }
  return WriteEnvelopes(ctx, format == "delimited");
}

}  // namespace storeledger
