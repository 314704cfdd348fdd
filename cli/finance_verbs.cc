// The finance verbs (DESIGN.md §5, issue 3): postings, balances, statement,
// audit. The figures come from replay/finance.h and replay/audit.h; this file
// only parses flags and formats.
#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/cli.h"
#include "core/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "ledger/json.h"
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

// RFC 3339 in UTC ("2024-10-22T02:00:00Z"), as the JSON mapping prints it.
std::string TimeText(const google::protobuf::Timestamp& ts) {
  return google::protobuf::util::TimeUtil::ToString(ts);
}

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

std::string BalancesCsvRow(absl::string_view row, absl::string_view store_id,
                           absl::string_view kind, absl::string_view status,
                           absl::string_view upgraded_from,
                           absl::string_view upgraded_to,
                           const v1::Balances& b) {
  return absl::StrCat(row, ",", CsvField(store_id), ",", kind, ",", status, ",",
                      CsvField(upgraded_from), ",", CsvField(upgraded_to), ",",
                      b.pending_fen(), ",", b.available_fen(), ",",
                      b.withdrawing_fen(), ",", b.paid_out_fen(), ",",
                      b.deposit_fen(), "\n");
}

}  // namespace

int PostingsVerb(CliContext& ctx) {
  if (absl::Status s =
          ctx.flags.CheckKnown({"store", "from", "to", "position", "format"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  const std::string format = ctx.flags.GetOr("format", "csv");
  if (absl::Status s = CheckFormat(format, {"csv", "jsonl"}); !s.ok()) {
    return ctx.Fail(s);
  }
  PostingFilter filter;
  filter.store_id = ctx.flags.Get("store");
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.flags.GetUint("position");
  if (!position.ok()) return ctx.Fail(position.status());
  filter.from = *from;
  filter.to = *to;
  filter.max_position = *position;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());

  std::ostream& out = *ctx.out;
  const bool csv = format == "csv";
  if (csv) {
    out << "position,event_id,occurred_at,store_id,account,debit_fen,"
           "credit_fen,order_id,withdrawal_id\n";
  }
  absl::Status status = ForEachPosting(
      (*ledger)->log(), filter, [&](const v1::PostingLine& line) {
        if (csv) {
          out << line.position() << ',' << CsvField(line.event_id()) << ','
              << TimeText(line.occurred_at()) << ',' << CsvField(line.store_id())
              << ',' << CsvField(line.account()) << ',' << line.debit_fen() << ','
              << line.credit_fen() << ',' << CsvField(line.order_id()) << ','
              << CsvField(line.withdrawal_id()) << '\n';
        } else {
          out << ToJson(line) << '\n';
        }
        return true;
      });
  out.flush();
  if (!status.ok()) return ctx.Fail(status);
  return kExitOk;
}

int BalancesVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"as-of", "position", "format"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  const std::string format = ctx.flags.GetOr("format", "json");
  if (absl::Status s = CheckFormat(format, {"json", "csv"}); !s.ok()) {
    return ctx.Fail(s);
  }
  AsOf as_of;
  absl::StatusOr<std::optional<absl::Time>> t = ctx.flags.GetTime("as-of");
  if (!t.ok()) return ctx.Fail(t.status());
  absl::StatusOr<std::optional<uint64_t>> position =
      ctx.flags.GetUint("position");
  if (!position.ok()) return ctx.Fail(position.status());
  as_of.business_time = *t;
  as_of.position = *position;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const EventLog& log = (*ledger)->log();
  absl::StatusOr<v1::BalancesReport> report =
      as_of.empty() ? BalancesFromProjections(log)
                    : BalancesFromPostings(log, as_of);
  if (!report.ok()) return ctx.Fail(report.status());

  std::ostream& out = *ctx.out;
  if (format == "json") {
    out << ToJson(*report) << "\n";
    return kExitOk;
  }
  // One table; the `row` column tells store rows from the per-kind totals,
  // so that summing a column over row=store rows gives the totals.
  out << "row,store_id,kind,status,upgraded_from,upgraded_to,pending_fen,"
         "available_fen,withdrawing_fen,paid_out_fen,deposit_fen\n";
  for (const v1::StoreBalances& store : report->stores()) {
    out << BalancesCsvRow("store", store.store_id(),
                          v1::StoreKind_Name(store.kind()),
                          v1::StoreStatus_Name(store.status()),
                          store.upgraded_from(), store.upgraded_to(),
                          store.balances());
  }
  for (const v1::KindTotals& totals : report->totals()) {
    out << BalancesCsvRow(totals.legacy() ? "total_legacy" : "total_new", "",
                          v1::StoreKind_Name(totals.kind()), "", "", "",
                          totals.balances());
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
  if (absl::Status s =
          ctx.flags.CheckKnown({"store", "from", "to", "format", "proofs"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  const std::string format = ctx.flags.GetOr("format", "csv");
  if (absl::Status s = CheckFormat(format, {"csv", "json"}); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  if (!from->has_value() || !to->has_value()) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--from and --to are required (RFC 3339; the period is [from, to))"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::Statement> statement =
      BuildStatement((*ledger)->log(), *store, **from, **to);
  if (!statement.ok()) return ctx.Fail(statement.status());

  std::ostream& out = *ctx.out;
  if (ctx.flags.Has("proofs")) {
    absl::Status s = PrintStatementProofs((*ledger)->log(), *statement, out);
    return s.ok() ? kExitOk : ctx.Fail(s);
  }
  if (format == "json") {
    out << ToJson(*statement) << "\n";
    return kExitOk;
  }
  out << StatementCsv(*statement);
  return kExitOk;
}

int AuditVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"no-progress"}); !s.ok()) {
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
