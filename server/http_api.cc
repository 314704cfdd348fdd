#include "server/http_api.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "base/time.h"
#include "google/protobuf/util/time_util.h"
#include "json/json.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replay/projection_store.h"
#include "replay/read_views.h"

namespace storeledger {
namespace {

// A JSON string literal of `text`.
std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::string TimeJson(absl::Time t) {
  // As the JSON mapping prints a Timestamp ("2024-10-22T02:00:00Z").
  return JsonString(google::protobuf::util::TimeUtil::ToString(ToProto(t)));
}

ApiReply ErrorReply(const absl::Status& status) {
  ApiReply reply;
  reply.http_status = HttpStatusOf(status.code());
  reply.body = absl::StrCat(
      "{\"error\":", JsonString(status.message()),
      ",\"code\":", JsonString(absl::StatusCodeToString(status.code())), "}");
  return reply;
}

absl::StatusOr<std::string> Required(
    const std::map<std::string, std::string>& params, absl::string_view name) {
  auto it = params.find(std::string(name));
  if (it == params.end() || it->second.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter ", name, " is required"));
  }
  return it->second;
}

absl::StatusOr<std::optional<absl::Time>> OptionalTime(
    const std::map<std::string, std::string>& params, absl::string_view name) {
  auto it = params.find(std::string(name));
  if (it == params.end() || it->second.empty())
    return std::optional<absl::Time>();
  // A bare date is midnight in the ledger's zone (DESIGN.md §5: +08:00).
  const std::string what = absl::StrCat("parameter ", name);
  ASSIGN_OR_RETURN(
      absl::Time t,
      ParseLedgerTime(what, it->second, absl::FixedTimeZone(8 * 3600)));
  return std::optional<absl::Time>(t);
}

absl::StatusOr<absl::Time> RequiredTime(
    const std::map<std::string, std::string>& params, absl::string_view name) {
  ASSIGN_OR_RETURN(std::optional<absl::Time> t, OptionalTime(params, name));
  if (!t.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter ", name,
        " is required (an RFC 3339 time such as 2024-11-04T00:00:00+08:00)"));
  }
  return *t;
}

// ?position=P: a position the log has reached (a later one would answer
// "what we knew then" about a time that has not come).
absl::StatusOr<std::optional<uint64_t>> OptionalPosition(
    const std::map<std::string, std::string>& params, const EventLog& log) {
  auto it = params.find("position");
  if (it == params.end() || it->second.empty())
    return std::optional<uint64_t>();
  uint64_t position = 0;
  if (!absl::SimpleAtoi(it->second, &position)) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter position must be a log position (an unsigned "
                     "integer), got '",
                     it->second, "'"));
  }
  const uint64_t head = log.head().position;
  if (position > head) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter position ", position, " is past the log's head ", head));
  }
  return std::optional<uint64_t>(position);
}

bool IsMerchant(const Principal& principal) {
  return !principal.unrestricted && principal.role == Role::kMerchant;
}

// A merchant may see an answer about these stores only when every one is
// its own (and there is at least one).
absl::Status CheckStoresAccess(const Principal& principal, const Ledger& ledger,
                               const std::vector<std::string>& store_ids,
                               absl::string_view what) {
  if (!IsMerchant(principal)) return absl::OkStatus();
  if (store_ids.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("role ", RoleName(principal), " may not read ", what));
  }
  for (const std::string& id : store_ids) {
    if (!CheckStoreAccess(principal, ledger, id).ok()) {
      return absl::PermissionDeniedError(
          absl::StrCat("role ", RoleName(principal), " may not read ", what));
    }
  }
  return absl::OkStatus();
}

std::string StoreHit(absl::string_view kind, absl::string_view id,
                     const StoreRecord& store) {
  return absl::StrCat(
      "{\"kind\":", JsonString(kind), ",\"id\":", JsonString(id),
      ",\"storeId\":", JsonString(store.store_id()),
      ",\"storeKind\":", JsonString(v1::StoreKind_Name(store.kind())),
      ",\"merchantId\":", JsonString(store.merchant_id()),
      ",\"upgradedFrom\":", JsonString(store.upgraded_from()),
      ",\"upgradedTo\":", JsonString(store.upgraded_to()), "}");
}

}  // namespace

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 413;
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

ConsoleApi::ConsoleApi(const Ledger* ledger, const TokenTable* tokens,
                       ConsoleScope scope)
    : ledger_(ledger), tokens_(tokens), scope_(scope) {}

absl::StatusOr<Principal> ConsoleApi::Authorize(
    std::optional<absl::string_view> authorization,
    Permission permission) const {
  return storeledger::Authorize(tokens_, authorization, permission);
}

