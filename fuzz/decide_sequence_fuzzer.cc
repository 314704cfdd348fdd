// Fuzz target: sequences of commands through Decide and Evolve (core/), the
// way the ledger runs them, on a StateOverlay over EmptyState(). The input
// bytes choose the commands: their kinds, ids from small alphabets (so that
// commands meet the same stores, products, orders and withdrawals), business
// times that mostly move forward across the policy calendar, and amounts
// that are often exactly right (an order's total, a store's balance) and
// sometimes extreme.
//
// Invariants checked after every command:
//  - Decide succeeds (a rule violation is a rejection, never an error), and
//    deciding twice gives the same decision;
//  - a rejection names its rule, code and reason and carries no events;
//  - an accepted command has at most kEventsPerCommandMax events, and
//    Evolve folds each of them in without error;
//  - every event's postings balance (debits = credits), are non-negative,
//    and all name one store, the one whose stream the event is in;
//  - no store balance is negative, and each equals the sum of the postings
//    of its account (pending, available, withdrawing, paid out, deposits).
//  - core agrees with an independent model of the rules
//    (tests/support/ledger_model.h, the one tests/ledger_model_test.cc runs
//    the ledger against): the same verdict (accepted, or rejected by the same
//    rule) for every command, and the same balances for every store.
// And at the end: folding the produced events again into fresh state gives
// exactly the same records (replay is deterministic).
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/limits.h"
#include "core/policy.h"
#include "core/postings.h"
#include "core/state.h"
#include "core/streams.h"
#include "fuzz/byte_reader.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/support/ledger_model.h"

namespace storeledger {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::storeledger::fuzz::ByteReader;

constexpr int kCommandsMax = 200;
const std::vector<std::string> kStores = {"s0", "s1", "s2", "s3"};
const std::vector<std::string> kMerchants = {"m0", "m1"};
const std::vector<std::string> kProducts = {"p0", "p1", "p2", "p3"};
const std::vector<std::string> kOrders = {"o0", "o1", "o2", "o3", "o4", "o5"};
const std::vector<std::string> kWithdrawals = {"w0", "w1", "w2", "w3"};
const std::vector<std::string> kCategories = {"c0", "c1"};

struct Applied {
  std::string stream_id;
  uint64_t version;
  absl::Time at;
  v1::Event event;
};

class Sequence {
 public:
  explicit Sequence(ByteReader* in) : in_(*in) {}

  void Run() {
    for (int i = 0; i < kCommandsMax && !in_.empty(); ++i) Step(i);
    CheckReplay();
  }

