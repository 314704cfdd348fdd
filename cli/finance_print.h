// The flags and the printing of the finance verbs `postings`, `balances`
// and `statement` (cli/finance_verbs.cc), shared by the embedded verbs and
// --server mode (cli/client.cc), so that both take the same flags, fail the
// same way and print the same bytes from the same figures.
#ifndef STORELEDGER_CLI_FINANCE_PRINT_H_
#define STORELEDGER_CLI_FINANCE_PRINT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "replay/finance.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// The flags of `postings`, checked.
struct PostingsFlags {
  PostingFilter filter;  // --store, --from, --to (max_position: the caller)
  bool csv = true;       // else jsonl
  bool yuan = false;
  static absl::StatusOr<PostingsFlags> Parse(const CliContext& ctx);
};
// The CSV's as-of line and header (nothing for jsonl); `at`: the position
// the postings are as of, with its recorded_at.
void PrintPostingsHeader(CliContext& ctx, const PostingsFlags& flags,
                         const v1::PositionAt& at);
void PrintPosting(CliContext& ctx, const PostingsFlags& flags,
                  const v1::PostingLine& line);

// The flags of `balances`, checked.
struct BalancesFlags {
  std::optional<absl::Time> as_of;  // business time
  bool csv = false;                 // else json
  bool yuan = false;
  static absl::StatusOr<BalancesFlags> Parse(const CliContext& ctx);
};
// `ats`: the report's position, with its recorded_at; for a partitioned
// cluster's report (MergePartitionBalances) one per partition, in partition
// order, printed first (JSON: a {"partition":p,"positionAt":...} line each;
// CSV: a # line each).
void PrintBalances(CliContext& ctx, const BalancesFlags& flags,
                   v1::BalancesReport report,
                   const std::vector<v1::PositionAt>& ats);

// The flags of `statement`, checked (the embedded verb and --server mode).
struct StatementFlags {
  std::string store_id;
  absl::Time from, to;  // the period [from, to)
  bool pair = false;
  bool yuan = false;
  bool proofs = false;
  std::string format;  // csv or json
  static absl::StatusOr<StatementFlags> Parse(const CliContext& ctx);
};
// Prints the statements (one, or a pair: legacy first) as `statement` does;
// `head` is the position they were built at, with its recorded_at.
int PrintStatements(CliContext& ctx, const StatementFlags& flags,
                    const std::vector<v1::Statement>& statements,
                    const v1::PositionAt& head);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_FINANCE_PRINT_H_
