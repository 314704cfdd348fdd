// Finance views over the log (DESIGN.md §4): every double-entry posting with
// the event it came from, store balances (from the live projections, or
// recomputed by folding postings as of a business time and/or a position),
// and per-store statements.
//
// Every figure here is either read from the projections or a sum of
// PostingsFor(event) over the log; `audit` (replay/audit.h) proves the two
// agree. Postings come from Scan / ScanStream, which verify the hash chain:
// a damaged log is kDataLoss, never a silently wrong figure.
#ifndef STORELEDGER_REPLAY_FINANCE_H_
#define STORELEDGER_REPLAY_FINANCE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/postings.h"
#include "replay/store_view.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Which postings to visit. Unset fields do not filter.
struct PostingFilter {
  std::optional<std::string> store_id;
  // Business time, half-open: from <= occurred_at < to.
  std::optional<absl::Time> from;
  std::optional<absl::Time> to;
  // Only events with position <= max_position.
  std::optional<uint64_t> max_position;
};

// Calls `fn` for every posting of every event, in log position order (and,
// within an event, in PostingsFor order), that `filter` admits, up to the
// head as of the call, until `fn` returns false. Rejections have no
// postings. The log is read a batch at a time (kReadBatchEvents): `fn` runs
// with no iterator open.
absl::Status ForEachPosting(
    const EventLog& log, const PostingFilter& filter,
    const std::function<bool(const v1::PostingLine&)>& fn);

// The PostingLine of one posting of `envelope`.
v1::PostingLine ToPostingLine(const v1::Envelope& envelope,
                              const Posting& posting);

// Balances per account (debits - credits), with checked arithmetic.
class AccountBalances {
 public:
  // kDataLoss when a balance would overflow int64: no ledger within the
  // limits of core/limits.h gets there, so only damage can.
  absl::Status Apply(absl::string_view account, int64_t debit_fen,
                     int64_t credit_fen);
  int64_t Get(absl::string_view account) const;
  const std::map<std::string, int64_t, std::less<>>& accounts() const {
    return balances_;
  }

 private:
  std::map<std::string, int64_t, std::less<>> balances_;
};

// The Balances of DESIGN.md §5 that postings with store_id `store_id` leave:
// pending = S/pending, available = S/available, withdrawing = S/withdrawing,
// paid_out = payouts/S, deposit = the sum of S/deposit/*. Accounts outside
// the store (buyers, platform/commission, merchant_bank/S) do not count.
// kDataLoss on overflow.
absl::StatusOr<v1::Balances> StoreBalancesFromAccounts(
    absl::string_view store_id, const AccountBalances& accounts);

// Which Balances field a posting to `account` of store `store_id` moves.
enum class BalanceField {
  kNone,  // an account outside the store: buyers, platform/commission, ...
  kPending,
  kAvailable,
  kWithdrawing,
  kPaidOut,
  kDeposit,
};
BalanceField BalanceFieldOf(absl::string_view store_id,
                            absl::string_view account);

// The field of `balances` that `field` names += delta_fen (nothing for
// kNone); kDataLoss on overflow.
absl::Status AddToBalance(BalanceField field, int64_t delta_fen,
                          v1::Balances* balances);

// Every store's balances and the totals per kind, from the projections at
// the head.
absl::StatusOr<v1::BalancesReport> BalancesFromProjections(const EventLog& log);

// The same, recomputed by folding the postings of the events `as_of` admits
// (occurred_at <= business_time, position <= position); stores opened later
// are absent. Kind and status come from StoreOpened / StoreUpgraded events.
absl::StatusOr<v1::BalancesReport> BalancesFromPostings(const EventLog& log,
                                                        const AsOf& as_of);

// Where FoldStoreBalances finds a store's running figures: the entry of
// `store_id` (store_id set), made empty if missing when `create` (the event
// opens or upgrades it); without `create`, nullptr when there is none.
using StoreBalancesLookup = std::function<absl::StatusOr<v1::StoreBalances*>(
    absl::string_view store_id, bool create)>;

// Folds one event into the balances of the stores it touches, as
// BalancesFromPostings does (and downstream projections do, e.g. the
// exactly-once consumer, replication/balances_feed.h): StoreOpened and
// StoreUpgraded set kind, status and links; each posting of PostingsFor
// moves its store's field. kDataLoss when a posting names a store never
// opened, or a balance would overflow; a lookup's error as it is.
absl::Status FoldStoreBalances(const v1::Envelope& envelope,
                               const StoreBalancesLookup& lookup);

// A partitioned cluster's balances (docs/cluster.md "Partitions"): the
// stores of every partition's report, sorted by store id, and the totals
// per kind recomputed over them as one ledger's (legacy and WeChat Store
// never summed). position is 0: each report's own names its partition's.
// kInvalidArgument when a store id is in two reports (store ids are unique
// in a cluster) or the reports' sources differ; kDataLoss on overflow.
absl::StatusOr<v1::BalancesReport> MergePartitionBalances(
    const std::vector<v1::BalancesReport>& reports);

// Adds `add` to `total`, field by field; kDataLoss on overflow.
absl::Status AddBalances(const v1::Balances& add, v1::Balances* total);

// The statement of `store_id` for business time [from, to): opening balance
// of every account the store's postings touch (occurred_at < from), each
// posting in the period with the account's balance after it, the net
// movement per account and the closing balances (occurred_at < to), computed
// separately and checked: opening + movements = closing, or kInternal.
// kInvalidArgument unless from < to; kNotFound for an unknown store.
absl::StatusOr<v1::Statement> BuildStatement(const EventLog& log,
                                             absl::string_view store_id,
                                             absl::Time from, absl::Time to);

// The totals row order: the legacy kinds, then WECHAT_STORE.
inline constexpr v1::StoreKind kTotalsKinds[] = {
    v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE};

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_FINANCE_H_