ApiReply ConsoleApi::Get(absl::string_view path,
                         const std::map<std::string, std::string>& params,
                         std::optional<absl::string_view> authorization) {
  absl::StatusOr<ApiReply> reply = Route(path, params, authorization);
  if (!reply.ok()) {
    absl::Status status = reply.status();
    if (scope_.partitions > 0 &&
        (absl::IsNotFound(status) || absl::IsPermissionDenied(status))) {
      // Not "there is no such id": there is none in this partition.
      status = absl::Status(
          status.code(),
          absl::StrCat(status.message(), " (this console reads partition ",
                       scope_.partition, " of ", scope_.partitions,
                       ", this node's: a store and its ids are on the "
                       "consoles of their partition's nodes)"));
    }
    return ErrorReply(status);
  }
  return *std::move(reply);
}

absl::StatusOr<ApiReply> ConsoleApi::Route(
    absl::string_view path, const Params& params,
    std::optional<absl::string_view> authorization) {
  // The permission each endpoint needs, as its gRPC counterpart does.
  Permission permission = Permission::kReadStore;
  if (path == "/api/balances" || path == "/api/digest" ||
      path == "/api/verify") {
    permission = Permission::kDigest;
  } else if (path == "/api/audit") {
    permission = Permission::kAudit;
  }
  ASSIGN_OR_RETURN(Principal principal, Authorize(authorization, permission));
  ApiReply reply;
  if (path == "/api/whoami") {
    reply.body = absl::StrCat(
        "{\"role\":", JsonString(RoleName(principal)),
        ",\"merchantId\":", JsonString(principal.merchant_id),
        ",\"authenticated\":", principal.unrestricted ? "false" : "true",
        ",\"partition\":", scope_.partition,
        ",\"partitions\":", scope_.partitions, "}");
  } else if (path == "/api/policy") {
    reply.body = ToJson(ledger_->policy());
  } else if (path == "/api/search") {
    ASSIGN_OR_RETURN(reply.body, Search(principal, params));
  } else if (path == "/api/store") {
    ASSIGN_OR_RETURN(reply.body, Store(principal, params));
  } else if (path == "/api/history") {
    ASSIGN_OR_RETURN(reply.body, History(principal, params));
  } else if (path == "/api/balance-series") {
    ASSIGN_OR_RETURN(reply.body, BalanceSeries(principal, params));
  } else if (path == "/api/diff") {
    ASSIGN_OR_RETURN(reply.body, Diff(principal, params));
  } else if (path == "/api/explain") {
    ASSIGN_OR_RETURN(reply.body, Explain(principal, params));
  } else if (path == "/api/balances") {
    ASSIGN_OR_RETURN(reply.body, Balances(params));
  } else if (path == "/api/statement") {
    return Statement(principal, params);
  } else if (path == "/api/audit") {
    ASSIGN_OR_RETURN(reply.body, Audit(params));
  } else if (path == "/api/digest") {
    const Head head = ledger_->log().head();
    v1::Digest digest;
    digest.set_position(head.position);
    digest.set_hash(ToHex(head.hash));
    reply.body = ToJson(digest);
  } else if (path == "/api/verify") {
    ASSIGN_OR_RETURN(reply.body, Verify(params));
  } else {
    return absl::NotFoundError(absl::StrCat("no API endpoint ", path));
  }
  return reply;
}

