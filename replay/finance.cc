#include "replay/finance.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/money.h"
#include "core/policy.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

// Projection keys of store records (replay/projection_store.h).
constexpr absl::string_view kStoreKeyPrefix = "s/";

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
      RETURN_IF_ERROR(AddBalances(store.balances(), totals->mutable_balances()));
    }
  }
  return absl::OkStatus();
}

std::vector<v1::AccountBalance> Rows(
    const std::set<std::string>& accounts, const AccountBalances& balances) {
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
  return line;
}

absl::Status ForEachPosting(
    const EventLog& log, const PostingFilter& filter,
    const std::function<bool(const v1::PostingLine&)>& fn) {
  return log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
    if (filter.max_position.has_value() &&
        envelope.position() > *filter.max_position) {
      return false;
    }
    if (!Admits(filter, ToTime(envelope.occurred_at()))) return true;
    for (const Posting& posting : PostingsFor(envelope.payload())) {
      if (filter.store_id.has_value() && posting.store_id != *filter.store_id) {
        continue;
      }
      if (!fn(ToPostingLine(envelope, posting))) return false;
    }
    return true;
  });
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

int64_t* BalanceField(absl::string_view store_id, absl::string_view account,
                      v1::Balances* balances) {
  if (account == PendingAccount(store_id)) {
    return balances->mutable_pending_fen_ptr();
  }
  return nullptr;
}

absl::Status AddBalances(const v1::Balances& add, v1::Balances* total) {
  auto add_field = [](int64_t a, int64_t b, absl::string_view name,
                      int64_t* out) -> absl::Status {
    std::optional<int64_t> sum = CheckedAdd(a, b);
    if (!sum.has_value()) return Overflow(absl::StrCat("total ", name));
    *out = *sum;
    return absl::OkStatus();
  };
  int64_t v;
  RETURN_IF_ERROR(add_field(total->pending_fen(), add.pending_fen(),
                            "pending_fen", &v));
  total->set_pending_fen(v);
  RETURN_IF_ERROR(add_field(total->available_fen(), add.available_fen(),
                            "available_fen", &v));
  total->set_available_fen(v);
  RETURN_IF_ERROR(add_field(total->withdrawing_fen(), add.withdrawing_fen(),
                            "withdrawing_fen", &v));
  total->set_withdrawing_fen(v);
  RETURN_IF_ERROR(add_field(total->paid_out_fen(), add.paid_out_fen(),
                            "paid_out_fen", &v));
  total->set_paid_out_fen(v);
  RETURN_IF_ERROR(add_field(total->deposit_fen(), add.deposit_fen(),
                            "deposit_fen", &v));
  total->set_deposit_fen(v);
  return absl::OkStatus();
}

}  // namespace storeledger