 private:
  int64_t Amount(int64_t right) {
    switch (in_.Int(0, 7)) {
      case 0:
      case 1:
      case 2:
        return right;
      case 3:
        return in_.Int(1, 100'000);
      case 4:
        return in_.Pick(
            std::vector<int64_t>{0, -1, 1, kAmountFenMax, kAmountFenMax + 1,
                                 std::numeric_limits<int64_t>::max(),
                                 std::numeric_limits<int64_t>::min()});
      default:
        return right + in_.Int(-2, 2);
    }
  }
  RecordRef<StoreRecord> StoreOf(const std::string& id) {
    absl::StatusOr<RecordRef<StoreRecord>> store = state_.Store(id);
    FUZZ_CHECK(store.ok(), store.status());
    return *store;
  }
  RecordRef<OrderRecord> OrderOf(const std::string& id) {
    absl::StatusOr<RecordRef<OrderRecord>> order = state_.Order(id);
    FUZZ_CHECK(order.ok(), order.status());
    return *order;
  }
  RecordRef<WithdrawalRecord> WithdrawalOf(const std::string& id) {
    absl::StatusOr<RecordRef<WithdrawalRecord>> w = state_.Withdrawal(id);
    FUZZ_CHECK(w.ok(), w.status());
    return *w;
  }

  v1::Command Next(int index) {
    // Business time: mostly forward across the article's calendar.
    static const std::vector<int64_t> kSteps = {0,     60,        3600,
                                                86400, 7 * 86400, 20 * 86400};
    if (in_.Int(0, 15) == 0) {
      at_ -= absl::Seconds(86400);
    } else {
      at_ += absl::Seconds(in_.Pick(kSteps));
    }
    v1::Command c;
    c.set_command_id(absl::StrCat("c", index));
    *c.mutable_occurred_at() = ToProto(at_);
    const std::string& store = in_.Pick(kStores);
    const std::string& product = in_.Pick(kProducts);
    const std::string& order = in_.Pick(kOrders);
    const std::string& withdrawal = in_.Pick(kWithdrawals);
    const std::string& category = in_.Pick(kCategories);
    const RecordRef<StoreRecord> record = StoreOf(store);
    const v1::Balances balances = record ? record->balances() : v1::Balances();
    const RecordRef<OrderRecord> order_record = OrderOf(order);
    const int64_t order_total = order_record ? order_record->total_fen() : 1000;
    switch (in_.Int(0, 19)) {
      case 0: {
        v1::OpenStore* b = c.mutable_open_store();
        b->set_store_id(store);
        b->set_merchant_id(in_.Pick(kMerchants));
        b->set_kind(static_cast<v1::StoreKind>(in_.Int(0, 4)));
        b->set_subject(static_cast<v1::Subject>(in_.Int(0, 3)));
        break;
      }
      case 1: {
        v1::RegisterIndividualBusiness* b =
            c.mutable_register_individual_business();
        b->set_merchant_id(in_.Pick(kMerchants));
        b->set_license_number(in_.Bool() ? "L-1" : "");
        break;
      }
      case 2: {
        v1::AddProduct* b = c.mutable_add_product();
        b->set_store_id(store);
        b->set_product_id(product);
        b->set_kind(static_cast<v1::ProductKind>(in_.Int(0, 2)));
        b->set_origin(static_cast<v1::ProductOrigin>(in_.Int(0, 2)));
        b->set_category_id(category);
        b->set_price_fen(Amount(in_.Int(1, 10'000)));
        break;
      }
      case 3: {
        v1::ListProduct* b = c.mutable_list_product();
        b->set_store_id(store);
        b->set_product_id(product);
        b->set_live_room(in_.Bool());
        break;
      }
      case 4:
        c.mutable_delist_product()->set_store_id(store);
        c.mutable_delist_product()->set_product_id(product);
        break;
      case 5:
        c.mutable_delete_product()->set_store_id(store);
        c.mutable_delete_product()->set_product_id(product);
        break;
      case 6:
        c.mutable_apply_policy();
        break;
      case 7:
        c.mutable_upgrade_store()->set_source_store_id(store);
        c.mutable_upgrade_store()->set_target_store_id(in_.Pick(kStores));
        break;
      case 8:
        c.mutable_sync_products()->set_source_store_id(store);
        c.mutable_sync_products()->set_target_store_id(in_.Pick(kStores));
        break;
      case 9:
        c.mutable_grant_category_qualification()->set_store_id(store);
        c.mutable_grant_category_qualification()->set_category_id(category);
        break;
      case 10: {
        v1::PayDeposit* b = c.mutable_pay_deposit();
        b->set_store_id(store);
        b->set_category_id(category);
        b->set_amount_fen(Amount(in_.Pick(std::vector<int64_t>{
            policy_.default_category_deposit_fen(), 1000})));
        break;
      }
      case 11: {
        v1::PlaceOrder* b = c.mutable_place_order();
        b->set_store_id(store);
        b->set_order_id(order);
        b->set_channel(static_cast<v1::Channel>(in_.Int(0, 3)));
        const int lines = static_cast<int>(in_.Int(0, 3));
        for (int l = 0; l < lines; ++l) {
          v1::OrderLine* line = b->add_lines();
          line->set_product_id(in_.Pick(kProducts));
          line->set_quantity(in_.Int(0, 3) == 0 ? Amount(1) : in_.Int(1, 5));
          absl::StatusOr<RecordRef<ProductRecord>> p =
              state_.Product(store, line->product_id());
          FUZZ_CHECK(p.ok(), p.status());
          line->set_unit_price_fen(Amount(*p ? (*p)->price_fen() : 100));
        }
        break;
      }
      case 12:
        c.mutable_cancel_order()->set_store_id(store);
        c.mutable_cancel_order()->set_order_id(order);
        break;
      case 13:
        c.mutable_pay_order()->set_store_id(store);
        c.mutable_pay_order()->set_order_id(order);
        c.mutable_pay_order()->set_amount_fen(Amount(order_total));
        break;
      case 14:
        c.mutable_ship_order()->set_store_id(store);
        c.mutable_ship_order()->set_order_id(order);
        break;
      case 15:
        c.mutable_settle_order()->set_store_id(store);
        c.mutable_settle_order()->set_order_id(order);
        c.mutable_settle_order()->set_commission_fen(Amount(order_total / 20));
        break;
      case 16:
        c.mutable_refund_order()->set_store_id(store);
        c.mutable_refund_order()->set_order_id(order);
        c.mutable_refund_order()->set_amount_fen(
            Amount(in_.Bool() ? order_total : order_total / 2));
        break;
      case 17:
        c.mutable_request_withdrawal()->set_store_id(store);
        c.mutable_request_withdrawal()->set_withdrawal_id(withdrawal);
        c.mutable_request_withdrawal()->set_amount_fen(
            Amount(balances.available_fen()));
        break;
      case 18:
        c.mutable_complete_withdrawal()->set_store_id(store);
        c.mutable_complete_withdrawal()->set_withdrawal_id(withdrawal);
        break;
      default:
        c.mutable_fail_withdrawal()->set_store_id(store);
        c.mutable_fail_withdrawal()->set_withdrawal_id(withdrawal);
        break;
    }
    return c;
  }

  void Step(int index) {
    const v1::Command command = Next(index);
    absl::StatusOr<Decision> decision = Decide(command, state_, policy_);
    FUZZ_CHECK(decision.ok(),
               decision.status() << " deciding " << command.ShortDebugString());
    const testing::ModelVerdict expected = model_.Apply(command);
    FUZZ_CHECK(decision->accepted == expected.accepted &&
                   decision->rule == expected.rule,
               "core and the model disagree on "
                   << command.ShortDebugString() << ": core "
                   << (decision->accepted ? "ACCEPTED" : decision->rule) << " ("
                   << decision->message << "), model "
                   << (expected.accepted ? "ACCEPTED" : expected.rule));
    absl::StatusOr<Decision> again = Decide(command, state_, policy_);
    FUZZ_CHECK(
        again.ok() && again->accepted == decision->accepted &&
            again->events.size() == decision->events.size() &&
            again->rule == decision->rule,
        "Decide is not deterministic for " << command.ShortDebugString());
    if (!decision->accepted) {
      FUZZ_CHECK(!decision->rule.empty() &&
                     decision->code != v1::REJECTION_CODE_UNSPECIFIED &&
                     !decision->message.empty() && decision->events.empty(),
                 "rejection without rule, code or reason: "
                     << command.ShortDebugString());
      return;
    }
    FUZZ_CHECK(decision->events.size() <= kEventsPerCommandMax,
               decision->events.size() << " events");
    const absl::Time at = ToTime(command.occurred_at());
    for (size_t i = 0; i < decision->events.size(); ++i) {
      const DecidedEvent& decided = decision->events[i];
      FUZZ_CHECK(
          MessageDifferencer::Equals(decided.event, again->events[i].event),
          "Decide is not deterministic");
      CheckPostings(decided);
      absl::StatusOr<RecordRef<StreamHead>> head =
          state_.Head(decided.stream_id);
      FUZZ_CHECK(head.ok(), head.status());
      const uint64_t version = *head ? (*head)->version() + 1 : 1;
      absl::Status evolved =
          Evolve(decided.stream_id, version, at, decided.event, &state_);
      FUZZ_CHECK(evolved.ok(), evolved << ": Decide accepted "
                                       << command.ShortDebugString()
                                       << " but its event "
                                       << decided.event.ShortDebugString()
                                       << " does not fold in");
      applied_.push_back({decided.stream_id, version, at, decided.event});
    }
    CheckBalances();
  }

  void CheckPostings(const DecidedEvent& decided) {
    const std::vector<Posting> postings = PostingsFor(decided.event);
    int64_t debits = 0, credits = 0;
    for (const Posting& p : postings) {
      FUZZ_CHECK(p.debit_fen >= 0 && p.credit_fen >= 0,
                 "negative posting in " << decided.event.ShortDebugString());
      FUZZ_CHECK(p.store_id == postings.front().store_id && !p.store_id.empty(),
                 "postings of one event name two stores: "
                     << decided.event.ShortDebugString());
      FUZZ_CHECK(StoreStream(p.store_id) == decided.stream_id,
                 "posting for store " << p.store_id << " in stream "
                                      << decided.stream_id);
      FUZZ_CHECK(!__builtin_add_overflow(debits, p.debit_fen, &debits) &&
                     !__builtin_add_overflow(credits, p.credit_fen, &credits),
                 "posting sums overflow");
      FUZZ_CHECK(!__builtin_add_overflow(accounts_[p.account], p.debit_fen,
                                         &accounts_[p.account]) &&
                     !__builtin_sub_overflow(accounts_[p.account], p.credit_fen,
                                             &accounts_[p.account]),
                 "account " << p.account << " overflows");
    }
    FUZZ_CHECK(debits == credits, "postings of "
                                      << decided.event.ShortDebugString()
                                      << " do not balance: " << debits
                                      << " debits, " << credits << " credits");
  }

  int64_t Account(const std::string& name) {
    auto it = accounts_.find(name);
    return it == accounts_.end() ? 0 : it->second;
  }

  void CheckBalances() {
    FUZZ_CHECK(model_.stores().size() == state_.stores().size(),
               state_.stores().size()
                   << " stores, the model has " << model_.stores().size());
    for (const auto& [id, store] : state_.stores()) {
      const v1::Balances& b = store->balances();
      FUZZ_CHECK(
          b.pending_fen() >= 0 && b.available_fen() >= 0 &&
              b.withdrawing_fen() >= 0 && b.paid_out_fen() >= 0 &&
              b.deposit_fen() >= 0,
          "negative balance in store " << id << ": " << b.ShortDebugString());
      FUZZ_CHECK(b.pending_fen() == Account(PendingAccount(id)) &&
                     b.available_fen() == Account(AvailableAccount(id)) &&
                     b.withdrawing_fen() == Account(WithdrawingAccount(id)) &&
                     b.paid_out_fen() == Account(PayoutsAccount(id)),
                 "store " << id << " balances " << b.ShortDebugString()
                          << " differ from its postings");
      int64_t deposits = 0;
      for (const auto& [category, fen] : store->deposit_fen_by_category()) {
        FUZZ_CHECK(fen == Account(DepositAccount(id, category)),
                   "deposit " << id << "/" << category);
        deposits += fen;
      }
      FUZZ_CHECK(deposits == b.deposit_fen(), "deposit total of " << id);
      auto modelled = model_.stores().find(id);
      FUZZ_CHECK(modelled != model_.stores().end() &&
                     modelled->second.pending == b.pending_fen() &&
                     modelled->second.available == b.available_fen() &&
                     modelled->second.withdrawing == b.withdrawing_fen() &&
                     modelled->second.paid_out == b.paid_out_fen() &&
                     modelled->second.deposit == b.deposit_fen(),
                 "store " << id << " balances " << b.ShortDebugString()
                          << " differ from the model's");
    }
  }

  template <typename Map>
  static void SameRecords(const Map& a, const Map& b, const char* what) {
    FUZZ_CHECK(a.size() == b.size(), "replay gives another number of " << what);
    for (auto i = a.begin(), j = b.begin(); i != a.end(); ++i, ++j) {
      FUZZ_CHECK(i->first == j->first &&
                     MessageDifferencer::Equals(*i->second, *j->second),
                 "replay differs in " << what);
    }
  }

  void CheckReplay() {
    StateOverlay replayed(&EmptyState());
    for (const Applied& a : applied_) {
      absl::Status s = Evolve(a.stream_id, a.version, a.at, a.event, &replayed);
      FUZZ_CHECK(s.ok(), s << " replaying " << a.event.ShortDebugString());
    }
    SameRecords(state_.stores(), replayed.stores(), "stores");
    SameRecords(state_.products(), replayed.products(), "products");
    SameRecords(state_.orders(), replayed.orders(), "orders");
    SameRecords(state_.withdrawals(), replayed.withdrawals(), "withdrawals");
    SameRecords(state_.merchants(), replayed.merchants(), "merchants");
    SameRecords(state_.heads(), replayed.heads(), "stream heads");
  }

  ByteReader& in_;
  Policy policy_ = DefaultPolicy();
  StateOverlay state_{&EmptyState()};
  testing::LedgerModel model_{policy_};
  absl::Time at_ = absl::FromCivil(absl::CivilSecond(2024, 8, 1, 9, 0, 0),
                                   absl::FixedTimeZone(8 * 3600));
  std::vector<Applied> applied_;
  std::map<std::string, int64_t> accounts_;
};

}  // namespace
}  // namespace storeledger

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  storeledger::fuzz::ByteReader in(data, size);
  storeledger::Sequence(&in).Run();
  return 0;
}
