// The finance verbs (DESIGN.md §5): postings, balances, statement,
// audit. The figures come from replay/finance.h and replay/audit.h; this file
// only parses flags and formats.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "base/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "json/json.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replay/read_views.h"
#include "storage/merkle_store.h"

namespace storeledger {
namespace {

// Violations audit prints on stderr; the JSON report holds them all (up to
// kAuditViolationsMax).
constexpr int kAuditViolationsPrinted = 20;
// How often audit's progress line is redrawn.
constexpr absl::Duration kProgressInterval = absl::Milliseconds(500);

absl::Status CheckFormat(const std::string& format,
                         const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), format) != allowed.end()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--format must be ", absl::StrJoin(allowed, " or "), ", got '", format,
      "'"));
}

bool StderrIsTerminal(const CliContext& ctx) {
  return ctx.err == &std::cerr && isatty(STDERR_FILENO) == 1;
}

// The first line of every CSV: the position (and its recorded time) the
// figures are as of, the business time when one was asked, the zone the
// times are in and the unit of the amounts.
absl::StatusOr<std::string> AsOfLine(const CliContext& ctx,
                                     const EventLog& log, absl::string_view what,
                                     std::optional<uint64_t> position,
                                     std::optional<absl::Time> business_time,
                                     bool yuan) {
  const uint64_t head = log.head().position;
  const uint64_t at = std::min(position.value_or(head), head);
  std::string line = absl::StrCat("# storeledger ", what, " as of position ", at);
  if (at > 0) {
    ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(at));
    absl::StrAppend(&line, " (recorded ",
                    ZoneTime(envelope.recorded_at(), ctx.zone), ")");
  }
  if (business_time.has_value()) {
    absl::StrAppend(&line, ", business time ", ZoneTime(*business_time, ctx.zone));
  }
  absl::StrAppend(&line, "; times in ", ctx.zone.name, "; amounts in ",
                  yuan ? "yuan" : "fen", "\n");
  return line;
}

// "_fen" or "_yuan": the unit suffix of amount columns.
const char* Unit(bool yuan) { return yuan ? "_yuan" : "_fen"; }

std::string BalancesCsvRow(absl::string_view row, absl::string_view store_id,
                           absl::string_view kind, absl::string_view status,
                           absl::string_view upgraded_from,
                           absl::string_view upgraded_to,
                           const v1::Balances& b, bool yuan) {
  return absl::StrCat(row, ",", CsvField(store_id), ",", kind, ",", status, ",",
                      CsvField(upgraded_from), ",", CsvField(upgraded_to), ",",
                      AmountText(b.pending_fen(), yuan), ",",
                      AmountText(b.available_fen(), yuan), ",",
                      AmountText(b.withdrawing_fen(), yuan), ",",
                      AmountText(b.paid_out_fen(), yuan), ",",
                      AmountText(b.deposit_fen(), yuan), "\n");
}

// The statement of a store and, with --pair, of the one it upgraded into
// (or from): legacy first.
absl::StatusOr<std::vector<v1::Statement>> Statements(
    const Ledger& ledger, const std::string& store_id, bool pair,
    absl::Time from, absl::Time to) {
  std::vector<std::string> ids = {store_id};
  if (pair) {
    absl::StatusOr<v1::StoreState> state = ledger.State(store_id);
    RETURN_IF_ERROR(state.status());
    if (!state->upgraded_to().empty()) {
      ids.push_back(state->upgraded_to());
    } else if (!state->upgraded_from().empty()) {
      ids.insert(ids.begin(), state->upgraded_from());
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "--pair: store ", store_id,
          " neither upgraded into a WeChat Store nor was upgraded from one"));
    }
  }
  std::vector<v1::Statement> statements;
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(v1::Statement statement,
                     BuildStatement(ledger.log(), id, from, to));
    statements.push_back(std::move(statement));
  }
  return statements;
}

