// An independent model of the rules, for tests/ledger_model_test.cc (against
// the real ledger) and fuzz/decide_sequence_fuzzer.cc (against core's Decide
// and Evolve): a deliberately simple in-memory reading of DESIGN.md §1 and
// §4, written apart from core/. It shares only the schema
// (storeledger/v1/ledger.pb.h) and the policy, which is data; it uses no
// Decide, Evolve, EffectiveStatus, PostingsFor, RequiredDepositFen or
// core/limits.h (its limits are its own constants, from the README), so a
// mistake in core/ is not repeated here.
//
// It answers the rule of a decision (accepted, or rejected by "R0".."R15"),
// not its message or events. Where core checks in an order DESIGN.md does
// not state (shape before state, the rule before an overflow check, business
// time last), the model checks in the same order, so that a command breaking
// two rules gets the same rule from both.
//
// No gtest and no RocksDB: it links into the fuzz targets. Not thread-safe.
#ifndef STORELEDGER_TESTS_SUPPORT_LEDGER_MODEL_H_
#define STORELEDGER_TESTS_SUPPORT_LEDGER_MODEL_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger::testing {

struct ModelVerdict {
  bool accepted = false;
  std::string rule;  // the rejecting rule, "" when accepted
};

struct ModelStore {
  v1::StoreKind kind = v1::STORE_KIND_UNSPECIFIED;
  std::string merchant;
  std::string upgraded_to;  // "" while not upgraded
  int64_t pending = 0, available = 0, withdrawing = 0, paid_out = 0,
          deposit = 0;
  std::map<std::string, int64_t> deposit_by_category;
  std::set<std::string> qualified;
  int64_t products = 0;
};
struct ModelProduct {
  v1::ProductKind kind = v1::PRODUCT_KIND_UNSPECIFIED;
  v1::ProductOrigin origin = v1::PRODUCT_ORIGIN_UNSPECIFIED;
  std::string category;
  int64_t price = 0;
  v1::ProductStatus status = v1::DRAFT;
};
struct ModelOrder {
  std::string store;
  v1::OrderStatus status = v1::PLACED;
  int64_t total = 0, paid = 0, refunded = 0;
};
struct ModelWithdrawal {
  std::string store;
  v1::WithdrawalStatus status = v1::WITHDRAWING;
  int64_t amount = 0;
};

// How often each rule let a command through and how often it refused one.
// A command that is accepted passed R0 and the rule of its verb (and R13 when
// it named an order or a withdrawal under a store); a rejected one counts for
// the rule that refused it.
struct RuleCount {
  int accepted = 0;
  int rejected = 0;
};

class LedgerModel {
 public:
  explicit LedgerModel(v1::Policy policy);

  // Judges `command` against the model's state and, when it is accepted,
  // applies it.
  ModelVerdict Apply(const v1::Command& command);

  const std::map<std::string, ModelStore>& stores() const { return stores_; }
  const std::map<std::string, ModelOrder>& orders() const { return orders_; }
  const std::map<std::string, ModelWithdrawal>& withdrawals() const {
    return withdrawals_;
  }
  const std::map<std::pair<std::string, std::string>, ModelProduct>& products()
      const {
    return products_;
  }
  const std::map<std::string, v1::Subject>& merchants() const {
    return merchants_;
  }
  // "R0".."R15" -> counts.
  const std::map<std::string, RuleCount>& rule_counts() const {
    return rule_counts_;
  }
  // R6 at work: products an accepted applyPolicy delisted, and orders
  // refused (R10) for a product still stored LISTED but past its cutoff.
  int policy_delistings() const { return policy_delistings_; }
  int orders_refused_by_cutoff() const { return orders_refused_by_cutoff_; }

 private:
  // The streams an accepted command appends to.
  using Streams = std::set<std::string>;
  ModelVerdict Judge(const v1::Command& c, Streams* streams);