absl::StatusOr<std::string> ConsoleApi::Search(const Principal& principal,
                                               const Params& params) const {
  ASSIGN_OR_RETURN(std::string q, Required(params, "q"));
  ProjectionReader reader(&ledger_->log());
  std::vector<std::string> hits;
  auto visible = [&](const std::string& store_id) {
    return CheckStoreAccess(principal, *ledger_, store_id).ok();
  };
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, reader.Store(q));
  if (store != nullptr && visible(q))
    hits.push_back(StoreHit("store", q, *store));
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant, reader.Merchant(q));
  if (merchant != nullptr &&
      (!IsMerchant(principal) || principal.merchant_id == q)) {
    if (merchant->store_ids_size() > static_cast<int>(kSearchStoresMax)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("merchant ", q, " has more than ", kSearchStoresMax,
                       " stores; search one of them by its id"));
    }
    for (const std::string& id : merchant->store_ids()) {
      ASSIGN_OR_RETURN(RecordRef<StoreRecord> s, reader.Store(id));
      if (s != nullptr) hits.push_back(StoreHit("merchant", q, *s));
    }
  }
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> order, reader.Order(q));
  if (order != nullptr && visible(order->store_id())) {
    ASSIGN_OR_RETURN(RecordRef<StoreRecord> s, reader.Store(order->store_id()));
    if (s != nullptr) hits.push_back(StoreHit("order", q, *s));
  }
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal,
                   reader.Withdrawal(q));
  if (withdrawal != nullptr && visible(withdrawal->store_id())) {
    ASSIGN_OR_RETURN(RecordRef<StoreRecord> s,
                     reader.Store(withdrawal->store_id()));
    if (s != nullptr) hits.push_back(StoreHit("withdrawal", q, *s));
  }
  absl::StatusOr<v1::Explanation> command =
      storeledger::Explain(ledger_->log(), ledger_->policy(), q);
  if (!command.ok() && !absl::IsNotFound(command.status())) {
    return command.status();
  }
  if (command.ok()) {
    std::vector<v1::Envelope> events(command->events().begin(),
                                     command->events().end());
    const std::vector<std::string> stores = TouchedStores(events);
    if (CheckStoresAccess(principal, *ledger_, stores, "").ok()) {
      std::string ids;
      for (const std::string& id : stores) {
        absl::StrAppend(&ids, ids.empty() ? "" : ",", JsonString(id));
      }
      hits.push_back(absl::StrCat(
          "{\"kind\":\"command\",\"id\":", JsonString(q), ",\"status\":",
          JsonString(v1::OutcomeStatus_Name(command->outcome().status())),
          ",\"rule\":", JsonString(command->outcome().rule()),
          ",\"storeIds\":[", ids, "]}"));
    }
  }
  if (hits.empty()) {
    // The same answer whether the id is unknown or another merchant's.
    return absl::NotFoundError(absl::StrCat(
        "no store, merchant, order, withdrawal or command",
        IsMerchant(principal) ? " of yours" : "", " has the id '", q, "'"));
  }
  std::string out =
      absl::StrCat("{\"query\":", JsonString(q), ",\"results\":[");
  for (size_t i = 0; i < hits.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", hits[i]);
  }
  absl::StrAppend(&out, "]}");
  return out;
}

absl::StatusOr<std::string> ConsoleApi::Store(const Principal& principal,
                                              const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "id"));
  RETURN_IF_ERROR(CheckStoreAccess(principal, *ledger_, id));
  AsOf as_of;
  ASSIGN_OR_RETURN(as_of.business_time, OptionalTime(params, "asOf"));
  ASSIGN_OR_RETURN(as_of.position, OptionalPosition(params, ledger_->log()));
  ASSIGN_OR_RETURN(v1::StoreState state, ledger_->State(id, as_of));
  return ToJson(state);
}

absl::StatusOr<std::string> ConsoleApi::History(const Principal& principal,
                                                const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "store"));
  ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> readable,
                   ReadableStores(principal, *ledger_));
  RETURN_IF_ERROR(CheckStoreAccess(principal, readable, id));
  std::string events;
  size_t count = 0;
  // A merchant is not shown a refusal that names a store (or merchant)
  // other than its own, as over gRPC.
  const auto may_read = [&](const v1::Envelope& e) {
    return MayReadRefusal(principal, readable, e.payload().command_rejected());
  };
  ASSIGN_OR_RETURN(
      bool found,
      ScanStoreHistory(
          ledger_->log(), id, 0, true, may_read, [&](const v1::Envelope& e) {
            if (count == kConsoleHistoryEventsMax) {
              ++count;
              return false;
            }
            absl::StrAppend(&events, count++ == 0 ? "" : ",", ToJson(e));
            return true;
          }));
  if (!found) {
    return absl::NotFoundError(absl::StrCat(
        "store ", id, " has no events and no refused commands in this ledger"));
  }
  if (count > kConsoleHistoryEventsMax) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "store ", id, " has more than ", kConsoleHistoryEventsMax,
        " events and refusals, more than the console shows; page through "
        "them with `storeledger history --store ",
        id, " --from-position N --limit M`"));
  }
  return absl::StrCat("{\"storeId\":", JsonString(id), ",\"events\":[", events,
                      "]}");
}

absl::StatusOr<std::string> ConsoleApi::BalanceSeries(
    const Principal& principal, const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "store"));
  RETURN_IF_ERROR(CheckStoreAccess(principal, *ledger_, id));
  // An unknown store is 404, not an empty series.
  RETURN_IF_ERROR(ledger_->State(id).status());
  ASSIGN_OR_RETURN(std::vector<BalancePoint> points,
                   StoreBalanceSeries(ledger_->log(), id));
  std::string out =
      absl::StrCat("{\"storeId\":", JsonString(id), ",\"points\":[");
  for (size_t i = 0; i < points.size(); ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", "{\"position\":\"",
                    points[i].position,
                    "\",\"occurredAt\":", TimeJson(points[i].occurred_at),
                    ",\"balances\":", ToJson(points[i].balances), "}");
  }
  absl::StrAppend(&out, "]}");
  return out;
}

