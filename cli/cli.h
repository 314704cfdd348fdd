// storeledger, the command-line tool (DESIGN.md §5). RunCli is the whole
// program minus main(), so tests drive it in-process with string streams.
//
// Exit statuses: 0 success; 1 a check failed (verify, audit, rebuild
// --shadow) or an I/O / data error; 2 bad usage or an INVALID input line.
#ifndef STORELEDGER_CLI_CLI_H_
#define STORELEDGER_CLI_CLI_H_

#include <functional>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/flags.h"
#include "cli/terms.h"
#include "ledger/ledger.h"

namespace storeledger {

struct CliContext {
  std::string verb;
  Flags flags;
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
  // Set by tests to fix recorded_at; otherwise the system clock.
  const Clock* clock = nullptr;
  // Human outputs print times here: --tz, else the policy's time_zone.
  LedgerZone zone;

  // Opens the ledger at --db (default ./storeledger-data) with --policy.
  absl::StatusOr<std::unique_ptr<Ledger>> OpenLedger(bool read_only) const;
  // Prints "storeledger <verb>: <status>" to err and returns the exit status
  // that fits the status (2 for kInvalidArgument, 1 otherwise).
  int Fail(const absl::Status& status) const;
  // kInvalidArgument naming a flag the verb's help does not document
  // (cli/verb_help.cc is the one list of each verb's flags; with --server,
  // also --server, --token, --tls-ca and DocumentedServerFlags).
  absl::Status CheckFlags() const;

  // --position N or --known-at T (the last position recorded at or before
  // T), at most one of them; nullopt when neither is given (everything).
  absl::StatusOr<std::optional<uint64_t>> KnowledgePosition(
      const Ledger& ledger) const;
  // The ledger at --db opened read-only, and KnowledgePosition in it: what
  // a read verb answers from.
  struct LedgerRead {
    std::unique_ptr<Ledger> ledger;
    std::optional<uint64_t> position;  // nullopt: everything
  };
  absl::StatusOr<LedgerRead> OpenLedgerForRead() const;
  // The same with another way to find the position recorded by a time
  // (--server mode asks the server).
  absl::StatusOr<std::optional<uint64_t>> KnowledgePosition(
      const std::function<absl::StatusOr<uint64_t>(absl::Time)>& recorded_by)
      const;
  // Says on stderr what a time flag meant, as written beside its UTC form:
  // "storeledger state: --as-of 2024-11-04 = 2024-11-03T16:00:00Z".
  void EchoTime(absl::string_view flag) const;
  // Says on stderr that a filter matched nothing, so that an empty answer
  // is never silent; `what` names what was looked for.
  void SayNothingMatched(absl::string_view what) const;
};

int RunCli(const std::vector<std::string>& args, std::istream& in,
           std::ostream& out, std::ostream& err, const Clock* clock = nullptr);

// The verbs, each in its own file under cli/.
int ApplyVerb(CliContext& ctx);
int StateVerb(CliContext& ctx);
int HistoryVerb(CliContext& ctx);
int DigestVerb(CliContext& ctx);
int VerifyVerb(CliContext& ctx);
int ExportVerb(CliContext& ctx);
int TailVerb(CliContext& ctx);
// What `tail` says when --from-position is past the head (a consumer
// restored from the wrong backup); nullopt when it is not.
std::optional<std::string> TailPastHead(uint64_t from, uint64_t head);
int SimulateVerb(CliContext& ctx);
// Finance (cli/finance_verbs.cc; cli/finance_print.h shares their flags and
// printing with --server mode).
int PostingsVerb(CliContext& ctx);
int BalancesVerb(CliContext& ctx);
int StatementVerb(CliContext& ctx);
int AuditVerb(CliContext& ctx);
// The report on stdout (JSON), the diverged records and any violations on
// stderr; kExitOk when it passed, kExitCheckFailed otherwise. Also for
// `audit --server` (cli/client.cc), which names the `partition` of a
// partitioned cluster's report in the stderr lines.
int PrintAuditReport(CliContext& ctx, const v1::AuditReport& report,
                     absl::Time started,
                     std::optional<uint32_t> partition = std::nullopt);
// Investigations (cli/investigate_verbs.cc).
int RebuildVerb(CliContext& ctx);
int ExplainVerb(CliContext& ctx);
int DiffVerb(CliContext& ctx);
// Proofs (cli/proof_verbs.cc).
int KeygenVerb(CliContext& ctx);
int CheckpointVerb(CliContext& ctx);
int ProveVerb(CliContext& ctx);
int VerifyProofVerb(CliContext& ctx);
// The cluster's tools (cli/cluster_verbs.cc).
int ConsumeVerb(CliContext& ctx);
int PublishVerb(CliContext& ctx);
int BackupVerb(CliContext& ctx);
// Lookups (cli/find_verbs.cc).
int FindVerb(CliContext& ctx);
int PositionAtVerb(CliContext& ctx);

// Per-verb help (cli/verb_help.cc): prints `storeledger VERB --help`;
// false for an unknown verb.
bool PrintVerbHelp(absl::string_view verb, std::ostream& out);
// The flags a verb's help documents, for tests that hold help and parsing
// to each other.
std::vector<std::string> DocumentedFlags(absl::string_view verb);
// The flags a verb's help documents for --server mode only (--at-least,
// --partition), which CheckFlags accepts with --server.
std::vector<std::string> DocumentedServerFlags(absl::string_view verb);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_CLI_H_
