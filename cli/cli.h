// storeledger, the command-line tool (DESIGN.md §5). RunCli is the whole
// program minus main(), so tests drive it in-process with string streams.
//
// Exit statuses: 0 success; 1 a check failed (verify, audit, rebuild
// --shadow) or an I/O / data error; 2 bad usage or an INVALID input line.
#ifndef STORELEDGER_CLI_CLI_H_
#define STORELEDGER_CLI_CLI_H_

#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ledger/ledger.h"

namespace storeledger {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitUsage = 2;

// Parsed command line: the verb, its flags (--name value or --name=value;
// boolean flags take no value) and positional arguments.
class Flags {
 public:
  // `boolean` names the flags that take no value.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::vector<std::string>& boolean);
  bool Has(absl::string_view name) const;
  std::optional<std::string> Get(absl::string_view name) const;
  std::string GetOr(absl::string_view name, absl::string_view fallback) const;
  absl::StatusOr<std::optional<uint64_t>> GetUint(absl::string_view name) const;
  absl::StatusOr<std::optional<absl::Time>> GetTime(absl::string_view name) const;
  // kInvalidArgument naming any flag not in `known`.
  absl::Status CheckKnown(const std::vector<std::string>& known) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> positional_;
};

struct CliContext {
  std::string verb;
  Flags flags;
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
  // Set by tests to fix recorded_at; otherwise the system clock.
  const Clock* clock = nullptr;

  // Opens the ledger at --db (default ./storeledger-data) with --policy.
  absl::StatusOr<std::unique_ptr<Ledger>> OpenLedger(bool read_only) const;
  // Prints "storeledger <verb>: <status>" to err and returns the exit status
  // that fits the status (2 for kInvalidArgument, 1 otherwise).
  int Fail(const absl::Status& status) const;
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
int SimulateVerb(CliContext& ctx);
// Finance (cli/finance_verbs.cc).
int PostingsVerb(CliContext& ctx);
int BalancesVerb(CliContext& ctx);
int StatementVerb(CliContext& ctx);
int AuditVerb(CliContext& ctx);
// Investigations (cli/investigate_verbs.cc).
int RebuildVerb(CliContext& ctx);
int ExplainVerb(CliContext& ctx);
int DiffVerb(CliContext& ctx);
// Proofs (cli/proof_verbs.cc, issue 19).
int KeygenVerb(CliContext& ctx);
int CheckpointVerb(CliContext& ctx);
int ProveVerb(CliContext& ctx);
int VerifyProofVerb(CliContext& ctx);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_CLI_H_