absl::StatusOr<std::string> ConsoleApi::Diff(const Principal& principal,
                                             const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "store"));
  ASSIGN_OR_RETURN(absl::Time from, RequiredTime(params, "from"));
  ASSIGN_OR_RETURN(absl::Time to, RequiredTime(params, "to"));
  if (to < from)
    return absl::InvalidArgumentError("parameter to is before from");
  ASSIGN_OR_RETURN(std::optional<uint64_t> position,
                   OptionalPosition(params, ledger_->log()));
  RETURN_IF_ERROR(CheckStoreAccess(principal, *ledger_, id));
  absl::StatusOr<v1::StoreState> before =
      ledger_->State(id, AsOf{from, position});
  std::optional<v1::StoreState> before_state;
  if (before.ok()) {
    before_state = *std::move(before);
  } else if (!absl::IsNotFound(before.status())) {
    return before.status();
  }
  ASSIGN_OR_RETURN(v1::StoreState after,
                   ledger_->State(id, AsOf{to, position}));
  v1::StoreDiff diff = DiffStoreStates(before_state, after);
  *diff.mutable_from() = ToProto(from);
  *diff.mutable_to() = ToProto(to);
  return ToJson(diff);
}

absl::StatusOr<std::string> ConsoleApi::Explain(const Principal& principal,
                                                const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "commandId"));
  ASSIGN_OR_RETURN(v1::Explanation explanation,
                   ExplainAs(principal, *ledger_, id));
  return ToJson(explanation);
}

absl::StatusOr<std::string> ConsoleApi::Balances(const Params& params) const {
  AsOf as_of;
  ASSIGN_OR_RETURN(as_of.business_time, OptionalTime(params, "asOf"));
  ASSIGN_OR_RETURN(as_of.position, OptionalPosition(params, ledger_->log()));
  ASSIGN_OR_RETURN(v1::BalancesReport report,
                   as_of.empty() ? BalancesFromProjections(ledger_->log())
                                 : BalancesFromPostings(ledger_->log(), as_of));
  return ToJson(report);
}

absl::StatusOr<ApiReply> ConsoleApi::Statement(const Principal& principal,
                                               const Params& params) const {
  ASSIGN_OR_RETURN(std::string id, Required(params, "store"));
  ASSIGN_OR_RETURN(absl::Time from, RequiredTime(params, "from"));
  ASSIGN_OR_RETURN(absl::Time to, RequiredTime(params, "to"));
  auto format = params.find("format");
  const std::string kind = format == params.end() ? "json" : format->second;
  if (kind != "json" && kind != "csv") {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter format must be json or csv, got '", kind, "'"));
  }
  RETURN_IF_ERROR(CheckStoreAccess(principal, *ledger_, id));
  ASSIGN_OR_RETURN(v1::Statement statement,
                   BuildStatement(ledger_->log(), id, from, to));
  ApiReply reply;
  if (kind == "csv") {
    reply.content_type = "text/csv; charset=utf-8";
    reply.body = StatementCsv(statement);
    reply.attachment_name = absl::StrCat("statement-", id, ".csv");
  } else {
    reply.body = ToJson(statement);
  }
  return reply;
}

absl::StatusOr<std::string> ConsoleApi::Audit(const Params& params) {
  {
    absl::MutexLock lock(&audit_mu_);
    if (!last_audit_.empty() && params.count("run") == 0) return last_audit_;
  }
  // As the gRPC Audit: the live ledger, every pass through one snapshot of
  // the durable log taken now (replay/audit.h). Not a read-only open of the
  // directory beside it: the live instance's compactions delete the files
  // such an open reads, and a sound ledger would answer DATA_LOSS.
  const absl::Time started = absl::Now();
  ASSIGN_OR_RETURN(v1::AuditReport report, storeledger::Audit(ledger_->log()));
  std::string answer = absl::StrCat(
      "{\"ranAt\":", TimeJson(started),
      ",\"seconds\":", absl::ToDoubleSeconds(absl::Now() - started),
      ",\"report\":", ToJson(report), "}");
  absl::MutexLock lock(&audit_mu_);
  last_audit_ = answer;
  return answer;
}

absl::StatusOr<std::string> ConsoleApi::Verify(const Params& params) const {
  ASSIGN_OR_RETURN(std::string text, Required(params, "digest"));
  absl::StatusOr<DigestText> digest = ParseDigestText(text);
  if (!digest.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter digest ", digest.status().message()));
  }
  absl::Status verified = VerifyDigest(ledger_->log(), *digest);
  if (!verified.ok() && !absl::IsFailedPrecondition(verified) &&
      !absl::IsDataLoss(verified)) {
    return verified;
  }
  return absl::StrCat(
      "{\"verified\":", verified.ok() ? "true" : "false", ",\"position\":\"",
      digest->position, "\",\"message\":",
      JsonString(verified.ok() ? absl::StrCat("the log up to position ",
                                              digest->position, " is unchanged")
                               : std::string(verified.message())),
      "}");
}

}  // namespace storeledger
