#include "replay/finance.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/money.h"
#include "core/policy.h"
#include "core/streams.h"
#include "replay/projection_keys.h"
#include "replay/projection_store.h"
#include "replay/read_views.h"

namespace storeledger {
namespace {

bool Admits(const PostingFilter& filter, absl::Time occurred_at) {
  if (filter.from.has_value() && occurred_at < *filter.from) return false;
  if (filter.to.has_value() && occurred_at >= *filter.to) return false;
  return true;
}

absl::Status Overflow(absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat(what, " overflows int64 fen: the log is damaged"));
}

// debit - credit, checked.
absl::StatusOr<int64_t> NetOf(int64_t debit_fen, int64_t credit_fen,
                              absl::string_view account) {
  std::optional<int64_t> net = CheckedSub(debit_fen, credit_fen);
  if (!net.has_value()) return Overflow(absl::StrCat("posting to ", account));
  return *net;
}

v1::StoreBalances& StoreEntry(std::map<std::string, v1::StoreBalances>& stores,
                              absl::string_view store_id) {
  auto [it, inserted] = stores.try_emplace(std::string(store_id));
  if (inserted) {
    it->second.set_store_id(std::string(store_id));
    it->second.mutable_balances();
  }
  return it->second;
}

// Totals per kind of `stores`, in kTotalsKinds order; every kind gets a row,
// so a reader never mistakes a missing row for "no such money".
absl::Status FillTotals(v1::BalancesReport* report) {
  for (v1::StoreKind kind : kTotalsKinds) {
    v1::KindTotals* totals = report->add_totals();
    totals->set_kind(kind);
    totals->set_legacy(kind != v1::WECHAT_STORE);
    totals->mutable_balances();
    for (const v1::StoreBalances& store : report->stores()) {
      if (store.kind() != kind) continue;
      totals->set_stores(totals->stores() + 1);
      RETURN_IF_ERROR(
          AddBalances(store.balances(), totals->mutable_balances()));
    }
  }
  return absl::OkStatus();
}

std::vector<v1::AccountBalance> Rows(const std::set<std::string>& accounts,
                                     const AccountBalances& balances) {
  std::vector<v1::AccountBalance> rows;
  for (const std::string& account : accounts) {
    v1::AccountBalance& row = rows.emplace_back();
    row.set_account(account);
    row.set_balance_fen(balances.Get(account));
  }
  return rows;
}

}  // namespace

v1::PostingLine ToPostingLine(const v1::Envelope& envelope,
                              const Posting& posting) {
  v1::PostingLine line;
  line.set_position(envelope.position());
  line.set_event_id(envelope.event_id());
  *line.mutable_occurred_at() = envelope.occurred_at();
  line.set_store_id(posting.store_id);
  line.set_account(posting.account);
  line.set_debit_fen(posting.debit_fen);
  line.set_credit_fen(posting.credit_fen);
  line.set_order_id(posting.order_id);
  line.set_withdrawal_id(posting.withdrawal_id);
  line.set_event_type(envelope.event_type());
  return line;
}

