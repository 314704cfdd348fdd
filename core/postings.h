// The one place an event becomes double-entry postings (DESIGN.md §4).
//
// A movement of X fen from account A to account B is two postings: credit X
// on A, debit X on B. An account's balance is debits - credits, so the store
// accounts (pending, available, withdrawing, deposit/<category>) are never
// negative and the outside accounts (buyers, merchant_bank/S) go negative as
// money leaves them. Every event's postings sum to zero and name one store.
#ifndef STORELEDGER_CORE_POSTINGS_H_
#define STORELEDGER_CORE_POSTINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

struct Posting {
  std::string store_id;  // the one store this posting belongs to (R13)
  std::string account;   // "s1/pending", "buyers", "payouts/s1", ...
  int64_t debit_fen = 0;
  int64_t credit_fen = 0;
  std::string order_id;
  std::string withdrawal_id;
};

// Postings of one event, in a fixed order; empty for events that move no money.
std::vector<Posting> PostingsFor(const v1::Event& event);

// Account names.
std::string PendingAccount(absl::string_view store_id);
std::string AvailableAccount(absl::string_view store_id);
std::string WithdrawingAccount(absl::string_view store_id);
std::string DepositAccount(absl::string_view store_id,
                           absl::string_view category_id);
std::string PayoutsAccount(absl::string_view store_id);
std::string MerchantBankAccount(absl::string_view store_id);
inline constexpr absl::string_view kBuyersAccount = "buyers";
inline constexpr absl::string_view kCommissionAccount = "platform/commission";

}  // namespace storeledger

#endif  // STORELEDGER_CORE_POSTINGS_H_
