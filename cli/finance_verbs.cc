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
#include "base/status_macros.h"
#include "cli/cli.h"
#include "cli/finance_print.h"
#include "google/protobuf/util/time_util.h"
#include "json/json.h"
#include "replay/audit.h"
#include "replay/finance.h"
#include "replay/lookup.h"
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
  return absl::InvalidArgumentError(absl::StrCat("--format must be ",
                                                 absl::StrJoin(allowed, " or "),
                                                 ", got '", format, "'"));
}

bool StderrIsTerminal(const CliContext& ctx) {
  return ctx.err == &std::cerr && isatty(STDERR_FILENO) == 1;
}

// The first line of every CSV: the position (and its recorded time) the
// figures are as of, the business time when one was asked, the zone the
// times are in and the unit of the amounts.
std::string AsOfText(const CliContext& ctx, absl::string_view what,
                     const v1::PositionAt& at,
                     std::optional<absl::Time> business_time, bool yuan) {
  std::string line =
      absl::StrCat("# storeledger ", what, " as of position ", at.position());
  if (at.position() > 0) {
    absl::StrAppend(&line, " (recorded ", ZoneTime(at.recorded_at(), ctx.zone),
                    ")");
  }
  if (business_time.has_value()) {
    absl::StrAppend(&line, ", business time ",
                    ZoneTime(*business_time, ctx.zone));
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
                           absl::string_view upgraded_to, const v1::Balances& b,
                           bool yuan) {
  return absl::StrCat(row, ",", CsvField(store_id), ",", kind, ",", status, ",",
                      CsvField(upgraded_from), ",", CsvField(upgraded_to), ",",
                      AmountText(b.pending_fen(), yuan), ",",
                      AmountText(b.available_fen(), yuan), ",",
                      AmountText(b.withdrawing_fen(), yuan), ",",
                      AmountText(b.paid_out_fen(), yuan), ",",
                      AmountText(b.deposit_fen(), yuan), "\n");
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

absl::StatusOr<PostingsFlags> PostingsFlags::Parse(const CliContext& ctx) {
  RETURN_IF_ERROR(ctx.CheckFlags());
  PostingsFlags flags;
  const std::string format = ctx.flags.GetOr("format", "csv");
  RETURN_IF_ERROR(CheckFormat(format, {"csv", "jsonl"}));
  flags.csv = format == "csv";
  flags.yuan = ctx.flags.Has("yuan");
  if (flags.yuan && !flags.csv) {
    return absl::InvalidArgumentError(
        "--yuan is for the CSV; jsonl keeps fen (a machine format)");
  }
  flags.filter.store_id = ctx.flags.Get("store");
  ASSIGN_OR_RETURN(flags.filter.from, ctx.flags.GetTime("from"));
  ASSIGN_OR_RETURN(flags.filter.to, ctx.flags.GetTime("to"));
  return flags;
}

void PrintPostingsHeader(CliContext& ctx, const PostingsFlags& flags,
                         const v1::PositionAt& at) {
  if (!flags.csv) return;
  *ctx.out << AsOfText(ctx, "postings", at, std::nullopt, flags.yuan)
           << "position,event_id,event_type,occurred_at,store_id,store_kind,"
              "account,debit"
           << Unit(flags.yuan) << ",credit" << Unit(flags.yuan)
           << ",order_id,withdrawal_id\n";
}

void PrintPosting(CliContext& ctx, const PostingsFlags& flags,
                  const v1::PostingLine& line) {
  std::ostream& out = *ctx.out;
  if (!flags.csv) {
    out << ToJson(line) << '\n';
    return;
  }
  const bool yuan = flags.yuan;
  out << line.position() << ',' << CsvField(line.event_id()) << ','
      << line.event_type() << ',' << ZoneTime(line.occurred_at(), ctx.zone)
      << ',' << CsvField(line.store_id()) << ','
      << v1::StoreKind_Name(line.store_kind()) << ','
      << CsvField(line.account()) << ',' << AmountText(line.debit_fen(), yuan)
      << ',' << AmountText(line.credit_fen(), yuan) << ','
      << CsvField(line.order_id()) << ',' << CsvField(line.withdrawal_id())
      << '\n';
}

int PostingsVerb(CliContext& ctx) {
  absl::StatusOr<PostingsFlags> flags = PostingsFlags::Parse(ctx);
  if (!flags.ok()) return ctx.Fail(flags.status());
  absl::StatusOr<CliContext::LedgerRead> read = ctx.OpenLedgerForRead();
  if (!read.ok()) return ctx.Fail(read.status());
  PostingFilter filter = flags->filter;
  filter.max_position = read->position;
  if (flags->csv) {
    absl::StatusOr<v1::PositionAt> at =
        ResolvePosition(read->ledger->log(), std::nullopt, read->position, "");
    if (!at.ok()) return ctx.Fail(at.status());
    PrintPostingsHeader(ctx, *flags, *at);
  }
  uint64_t printed = 0;
  absl::Status status = ForEachPosting(read->ledger->log(), filter,
                                       [&](const v1::PostingLine& line) {
                                         ++printed;
                                         PrintPosting(ctx, *flags, line);
                                         return true;
                                       });
  ctx.out->flush();
  if (!status.ok()) return ctx.Fail(status);
  if (printed == 0) ctx.SayNothingMatched("no posting passes the filters");
  return kExitOk;
}

absl::StatusOr<BalancesFlags> BalancesFlags::Parse(const CliContext& ctx) {
  RETURN_IF_ERROR(ctx.CheckFlags());
  BalancesFlags flags;
  const std::string format = ctx.flags.GetOr("format", "json");
  RETURN_IF_ERROR(CheckFormat(format, {"json", "csv"}));
  flags.csv = format == "csv";
  flags.yuan = ctx.flags.Has("yuan");
  if (flags.yuan && !flags.csv) {
    return absl::InvalidArgumentError(
        "--yuan is for --format csv; JSON keeps fen (a machine format)");
  }
  ASSIGN_OR_RETURN(flags.as_of, ctx.flags.GetTime("as-of"));
  return flags;
}

void PrintBalances(CliContext& ctx, const BalancesFlags& flags,
                   v1::BalancesReport report,
                   const std::vector<v1::PositionAt>& ats) {
  report.set_as_of_written(ctx.flags.GetOr("as-of", ""));
  std::ostream& out = *ctx.out;
  const bool partitioned = ats.size() > 1;
  // Totals of nothing (an --as-of or a position before the first store):
  // say so rather than print zeros as if they were figures.
  if (report.stores_size() == 0) {
    ctx.SayNothingMatched(
        "no store existed at that business time and position; the totals "
        "are of no store");
  }
  if (!flags.csv) {
    if (partitioned) {
      for (size_t p = 0; p < ats.size(); ++p) {
        out << "{\"partition\":" << p << ",\"positionAt\":" << ToJson(ats[p])
            << "}\n";
      }
    }
    out << ToJson(report) << "\n";
    return;
  }
  const bool yuan = flags.yuan;
  // One table; the `row` column tells store rows from the per-kind totals,
  // so that summing a column over row=store rows gives the totals.
  const char* unit = Unit(yuan);
  for (size_t p = 0; p < ats.size(); ++p) {
    out << AsOfText(ctx,
                    partitioned ? absl::StrCat("balances of partition ", p)
                                : std::string("balances"),
                    ats[p], flags.as_of, yuan);
  }
  out << absl::StrCat(
      "row,store_id,kind,status,upgraded_from,upgraded_to,"
      "pending",
      unit, ",available", unit, ",withdrawing", unit, ",paid_out", unit,
      ",deposit", unit, "\n");
  for (const v1::StoreBalances& store : report.stores()) {
    out << BalancesCsvRow(
        "store", store.store_id(), v1::StoreKind_Name(store.kind()),
        v1::StoreStatus_Name(store.status()), store.upgraded_from(),
        store.upgraded_to(), store.balances(), yuan);
  }
  for (const v1::KindTotals& totals : report.totals()) {
    out << BalancesCsvRow(totals.legacy() ? "total_legacy" : "total_new", "",
                          v1::StoreKind_Name(totals.kind()), "", "", "",
                          totals.balances(), yuan);
  }
}

int BalancesVerb(CliContext& ctx) {
  absl::StatusOr<BalancesFlags> flags = BalancesFlags::Parse(ctx);
  if (!flags.ok()) return ctx.Fail(flags.status());
  AsOf as_of;
  as_of.business_time = flags->as_of;
  absl::StatusOr<CliContext::LedgerRead> read = ctx.OpenLedgerForRead();
  if (!read.ok()) return ctx.Fail(read.status());
  as_of.position = read->position;
  ctx.EchoTime("as-of");
  const EventLog& log = read->ledger->log();
  absl::StatusOr<v1::BalancesReport> report =
      as_of.empty() ? BalancesFromProjections(log)
                    : BalancesFromPostings(log, as_of);
  if (!report.ok()) return ctx.Fail(report.status());
  absl::StatusOr<v1::PositionAt> at =
      ResolvePosition(log, std::nullopt, report->position(), "");
  if (!at.ok()) return ctx.Fail(at.status());
  PrintBalances(ctx, *flags, *std::move(report), {*at});
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

absl::StatusOr<StatementFlags> StatementFlags::Parse(const CliContext& ctx) {
  RETURN_IF_ERROR(ctx.CheckFlags());
  StatementFlags flags;
  flags.format = ctx.flags.GetOr("format", "csv");
  RETURN_IF_ERROR(CheckFormat(flags.format, {"csv", "json"}));
  flags.yuan = ctx.flags.Has("yuan");
  if (flags.yuan && flags.format != "csv") {
    return absl::InvalidArgumentError(
        "--yuan is for the CSV; JSON keeps fen (a machine format)");
  }
  flags.pair = ctx.flags.Has("pair");
  flags.proofs = ctx.flags.Has("proofs");
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return absl::InvalidArgumentError("--store is required");
  flags.store_id = *store;
  ASSIGN_OR_RETURN(std::optional<absl::Time> from, ctx.flags.GetTime("from"));
  ASSIGN_OR_RETURN(std::optional<absl::Time> to, ctx.flags.GetTime("to"));
  if (!from.has_value() || !to.has_value()) {
    return absl::InvalidArgumentError(
        "--from and --to are required (RFC 3339 or a date; the period is "
        "[from, to))");
  }
  flags.from = *from;
  flags.to = *to;
  return flags;
}

int PrintStatements(CliContext& ctx, const StatementFlags& flags,
                    const std::vector<v1::Statement>& statements,
                    const v1::PositionAt& head) {
  std::ostream& out = *ctx.out;
  const bool pair = flags.pair;
  const bool yuan = flags.yuan;
  // A store without an account by the period's end (it opened later, or
  // no money ever moved) has an empty statement: say so.
  for (const v1::Statement& statement : statements) {
    if (statement.opening_size() == 0 && statement.closing_size() == 0 &&
        statement.lines_size() == 0) {
      ctx.SayNothingMatched(absl::StrCat(
          "store ", statement.store_id(), " has no postings before ",
          ZoneTime(flags.to, ctx.zone), ", so its statement is empty"));
    }
  }
  if (flags.format == "json") {
    if (!pair) {
      out << ToJson(statements.front()) << "\n";
      return kExitOk;
    }
    v1::StatementPair both;
    *both.mutable_legacy() = statements[0];
    *both.mutable_wechat() = statements[1];
    out << ToJson(both) << "\n";
    return kExitOk;
  }
  const char* unit = Unit(yuan);
  out << AsOfText(ctx, pair ? "statement pair" : "statement", head,
                  std::nullopt, yuan)
      << "# period [" << ZoneTime(flags.from, ctx.zone) << ", "
      << ZoneTime(flags.to, ctx.zone) << ")"
      << (pair ? "; two stores, each its own rows: never sum them" : "") << "\n"
      << (pair ? "store_id,store_kind," : "")
      << absl::StrCat(
             "section,account,position,event_id,event_type,"
             "occurred_at,debit",
             unit, ",credit", unit, ",balance", unit,
             ",order_id,withdrawal_id\n");
  for (const v1::Statement& statement : statements) {
    WriteStatementCsv(ctx, statement, pair, yuan);
  }
  return kExitOk;
}

int StatementVerb(CliContext& ctx) {
  absl::StatusOr<StatementFlags> flags = StatementFlags::Parse(ctx);
  if (!flags.ok()) return ctx.Fail(flags.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  absl::StatusOr<std::vector<v1::Statement>> statements =
      StatementsOf(log, flags->store_id, flags->pair, flags->from, flags->to);
  if (!statements.ok()) return ctx.Fail(statements.status());
  if (flags->proofs) {
    for (const v1::Statement& statement : *statements) {
      absl::Status s = PrintStatementProofs(log, statement, *ctx.out);
      if (!s.ok()) return ctx.Fail(s);
    }
    return kExitOk;
  }
  absl::StatusOr<v1::PositionAt> head =
      ResolvePosition(log, std::nullopt, std::nullopt, "");
  if (!head.ok()) return ctx.Fail(head.status());
  return PrintStatements(ctx, *flags, *statements, *head);
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
    v->set_message(
        absl::StrCat("the log cannot be opened: ", ledger.status().message()));
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
    absl::StatusOr<v1::AuditReport> audited = Audit((*ledger)->log(), options);
    if (terminal && options.progress) err << "\r\033[K";
    if (!audited.ok()) return ctx.Fail(audited.status());
    report = *std::move(audited);
  }
  return PrintAuditReport(ctx, report, started);
}

int PrintAuditReport(CliContext& ctx, const v1::AuditReport& report,
                     absl::Time started, std::optional<uint32_t> partition) {
  const bool terminal = StderrIsTerminal(ctx);
  std::ostream& err = *ctx.err;
  const std::string of =
      partition.has_value() ? absl::StrCat("partition ", *partition, ": ") : "";
  *ctx.out << ToJson(report) << "\n";
  ctx.out->flush();
  // Tails a replica moved aside (docs/cluster.md "Diverged tail"): not part
  // of the log, kept for investigators.
  for (const v1::DivergedRecord& d : report.diverged()) {
    err << "audit: " << of << "diverged record " << d.record() << ": positions "
        << d.first_position() << ".." << d.last_position() << " ("
        << d.outcomes() << " command outcomes) moved aside: " << d.reason()
        << "\n";
  }

  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  if (report.ok()) {
    if (terminal) {
      err << absl::StrFormat(
          "audit: %sOK: %d events (head %d), %d postings, %d streams (%d "
          "stores, "
          "%d merchants), %d command outcomes, %d projection keys; %.2f s\n",
          of, report.events_checked(), report.head_position(),
          report.postings_checked(), report.streams_checked(),
          report.stores_checked(), report.merchants_checked(),
          report.commands_checked(), report.projection_keys_checked(), seconds);
    }
    return kExitOk;
  }
  err << "storeledger audit: " << of << "FAILED: " << report.violations_total()
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