absl::Status ForEachPosting(
    const EventLog& log, const PostingFilter& filter,
    const std::function<bool(const v1::PostingLine&)>& fn) {
  // A store opens before anything of it can post money, so its kind is
  // known by the time its first posting goes by.
  std::map<std::string, v1::StoreKind, std::less<>> kinds;
  // The head as of the call, or max_position if lower.
  uint64_t last = log.head().position;
  if (filter.max_position.has_value()) {
    last = std::min(last, *filter.max_position);
  }
  // A batch at a time (kReadBatchEvents events, or kReadBatchBytes of
  // lines), the scan let go before `fn` runs: `fn` (a client's write, say)
  // never waits with an iterator open, which would pin the memtables that
  // writers wait for.
  uint64_t after = 0;
  std::vector<v1::PostingLine> lines;
  while (after < last) {
    lines.clear();
    size_t events = 0;
    size_t bytes = 0;
    RETURN_IF_ERROR(
        log.Scan(after, [&](const v1::Envelope& envelope, absl::string_view) {
          if (envelope.position() > last) return false;
          after = envelope.position();
          ++events;
          if (envelope.payload().has_store_opened()) {
            const v1::StoreOpened& opened = envelope.payload().store_opened();
            kinds[opened.store_id()] = opened.kind();
          }
          if (Admits(filter, ToTime(envelope.occurred_at()))) {
            for (const Posting& posting : PostingsFor(envelope.payload())) {
              if (filter.store_id.has_value() &&
                  posting.store_id != *filter.store_id) {
                continue;
              }
              v1::PostingLine& line =
                  lines.emplace_back(ToPostingLine(envelope, posting));
              auto kind = kinds.find(posting.store_id);
              if (kind != kinds.end()) line.set_store_kind(kind->second);
              bytes += line.ByteSizeLong();
            }
          }
          return events < kReadBatchEvents && bytes < kReadBatchBytes;
        }));
    if (events == 0) break;
    for (const v1::PostingLine& line : lines) {
      if (!fn(line)) return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status AccountBalances::Apply(absl::string_view account,
                                    int64_t debit_fen, int64_t credit_fen) {
  ASSIGN_OR_RETURN(int64_t net, NetOf(debit_fen, credit_fen, account));
  auto it = balances_.find(account);
  if (it == balances_.end()) {
    it = balances_.emplace(std::string(account), 0).first;
  }
  std::optional<int64_t> sum = CheckedAdd(it->second, net);
  if (!sum.has_value()) {
    return Overflow(absl::StrCat("balance of ", account));
  }
  it->second = *sum;
  return absl::OkStatus();
}

int64_t AccountBalances::Get(absl::string_view account) const {
  auto it = balances_.find(account);
  return it == balances_.end() ? 0 : it->second;
}

BalanceField BalanceFieldOf(absl::string_view store_id,
                            absl::string_view account) {
  // Store accounts are "<store>/<name>"; store ids may themselves hold a
  // '/', so match the whole name rather than split on the first '/'.
  if (absl::StartsWith(account, store_id) && account.size() > store_id.size() &&
      account[store_id.size()] == '/') {
    const absl::string_view rest = account.substr(store_id.size() + 1);
    if (rest == "pending") return BalanceField::kPending;
    if (rest == "available") return BalanceField::kAvailable;
    if (rest == "withdrawing") return BalanceField::kWithdrawing;
    if (absl::StartsWith(rest, "deposit/")) return BalanceField::kDeposit;
  }
  if (account == PayoutsAccount(store_id)) return BalanceField::kPaidOut;
  return BalanceField::kNone;
}

absl::Status AddToBalance(BalanceField field, int64_t delta_fen,
                          v1::Balances* balances) {
  int64_t current = 0;
  switch (field) {
    case BalanceField::kNone:
      return absl::OkStatus();
    case BalanceField::kPending:
      current = balances->pending_fen();
      break;
    case BalanceField::kAvailable:
      current = balances->available_fen();
      break;
    case BalanceField::kWithdrawing:
      current = balances->withdrawing_fen();
      break;
    case BalanceField::kPaidOut:
      current = balances->paid_out_fen();
      break;
    case BalanceField::kDeposit:
      current = balances->deposit_fen();
      break;
  }
  std::optional<int64_t> sum = CheckedAdd(current, delta_fen);
  if (!sum.has_value()) return Overflow("a store balance");
  switch (field) {
    case BalanceField::kNone:
      break;
    case BalanceField::kPending:
      balances->set_pending_fen(*sum);
      break;
    case BalanceField::kAvailable:
      balances->set_available_fen(*sum);
      break;
    case BalanceField::kWithdrawing:
      balances->set_withdrawing_fen(*sum);
      break;
    case BalanceField::kPaidOut:
      balances->set_paid_out_fen(*sum);
      break;
    case BalanceField::kDeposit:
      balances->set_deposit_fen(*sum);
      break;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Balances> StoreBalancesFromAccounts(
    absl::string_view store_id, const AccountBalances& accounts) {
  v1::Balances balances;
  for (const auto& [account, balance_fen] : accounts.accounts()) {
    RETURN_IF_ERROR(AddToBalance(BalanceFieldOf(store_id, account), balance_fen,
                                 &balances));
  }
  return balances;
}

absl::StatusOr<v1::BalancesReport> MergePartitionBalances(
    const std::vector<v1::BalancesReport>& reports) {
  v1::BalancesReport merged;
  if (reports.empty()) return merged;
  merged.set_source(reports.front().source());
  if (reports.front().has_as_of()) {
    *merged.mutable_as_of() = reports.front().as_of();
  }
  std::map<std::string, const v1::StoreBalances*> stores;
  for (const v1::BalancesReport& report : reports) {
    if (report.source() != merged.source()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "balances of one cluster from two sources: ", merged.source(),
          " and ", report.source()));
    }
    for (const v1::StoreBalances& store : report.stores()) {
      if (!stores.emplace(store.store_id(), &store).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            "store ", store.store_id(), " is in two partitions' balances"));
      }
    }
  }
  for (const auto& [id, store] : stores) *merged.add_stores() = *store;
  RETURN_IF_ERROR(FillTotals(&merged));
  return merged;
}

absl::Status AddBalances(const v1::Balances& add, v1::Balances* total) {
  const std::pair<int64_t, int64_t> fields[] = {
      {total->pending_fen(), add.pending_fen()},
      {total->available_fen(), add.available_fen()},
      {total->withdrawing_fen(), add.withdrawing_fen()},
      {total->paid_out_fen(), add.paid_out_fen()},
      {total->deposit_fen(), add.deposit_fen()},
  };
  int64_t sums[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < 5; ++i) {
    std::optional<int64_t> s = CheckedAdd(fields[i].first, fields[i].second);
    if (!s.has_value()) return Overflow("a total of store balances");
    sums[i] = *s;
  }
  total->set_pending_fen(sums[0]);
  total->set_available_fen(sums[1]);
  total->set_withdrawing_fen(sums[2]);
  total->set_paid_out_fen(sums[3]);
  total->set_deposit_fen(sums[4]);
  return absl::OkStatus();
}

absl::StatusOr<v1::BalancesReport> BalancesFromProjections(
    const EventLog& log) {
  v1::BalancesReport report;
  report.set_source("projections");
  report.set_position(log.head().position);
  absl::Status parse_status;
  RETURN_IF_ERROR(log.ScanProjections(
      kStorePrefix, [&](absl::string_view key, absl::string_view value) {
        StoreRecord record;
        if (!record.ParseFromArray(value.data(),
                                   static_cast<int>(value.size()))) {
          parse_status = absl::DataLossError(absl::StrCat(
              "projection record ", absl::CEscape(key), " is corrupt"));
          return false;
        }
        v1::StoreBalances* store = report.add_stores();
        store->set_store_id(record.store_id());
        store->set_kind(record.kind());
        store->set_status(record.status());
        store->set_upgraded_from(record.upgraded_from());
        store->set_upgraded_to(record.upgraded_to());
        *store->mutable_balances() = record.balances();
        return true;
      }));
  RETURN_IF_ERROR(parse_status);
  RETURN_IF_ERROR(FillTotals(&report));
  return report;
}

absl::Status FoldStoreBalances(const v1::Envelope& envelope,
                               const StoreBalancesLookup& lookup) {
  const v1::Event& event = envelope.payload();
  if (event.has_store_opened()) {
    ASSIGN_OR_RETURN(v1::StoreBalances * store,
                     lookup(event.store_opened().store_id(), true));
    store->set_kind(event.store_opened().kind());
    store->set_status(v1::OPEN);
    store->set_upgraded_from(event.store_opened().upgraded_from());
  } else if (event.has_store_upgraded()) {
    ASSIGN_OR_RETURN(v1::StoreBalances * store,
                     lookup(event.store_upgraded().store_id(), true));
    store->set_status(v1::UPGRADED);
    store->set_upgraded_to(event.store_upgraded().target_store_id());
  }
  for (const Posting& posting : PostingsFor(event)) {
    ASSIGN_OR_RETURN(v1::StoreBalances * store,
                     lookup(posting.store_id, false));
    if (store == nullptr) {
      return absl::DataLossError(absl::StrCat(
          "event at position ", envelope.position(), " moves money of ",
          "store ", posting.store_id, ", which was not opened before"));
    }
    ASSIGN_OR_RETURN(
        const int64_t net,
        NetOf(posting.debit_fen, posting.credit_fen, posting.account));
    RETURN_IF_ERROR(
        AddToBalance(BalanceFieldOf(posting.store_id, posting.account), net,
                     store->mutable_balances()));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::BalancesReport> BalancesFromPostings(const EventLog& log,
                                                        const AsOf& as_of) {
  const uint64_t head_position = log.head().position;
  std::map<std::string, v1::StoreBalances> stores;
  const StoreBalancesLookup lookup =
      [&](absl::string_view store_id,
          bool create) -> absl::StatusOr<v1::StoreBalances*> {
    if (create) return &StoreEntry(stores, store_id);
    auto it = stores.find(std::string(store_id));
    return it == stores.end() ? nullptr : &it->second;
  };
  absl::Status fold_status;
  RETURN_IF_ERROR(log.Scan(0, [&](const v1::Envelope& envelope,
                                  absl::string_view) {
    if (as_of.position.has_value() && envelope.position() > *as_of.position) {
      return false;
    }
    if (as_of.business_time.has_value() &&
        ToTime(envelope.occurred_at()) > *as_of.business_time) {
      return true;  // other streams' later events may still be earlier
    }
    fold_status = FoldStoreBalances(envelope, lookup);
    return fold_status.ok();
  }));
  RETURN_IF_ERROR(fold_status);

  v1::BalancesReport report;
  report.set_source("postings");
  report.set_position(as_of.position.has_value()
                          ? std::min(*as_of.position, head_position)
                          : head_position);
  if (as_of.business_time.has_value()) {
    *report.mutable_as_of() = ToProto(*as_of.business_time);
  }
  for (auto& [id, store] : stores) *report.add_stores() = std::move(store);
  RETURN_IF_ERROR(FillTotals(&report));
  return report;
}

absl::StatusOr<v1::Statement> BuildStatement(const EventLog& log,
                                             absl::string_view store_id,
                                             absl::Time from, absl::Time to) {
  if (!(from < to)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--from (", absl::FormatTime(from),
                     ") must be before --to (", absl::FormatTime(to), ")"));
  }
  const std::string stream = StoreStream(store_id);
  ASSIGN_OR_RETURN(std::optional<StreamHead> head, log.GetStreamHead(stream));
  if (!head.has_value()) {
    return absl::NotFoundError(absl::StrCat("store ", store_id, " not found"));
  }
  v1::Statement statement;
  statement.set_store_id(std::string(store_id));
  *statement.mutable_from() = ToProto(from);
  *statement.mutable_to() = ToProto(to);

  // Three sums kept apart so that the identity below checks something:
  // opening (< from), movements ([from, to)) and closing (< to).
  AccountBalances opening, movements, closing, running;
  std::set<std::string> accounts;
  absl::Status fold_status;
  RETURN_IF_ERROR(log.ScanStream(stream, 0, [&](const v1::Envelope& envelope) {
    const v1::Event& event = envelope.payload();
    if (event.has_store_opened() &&
        event.store_opened().store_id() == store_id) {
      statement.set_kind(event.store_opened().kind());
    }
    const absl::Time occurred_at = ToTime(envelope.occurred_at());
    if (occurred_at >= to) return true;
    for (const Posting& posting : PostingsFor(event)) {
      if (posting.store_id != store_id) continue;
      accounts.insert(posting.account);
      auto apply = [&](AccountBalances& sums) {
        if (fold_status.ok()) {
          fold_status = sums.Apply(posting.account, posting.debit_fen,
                                   posting.credit_fen);
        }
      };
      apply(closing);
      apply(running);
      if (occurred_at < from) {
        apply(opening);
      } else {
        apply(movements);
        v1::StatementLine* line = statement.add_lines();
        *line->mutable_posting() = ToPostingLine(envelope, posting);
        line->mutable_posting()->set_store_kind(statement.kind());
        line->set_balance_after_fen(running.Get(posting.account));
      }
      if (!fold_status.ok()) return false;
    }
    return true;
  }));
  RETURN_IF_ERROR(fold_status);

  for (const std::string& account : accounts) {
    std::optional<int64_t> sum =
        CheckedAdd(opening.Get(account), movements.Get(account));
    if (!sum.has_value() || *sum != closing.Get(account)) {
      return absl::InternalError(absl::StrCat(
          "statement of store ", store_id, ": account ", account, " opens at ",
          opening.Get(account), " and moves ", movements.Get(account),
          " but closes at ", closing.Get(account)));
    }
  }
  for (v1::AccountBalance& row : Rows(accounts, opening)) {
    *statement.add_opening() = std::move(row);
  }
  for (v1::AccountBalance& row : Rows(accounts, movements)) {
    *statement.add_movements() = std::move(row);
  }
  for (v1::AccountBalance& row : Rows(accounts, closing)) {
    *statement.add_closing() = std::move(row);
  }
  return statement;
}

}  // namespace storeledger
