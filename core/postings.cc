// Events to double-entry postings (DESIGN.md §4). A movement of X from A to B
// is a credit of X on A followed by a debit of X on B; zero amounts are
// skipped so that every posting moves money.
#include "core/postings.h"

#include "absl/strings/str_cat.h"

namespace storeledger {
namespace {

class PostingsBuilder {
 public:
  PostingsBuilder(std::string store_id, std::string order_id,
                  std::string withdrawal_id)
      : store_id_(std::move(store_id)),
        order_id_(std::move(order_id)),
        withdrawal_id_(std::move(withdrawal_id)) {}

  void Credit(std::string account, int64_t amount_fen) {
    Add(std::move(account), 0, amount_fen);
  }
  void Debit(std::string account, int64_t amount_fen) {
    Add(std::move(account), amount_fen, 0);
  }
  void Move(std::string from, std::string to, int64_t amount_fen) {
    Credit(std::move(from), amount_fen);
    Debit(std::move(to), amount_fen);
  }
  std::vector<Posting> Take() { return std::move(postings_); }

 private:
  void Add(std::string account, int64_t debit_fen, int64_t credit_fen) {
    if (debit_fen == 0 && credit_fen == 0) return;
    Posting posting;
    posting.store_id = store_id_;
    posting.account = std::move(account);
    posting.debit_fen = debit_fen;
    posting.credit_fen = credit_fen;
    posting.order_id = order_id_;
    posting.withdrawal_id = withdrawal_id_;
    postings_.push_back(std::move(posting));
  }

  std::string store_id_;
  std::string order_id_;
  std::string withdrawal_id_;
  std::vector<Posting> postings_;
};

}  // namespace

std::string PendingAccount(absl::string_view store_id) {
  return absl::StrCat(store_id, "/pending");
}
std::string AvailableAccount(absl::string_view store_id) {
  return absl::StrCat(store_id, "/available");
}
std::string WithdrawingAccount(absl::string_view store_id) {
  return absl::StrCat(store_id, "/withdrawing");
}
std::string DepositAccount(absl::string_view store_id,
                           absl::string_view category_id) {
  return absl::StrCat(store_id, "/deposit/", category_id);
}
std::string PayoutsAccount(absl::string_view store_id) {
  return absl::StrCat("payouts/", store_id);
}
std::string MerchantBankAccount(absl::string_view store_id) {
  return absl::StrCat("merchant_bank/", store_id);
}

std::vector<Posting> PostingsFor(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kOrderPaid: {
      const v1::OrderPaid& e = event.order_paid();
      PostingsBuilder b(e.store_id(), e.order_id(), "");
      b.Move(std::string(kBuyersAccount), PendingAccount(e.store_id()),
             e.amount_fen());
      return b.Take();
    }
    case v1::Event::kOrderSettled: {
      const v1::OrderSettled& e = event.order_settled();
      PostingsBuilder b(e.store_id(), e.order_id(), "");
      b.Credit(PendingAccount(e.store_id()), e.gross_fen());
      b.Debit(AvailableAccount(e.store_id()), e.net_fen());
      b.Debit(std::string(kCommissionAccount), e.commission_fen());
      return b.Take();
    }
    case v1::Event::kOrderRefunded: {
      const v1::OrderRefunded& e = event.order_refunded();
      PostingsBuilder b(e.store_id(), e.order_id(), "");
      b.Move(e.source() == v1::FROM_AVAILABLE ? AvailableAccount(e.store_id())
                                              : PendingAccount(e.store_id()),
             std::string(kBuyersAccount), e.amount_fen());
      return b.Take();
    }
    case v1::Event::kWithdrawalRequested: {
      const v1::WithdrawalRequested& e = event.withdrawal_requested();
      PostingsBuilder b(e.store_id(), "", e.withdrawal_id());
      b.Move(AvailableAccount(e.store_id()), WithdrawingAccount(e.store_id()),
             e.amount_fen());
      return b.Take();
    }
    case v1::Event::kWithdrawalCompleted: {
      const v1::WithdrawalCompleted& e = event.withdrawal_completed();
      PostingsBuilder b(e.store_id(), "", e.withdrawal_id());
      b.Move(WithdrawingAccount(e.store_id()), PayoutsAccount(e.store_id()),
             e.amount_fen());
      return b.Take();
    }
    case v1::Event::kWithdrawalFailed: {
      const v1::WithdrawalFailed& e = event.withdrawal_failed();
      PostingsBuilder b(e.store_id(), "", e.withdrawal_id());
      b.Move(WithdrawingAccount(e.store_id()), AvailableAccount(e.store_id()),
             e.amount_fen());
      return b.Take();
    }
    case v1::Event::kDepositPaid: {
      const v1::DepositPaid& e = event.deposit_paid();
      PostingsBuilder b(e.store_id(), "", "");
      b.Move(MerchantBankAccount(e.store_id()),
             DepositAccount(e.store_id(), e.category_id()), e.amount_fen());
      return b.Take();
    }
    default:
      return {};
  }
}

}  // namespace storeledger