void WriteStatementCsv(const CliContext& ctx, const v1::Statement& statement,
                       bool pair, bool yuan) {
  StatementCsvStyle style;
  if (pair) {
    style.row_prefix = absl::StrCat(CsvField(statement.store_id()), ",",
                                    v1::StoreKind_Name(statement.kind()), ",");
  }
  style.event_type = true;
  style.time = [&](const google::protobuf::Timestamp& t) {
    return ZoneTime(t, ctx.zone);
  };
  style.amount = [&](int64_t fen) { return AmountText(fen, yuan); };
  WriteStatementCsvRows(statement, style, *ctx.out);
}

}  // namespace

int PostingsVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::string format = ctx.flags.GetOr("format", "csv");
  if (absl::Status s = CheckFormat(format, {"csv", "jsonl"}); !s.ok()) {
    return ctx.Fail(s);
  }
  const bool yuan = ctx.flags.Has("yuan");
  if (yuan && format != "csv") {
    return ctx.Fail(absl::InvalidArgumentError(
        "--yuan is for the CSV; jsonl keeps fen (a machine format)"));
  }
  PostingFilter filter;
  filter.store_id = ctx.flags.Get("store");
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  filter.from = *from;
  filter.to = *to;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.KnowledgePosition(**ledger);
  if (!position.ok()) return ctx.Fail(position.status());
  filter.max_position = *position;

  std::ostream& out = *ctx.out;
  const bool csv = format == "csv";
  if (csv) {
    absl::StatusOr<std::string> as_of = AsOfLine(
        ctx, (*ledger)->log(), "postings", *position, std::nullopt, yuan);
    if (!as_of.ok()) return ctx.Fail(as_of.status());
    out << *as_of
        << "position,event_id,event_type,occurred_at,store_id,store_kind,"
           "account,debit"
        << Unit(yuan) << ",credit" << Unit(yuan) << ",order_id,withdrawal_id\n";
  }
  uint64_t printed = 0;
  absl::Status status = ForEachPosting(
      (*ledger)->log(), filter, [&](const v1::PostingLine& line) {
        ++printed;
        if (csv) {
          out << line.position() << ',' << CsvField(line.event_id()) << ','
              << line.event_type() << ','
              << ZoneTime(line.occurred_at(), ctx.zone) << ','
              << CsvField(line.store_id()) << ','
              << v1::StoreKind_Name(line.store_kind()) << ','
              << CsvField(line.account()) << ','
              << AmountText(line.debit_fen(), yuan) << ','
              << AmountText(line.credit_fen(), yuan) << ','
              << CsvField(line.order_id()) << ',' << CsvField(line.withdrawal_id())
              << '\n';
        } else {
          out << ToJson(line) << '\n';
        }
        return true;
      });
  out.flush();
  if (!status.ok()) return ctx.Fail(status);
  if (printed == 0) ctx.SayNothingMatched("no posting passes the filters");
  return kExitOk;
}

int BalancesVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::string format = ctx.flags.GetOr("format", "json");
  if (absl::Status s = CheckFormat(format, {"json", "csv"}); !s.ok()) {
    return ctx.Fail(s);
  }
  const bool yuan = ctx.flags.Has("yuan");
  if (yuan && format != "csv") {
    return ctx.Fail(absl::InvalidArgumentError(
        "--yuan is for --format csv; JSON keeps fen (a machine format)"));
  }
  AsOf as_of;
  absl::StatusOr<std::optional<absl::Time>> t = ctx.flags.GetTime("as-of");
  if (!t.ok()) return ctx.Fail(t.status());
  as_of.business_time = *t;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.KnowledgePosition(**ledger);
  if (!position.ok()) return ctx.Fail(position.status());
  as_of.position = *position;
  ctx.EchoTime("as-of");
  const EventLog& log = (*ledger)->log();
  absl::StatusOr<v1::BalancesReport> report =
      as_of.empty() ? BalancesFromProjections(log)
                    : BalancesFromPostings(log, as_of);
  if (!report.ok()) return ctx.Fail(report.status());
  report->set_as_of_written(ctx.flags.GetOr("as-of", ""));

  std::ostream& out = *ctx.out;
  if (format == "json") {
    out << ToJson(*report) << "\n";
    return kExitOk;
  }
  absl::StatusOr<std::string> as_of_line =
      AsOfLine(ctx, log, "balances", report->position(), *t, yuan);
  if (!as_of_line.ok()) return ctx.Fail(as_of_line.status());
  // One table; the `row` column tells store rows from the per-kind totals,
  // so that summing a column over row=store rows gives the totals.
  const char* unit = Unit(yuan);
  out << *as_of_line
      << absl::StrCat("row,store_id,kind,status,upgraded_from,upgraded_to,"
                      "pending", unit, ",available", unit, ",withdrawing", unit,
                      ",paid_out", unit, ",deposit", unit, "\n");
  for (const v1::StoreBalances& store : report->stores()) {
    out << BalancesCsvRow("store", store.store_id(),
                          v1::StoreKind_Name(store.kind()),
                          v1::StoreStatus_Name(store.status()),
                          store.upgraded_from(), store.upgraded_to(),
                          store.balances(), yuan);
  }
  for (const v1::KindTotals& totals : report->totals()) {
    out << BalancesCsvRow(totals.legacy() ? "total_legacy" : "total_new", "",
                          v1::StoreKind_Name(totals.kind()), "", "", "",
                          totals.balances(), yuan);
  }
  return kExitOk;
}

namespace {

// statement --proofs: one JSON line per posting, {"line": StatementLine,
// "proof": InclusionProof}, every proof against the latest signed
// checkpoint, so a merchant checks each line on its own
// (examples/verify/verify.js statement).
absl::Status PrintStatementProofs(const EventLog& log,
                                  const v1::Statement& statement,
                                  std::ostream& out) {
  ASSIGN_OR_RETURN(std::optional<v1::SignedCheckpoint> checkpoint,
                   LatestCheckpoint(log));
  if (!checkpoint.has_value()) {
    return absl::FailedPreconditionError(
        "--proofs: no signed checkpoint yet; run `storeledger checkpoint --key "
        "FILE` first");
  }
  for (const v1::StatementLine& line : statement.lines()) {
    if (line.posting().position() > checkpoint->tree_size()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--proofs: the statement holds position ", line.posting().position(),
          ", past the latest checkpoint (tree size ", checkpoint->tree_size(),
          "); sign a new checkpoint first"));
    }
    ASSIGN_OR_RETURN(v1::InclusionProof proof,
                     InclusionProofMessage(log, line.posting().position(),
                                           checkpoint->tree_size()));
    out << "{\"line\":" << ToJson(line) << ",\"proof\":" << ToJson(proof)
        << "}\n";
  }
  return absl::OkStatus();
}

}  // namespace

int StatementVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) return ctx.Fail(s);
  const std::string format = ctx.flags.GetOr("format", "csv");
  if (absl::Status s = CheckFormat(format, {"csv", "json"}); !s.ok()) {
    return ctx.Fail(s);
  }
  const bool yuan = ctx.flags.Has("yuan");
  if (yuan && format != "csv") {
    return ctx.Fail(absl::InvalidArgumentError(
        "--yuan is for the CSV; JSON keeps fen (a machine format)"));
  }
  const bool pair = ctx.flags.Has("pair");
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  if (!from->has_value() || !to->has_value()) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--from and --to are required (RFC 3339 or a date; the period is "
        "[from, to))"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<std::vector<v1::Statement>> statements =
      Statements(**ledger, *store, pair, **from, **to);
  if (!statements.ok()) return ctx.Fail(statements.status());

  std::ostream& out = *ctx.out;
  if (ctx.flags.Has("proofs")) {
    for (const v1::Statement& statement : *statements) {
      absl::Status s = PrintStatementProofs((*ledger)->log(), statement, out);
      if (!s.ok()) return ctx.Fail(s);
    }
    return kExitOk;
  }
  if (format == "json") {
    if (!pair) {
      out << ToJson(statements->front()) << "\n";
      return kExitOk;
    }
    v1::StatementPair both;
    *both.mutable_legacy() = (*statements)[0];
    *both.mutable_wechat() = (*statements)[1];
    out << ToJson(both) << "\n";
    return kExitOk;
  }
  absl::StatusOr<std::string> as_of_line = AsOfLine(
      ctx, (*ledger)->log(), pair ? "statement pair" : "statement",
      std::nullopt, std::nullopt, yuan);
  if (!as_of_line.ok()) return ctx.Fail(as_of_line.status());
  const char* unit = Unit(yuan);
  out << *as_of_line << "# period [" << ZoneTime(**from, ctx.zone) << ", "
      << ZoneTime(**to, ctx.zone) << ")"
      << (pair ? "; two stores, each its own rows: never sum them" : "")
      << "\n"
      << (pair ? "store_id,store_kind," : "")
      << absl::StrCat("section,account,position,event_id,event_type,"
                      "occurred_at,debit", unit, ",credit", unit, ",balance",
                      unit, ",order_id,withdrawal_id\n");
  for (const v1::Statement& statement : *statements) {
    WriteStatementCsv(ctx, statement, pair, yuan);
  }
  return kExitOk;
}

int AuditVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  const bool terminal = StderrIsTerminal(ctx);
  const absl::Time started = absl::Now();
  std::ostream& err = *ctx.err;

  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  v1::AuditReport report;
  if (!ledger.ok()) {
    if (!absl::IsDataLoss(ledger.status())) return ctx.Fail(ledger.status());
    // The log refused to open because it is damaged (its head and its last
    // event disagree): that is an audit finding, reported as one.
    v1::AuditViolation* v = report.add_violations();
    v->set_check(std::string(kCheckHashChain));
    v->set_code(absl::StatusCodeToString(ledger.status().code()));
    v->set_message(absl::StrCat("the log cannot be opened: ",
                                ledger.status().message()));
    report.set_violations_total(1);
  } else {
    AuditOptions options;
    absl::Time last_progress = started;
    if (terminal && !ctx.flags.Has("no-progress")) {
      options.progress_every = 10'000;
      options.progress = [&](absl::string_view pass, uint64_t done,
                             uint64_t total) {
        const absl::Time now = absl::Now();
        if (now - last_progress < kProgressInterval) return;
        last_progress = now;
        err << "\raudit: " << pass << " " << done;
        if (total > 0) err << "/" << total;
        err << "\033[K" << std::flush;
      };
    }
    absl::StatusOr<v1::AuditReport> audited =
        Audit((*ledger)->log(), options);
    if (terminal && options.progress) err << "\r\033[K";
    if (!audited.ok()) return ctx.Fail(audited.status());
    report = *std::move(audited);
  }
  *ctx.out << ToJson(report) << "\n";
  ctx.out->flush();

  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  if (report.ok()) {
    if (terminal) {
      err << absl::StrFormat(
          "audit: OK: %d events (head %d), %d postings, %d streams (%d stores, "
          "%d merchants), %d command outcomes, %d projection keys; %.2f s\n",
          report.events_checked(), report.head_position(),
          report.postings_checked(), report.streams_checked(),
          report.stores_checked(), report.merchants_checked(),
          report.commands_checked(), report.projection_keys_checked(),
          seconds);
    }
    return kExitOk;
  }
  err << "storeledger audit: FAILED: " << report.violations_total()
      << " violation" << (report.violations_total() == 1 ? "" : "s") << "\n";
  int printed = 0;
  for (const v1::AuditViolation& v : report.violations()) {
    if (printed++ == kAuditViolationsPrinted) {
      err << "  ... (the JSON report on stdout lists up to "
          << kAuditViolationsMax << ")\n";
      break;
    }
    err << "  [" << v.check() << "] " << v.code();
    if (v.position() != 0) err << " at position " << v.position();
    err << ": " << v.message() << "\n";
  }
  return kExitCheckFailed;
}

}  // namespace storeledger