  ModelVerdict OpenStore(const v1::OpenStore& c, Streams* streams);
  ModelVerdict Register(const v1::RegisterIndividualBusiness& c,
                        Streams* streams);
  ModelVerdict AddProduct(const v1::AddProduct& c, Streams* streams);
  ModelVerdict ListProduct(const v1::ListProduct& c, Streams* streams);
  ModelVerdict DelistProduct(const v1::DelistProduct& c, Streams* streams);
  ModelVerdict DeleteProduct(const v1::DeleteProduct& c, Streams* streams);
  ModelVerdict ApplyPolicy(Streams* streams);
  ModelVerdict Upgrade(const v1::UpgradeStore& c, Streams* streams);
  ModelVerdict Sync(const v1::SyncProducts& c, Streams* streams);
  ModelVerdict Grant(const v1::GrantCategoryQualification& c, Streams* streams);
  ModelVerdict PayDeposit(const v1::PayDeposit& c, Streams* streams);
  ModelVerdict PlaceOrder(const v1::PlaceOrder& c, Streams* streams);
  ModelVerdict Cancel(const v1::CancelOrder& c, Streams* streams);
  ModelVerdict Pay(const v1::PayOrder& c, Streams* streams);
  ModelVerdict Ship(const v1::ShipOrder& c, Streams* streams);
  ModelVerdict Settle(const v1::SettleOrder& c, Streams* streams);
  ModelVerdict Refund(const v1::RefundOrder& c, Streams* streams);
  ModelVerdict RequestWithdrawal(const v1::RequestWithdrawal& c,
                                 Streams* streams);
  ModelVerdict FinishWithdrawal(const std::string& store_id,
                                const std::string& id, bool complete,
                                Streams* streams);

  bool After(const google::protobuf::Timestamp& instant) const;
  v1::ProductStatus Effective(const ModelStore& store,
                              const ModelProduct& product) const;
  int64_t RequiredDeposit(const std::string& category) const;
  ModelStore* FindStore(const std::string& id);
  ModelProduct* FindProduct(const std::string& store, const std::string& id);
  // The order or withdrawal named under `store`: nullptr and `*refusal` set
  // when it is missing (`rule`) or belongs to another store (R13).
  ModelOrder* FindOrder(const std::string& rule, const std::string& store,
                        const std::string& id, ModelVerdict* refusal);

  const v1::Policy policy_;
  absl::Time at_;
  // The business time of each stream's latest event (R0: never backwards).
  // Streams are named "store/<id>" and "merchant/<id>".
  std::map<std::string, absl::Time> stream_last_;
  std::map<std::string, v1::Subject> merchants_;
  std::map<std::string, ModelStore> stores_;
  std::map<std::pair<std::string, std::string>, ModelProduct> products_;
  std::map<std::string, ModelOrder> orders_;
  std::map<std::string, ModelWithdrawal> withdrawals_;
  std::map<std::string, RuleCount> rule_counts_;
  int policy_delistings_ = 0;
  int orders_refused_by_cutoff_ = 0;
  // Business time is checked last, over the streams a decision appends to
  // (as core does), so Apply judges twice: a dry run (false) that names the
  // streams, then, if time allows, the run that changes the state (true).
  bool effects_ = false;
};

// One posting as DESIGN.md §4 states it: `account` is debited `debit_fen`
// and credited `credit_fen`; `store` is the store whose accounts it touches.
struct ModelPosting {
  std::string store;
  std::string account;
  int64_t debit_fen = 0;
  int64_t credit_fen = 0;
};
// The postings of `event`, read from DESIGN.md §4 (not from core/postings.h):
//   pay:      buyers -> S/pending
//   settle:   S/pending -> S/available (net) + platform/commission
//   refund:   S/pending or S/available -> buyers
//   withdraw: S/available -> S/withdrawing -> payouts/S (or back on failure)
//   deposit:  merchant_bank/S -> S/deposit/<category>
std::vector<ModelPosting> ModelPostings(const v1::Event& event);

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_LEDGER_MODEL_H_
