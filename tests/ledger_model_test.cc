// The ledger against a model: thousands of random commands, valid and not,
// go through Ledger::Execute on a real RocksDB and through a deliberately
// simple in-memory model of the rules written from DESIGN.md. They must agree
// on every outcome (status and rule) and on every balance, and no posting may
// touch two stores.
//
// Seeded: the seed is printed; re-run with STORELEDGER_SEED=<seed>.
// STORELEDGER_MODEL_COMMANDS sets the number of commands (default 4000).
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/policy.h"
#include "core/postings.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// ------------------------------------------------------------------ model

struct ModelStore {
  v1::StoreKind kind;
  std::string merchant;
  bool upgraded = false;
  std::string upgraded_to;
  int64_t pending = 0, available = 0, withdrawing = 0, paid_out = 0,
          deposit = 0;
  std::map<std::string, int64_t> deposit_by_category;
  std::set<std::string> qualified;
};
struct ModelProduct {
  v1::ProductKind kind;
  v1::ProductOrigin origin;
  std::string category;
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

// What the model expects: accepted, or rejected by `rule`.
struct Expect {
  bool accepted;
  std::string rule;
};
Expect Accept() { return {true, ""}; }
Expect Reject(const std::string& rule) { return {false, rule}; }

class Model {
 public:
  explicit Model(const Policy& policy) : policy_(policy) {}

  Expect Apply(const v1::Command& c) {
    at_ = ToTime(c.occurred_at());
    switch (c.body_case()) {
      case v1::Command::kOpenStore: return OpenStore(c.open_store());
      case v1::Command::kRegisterIndividualBusiness:
        return Register(c.register_individual_business());
      case v1::Command::kAddProduct: return AddProduct(c.add_product());
      case v1::Command::kListProduct: return ListProduct(c.list_product());
      case v1::Command::kDelistProduct: return DelistProduct(c.delist_product());
      case v1::Command::kApplyPolicy: return ApplyPolicy();
      case v1::Command::kUpgradeStore: return Upgrade(c.upgrade_store());
      case v1::Command::kSyncProducts: return Sync(c.sync_products());
      case v1::Command::kGrantCategoryQualification:
        return Grant(c.grant_category_qualification());
      case v1::Command::kPayDeposit: return PayDeposit(c.pay_deposit());
      case v1::Command::kPlaceOrder: return PlaceOrder(c.place_order());
      case v1::Command::kCancelOrder: return Cancel(c.cancel_order());
      case v1::Command::kPayOrder: return Pay(c.pay_order());
      case v1::Command::kShipOrder: return Ship(c.ship_order());
      case v1::Command::kSettleOrder: return Settle(c.settle_order());
      case v1::Command::kRefundOrder: return Refund(c.refund_order());
      case v1::Command::kRequestWithdrawal:
        return RequestWithdrawal(c.request_withdrawal());
      case v1::Command::kCompleteWithdrawal:
        return FinishWithdrawal(c.complete_withdrawal().store_id(),
                                c.complete_withdrawal().withdrawal_id(), true);
      case v1::Command::kFailWithdrawal:
        return FinishWithdrawal(c.fail_withdrawal().store_id(),
                                c.fail_withdrawal().withdrawal_id(), false);
      default:
        ADD_FAILURE() << "the model does not know " << c.DebugString();
        return Reject("?");
    }
  }

  const std::map<std::string, ModelStore>& stores() const { return stores_; }
  const std::map<std::string, ModelOrder>& orders() const { return orders_; }
  const std::map<std::string, ModelWithdrawal>& withdrawals() const {
    return withdrawals_;
  }

 private:
  bool After(const google::protobuf::Timestamp& instant) const {
    return at_ >= ToTime(instant);
  }
  // R6 as DESIGN.md says it.
  v1::ProductStatus Effective(const ModelStore& store,
                              const ModelProduct& product) const {
    if (store.kind == v1::MINI_STORE &&
        (product.status == v1::DRAFT || product.status == v1::LISTED)) {
      if (product.kind == v1::E_VOUCHER && After(policy_.mini_evoucher_cutoff()))
        return v1::DELISTED;
      if (After(policy_.mini_physical_cutoff())) return v1::DELISTED;
    }
    return product.status;
  }
  ModelStore* FindStore(const std::string& id) {
    auto it = stores_.find(id);
    return it == stores_.end() ? nullptr : &it->second;
  }
  ModelProduct* FindProduct(const std::string& store, const std::string& id) {
    auto it = products_.find({store, id});
    return it == products_.end() ? nullptr : &it->second;
  }

  Expect OpenStore(const v1::OpenStore& c) {
    if (c.store_id().empty()) return Reject("R0");
    if (FindStore(c.store_id())) return Reject("R1");
    if (c.kind() == v1::WECHAT_STORE) {
      if (!After(policy_.wechat_store_launch())) return Reject("R1");
      if (c.subject() == v1::PERSONAL) return Reject("R1");
    }
    auto merchant = merchants_.find(c.merchant_id());
    if (merchant != merchants_.end() && merchant->second != c.subject()) {
      return Reject("R1");
    }
    merchants_[c.merchant_id()] = c.subject();
    ModelStore opened;
    opened.kind = c.kind();
    opened.merchant = c.merchant_id();
    stores_[c.store_id()] = opened;
    return Accept();
  }
  Expect Register(const v1::RegisterIndividualBusiness& c) {
    auto merchant = merchants_.find(c.merchant_id());
    if (merchant == merchants_.end()) return Reject("R7");
    if (merchant->second != v1::PERSONAL) return Reject("R7");
    merchant->second = v1::INDIVIDUAL_BUSINESS;
    return Accept();
  }
  Expect AddProduct(const v1::AddProduct& c) {
    if (c.price_fen() <= 0) return Reject("R0");
    ModelStore* store = FindStore(c.store_id());
    if (!store || store->upgraded) return Reject("R2");
    if (store->kind == v1::MINI_STORE && After(policy_.mini_evoucher_cutoff()))
      return Reject("R2");
    if (store->kind == v1::CHANNELS_STORE &&
        After(policy_.channels_no_new_products()))
      return Reject("R2");
    if (FindProduct(c.store_id(), c.product_id())) return Reject("R2");
    products_[{c.store_id(), c.product_id()}] =
        ModelProduct{c.kind(), c.origin(), c.category_id()};
    return Accept();
  }
  Expect ListProduct(const v1::ListProduct& c) {
    ModelStore* store = FindStore(c.store_id());
    ModelProduct* product = FindProduct(c.store_id(), c.product_id());
    if (!store || !product || store->upgraded) return Reject("R3");
    if (product->status != v1::DRAFT && product->status != v1::DELISTED)
      return Reject("R3");
    if (store->kind == v1::MINI_STORE) {
      if (product->kind == v1::E_VOUCHER && After(policy_.mini_evoucher_cutoff()))
        return Reject("R3");
      if (After(policy_.mini_physical_cutoff())) return Reject("R3");
    }
    if (store->kind == v1::CHANNELS_STORE && c.live_room() &&
        After(policy_.channels_live_room_closed()))
      return Reject("R3");
    if (store->kind == v1::WECHAT_STORE) {
      if (!store->qualified.count(product->category)) return Reject("R3");
      if (store->deposit_by_category[product->category] <
          RequiredDepositFen(policy_, product->category))
        return Reject("R3");
    }
    product->status = v1::LISTED;
    return Accept();
  }
  Expect DelistProduct(const v1::DelistProduct& c) {
    ModelProduct* product = FindProduct(c.store_id(), c.product_id());
    if (!FindStore(c.store_id()) || !product || product->status != v1::LISTED)
      return Reject("R4");
    product->status = v1::DELISTED;
    return Accept();
  }
  Expect ApplyPolicy() {
    for (auto& [key, product] : products_) {
      const ModelStore& store = stores_.at(key.first);
      if (store.kind != v1::MINI_STORE || product.status != v1::LISTED) continue;
      if (Effective(store, product) == v1::DELISTED) {
        product.status = v1::DELISTED;
      }
    }
    return Accept();
  }
  Expect Upgrade(const v1::UpgradeStore& c) {
    ModelStore* source = FindStore(c.source_store_id());
    if (!source || source->upgraded) return Reject("R8");
    if (source->kind == v1::WECHAT_STORE) return Reject("R8");
    if (source->kind == v1::MINI_STORE && !After(policy_.mini_upgrade_open()))
      return Reject("R8");
    if (merchants_.at(source->merchant) == v1::PERSONAL) return Reject("R8");
    if (FindStore(c.target_store_id())) return Reject("R8");
    source->upgraded = true;
    source->upgraded_to = c.target_store_id();
    ModelStore target;
    target.kind = v1::WECHAT_STORE;
    target.merchant = source->merchant;
    stores_[c.target_store_id()] = target;
    return Accept();
  }
  Expect Sync(const v1::SyncProducts& c) {
    ModelStore* source = FindStore(c.source_store_id());
    ModelStore* target = FindStore(c.target_store_id());
    if (!source || !target || source->upgraded_to != c.target_store_id())
      return Reject("R9");
    std::vector<std::pair<std::string, ModelProduct>> copies;
    for (const auto& [key, product] : products_) {
      if (key.first != c.source_store_id()) continue;
      if (product.origin != v1::OWN) continue;
      const v1::ProductStatus effective = Effective(*source, product);
      if (effective != v1::DRAFT && effective != v1::LISTED) continue;
      if (FindProduct(c.target_store_id(), key.second)) continue;
      ModelProduct copy = product;
      copy.status = v1::DRAFT;
      copies.emplace_back(key.second, copy);
    }
    for (auto& [id, copy] : copies) products_[{c.target_store_id(), id}] = copy;
    return Accept();
  }
  Expect Grant(const v1::GrantCategoryQualification& c) {
    ModelStore* store = FindStore(c.store_id());
    if (!store || store->kind != v1::WECHAT_STORE) return Reject("R15");
    if (!store->qualified.insert(c.category_id()).second) return Reject("R15");
    return Accept();
  }
  Expect PayDeposit(const v1::PayDeposit& c) {
    if (c.amount_fen() <= 0) return Reject("R0");
    ModelStore* store = FindStore(c.store_id());
    if (!store || store->kind != v1::WECHAT_STORE) return Reject("R15");
    store->deposit_by_category[c.category_id()] += c.amount_fen();
    store->deposit += c.amount_fen();
    return Accept();
  }
  Expect PlaceOrder(const v1::PlaceOrder& c) {
    const v1::OrderLine& line = c.lines(0);
    if (line.quantity() < 1 || line.unit_price_fen() <= 0) return Reject("R0");
    ModelStore* store = FindStore(c.store_id());
    if (!store || orders_.count(c.order_id())) return Reject("R10");
    if (c.channel() == v1::LIVE_ROOM && store->kind == v1::CHANNELS_STORE &&
        After(policy_.channels_live_room_closed()))
      return Reject("R10");
    if (c.channel() == v1::OFFICIAL_ACCOUNT &&
        (store->kind != v1::WECHAT_STORE ||
         !After(policy_.official_account_sales())))
      return Reject("R10");
    ModelProduct* product = FindProduct(c.store_id(), line.product_id());
    if (!product || Effective(*store, *product) != v1::LISTED)
      return Reject("R10");
    orders_[c.order_id()] =
        ModelOrder{c.store_id(), v1::PLACED, line.quantity() * line.unit_price_fen()};
    return Accept();
  }
  // The order named under `store` by a command of `rule`, or the rejection.
  std::optional<Expect> FindOrder(const std::string& rule,
                                  const std::string& store,
                                  const std::string& id, ModelOrder** out) {
    auto it = orders_.find(id);
    if (it == orders_.end()) return Reject(rule);
    if (it->second.store != store) return Reject("R13");
    *out = &it->second;
    return std::nullopt;
  }
  Expect Cancel(const v1::CancelOrder& c) {
    ModelOrder* order;
    if (auto e = FindOrder("R11", c.store_id(), c.order_id(), &order)) return *e;
    if (order->status != v1::PLACED) return Reject("R11");
    order->status = v1::CANCELLED;
    return Accept();
  }
  Expect Pay(const v1::PayOrder& c) {
    if (c.amount_fen() <= 0) return Reject("R0");
    ModelOrder* order;
    if (auto e = FindOrder("R11", c.store_id(), c.order_id(), &order)) return *e;
    if (order->status != v1::PLACED || c.amount_fen() != order->total)
      return Reject("R11");
    order->status = v1::PAID;
    order->paid = c.amount_fen();
    stores_.at(order->store).pending += c.amount_fen();
    return Accept();
  }
  Expect Ship(const v1::ShipOrder& c) {
    ModelOrder* order;
    if (auto e = FindOrder("R12", c.store_id(), c.order_id(), &order)) return *e;
    if (order->status != v1::PAID) return Reject("R12");
    order->status = v1::SHIPPED;
    return Accept();
  }
  Expect Settle(const v1::SettleOrder& c) {
    if (c.commission_fen() < 0) return Reject("R0");
    ModelOrder* order;
    if (auto e = FindOrder("R12", c.store_id(), c.order_id(), &order)) return *e;
    const int64_t gross = order->paid - order->refunded;
    if (order->status != v1::SHIPPED || c.commission_fen() > gross)
      return Reject("R12");
    order->status = v1::SETTLED;
    ModelStore& store = stores_.at(order->store);
    store.pending -= gross;
    store.available += gross - c.commission_fen();
    return Accept();
  }
  Expect Refund(const v1::RefundOrder& c) {
    if (c.amount_fen() <= 0) return Reject("R0");
    ModelOrder* order;
    if (auto e = FindOrder("R12", c.store_id(), c.order_id(), &order)) return *e;
    if (order->status != v1::PAID && order->status != v1::SHIPPED &&
        order->status != v1::SETTLED)
      return Reject("R12");
    if (c.amount_fen() > order->paid - order->refunded) return Reject("R12");
    ModelStore& store = stores_.at(order->store);
    if (order->status == v1::SETTLED) {
      if (store.available < c.amount_fen()) return Reject("R12");
      store.available -= c.amount_fen();
    } else {
      store.pending -= c.amount_fen();
    }
    order->refunded += c.amount_fen();
    if (order->refunded == order->paid) order->status = v1::REFUNDED;
    return Accept();
  }
  Expect RequestWithdrawal(const v1::RequestWithdrawal& c) {
    if (c.amount_fen() <= 0) return Reject("R0");
    ModelStore* store = FindStore(c.store_id());
    if (!store || withdrawals_.count(c.withdrawal_id())) return Reject("R14");
    if (c.amount_fen() > store->available) return Reject("R14");
    store->available -= c.amount_fen();
    store->withdrawing += c.amount_fen();
    withdrawals_[c.withdrawal_id()] =
        ModelWithdrawal{c.store_id(), v1::WITHDRAWING, c.amount_fen()};
    return Accept();
  }
  Expect FinishWithdrawal(const std::string& store_id, const std::string& id,
                          bool complete) {
    auto it = withdrawals_.find(id);
    if (it == withdrawals_.end()) return Reject("R14");
    if (it->second.store != store_id) return Reject("R13");
    if (it->second.status != v1::WITHDRAWING) return Reject("R14");
    ModelStore& store = stores_.at(store_id);
    store.withdrawing -= it->second.amount;
    if (complete) {
      store.paid_out += it->second.amount;
      it->second.status = v1::PAID_OUT;
    } else {
      store.available += it->second.amount;
      it->second.status = v1::WITHDRAWAL_FAILED;
    }
    return Accept();
  }

  const Policy& policy_;
  absl::Time at_;
  std::map<std::string, v1::Subject> merchants_;
  std::map<std::string, ModelStore> stores_;
  std::map<std::pair<std::string, std::string>, ModelProduct> products_;
  std::map<std::string, ModelOrder> orders_;
  std::map<std::string, ModelWithdrawal> withdrawals_;
};

// ------------------------------------------------------------------ generator

class Generator {
 public:
  Generator(uint64_t seed, const Model* model) : rng_(seed), model_(model) {}

  v1::Command Next(int n, absl::Time at) {
    v1::Command c;
    c.set_command_id(absl::StrCat("c", n));
    *c.mutable_occurred_at() = ToProto(at);
    const int roll = Int(0, 99);
    if (roll < 6) {
      auto* b = c.mutable_open_store();
      b->set_store_id(Chance(2) ? "" : Pick(kStores));
      b->set_merchant_id(Pick(kMerchants));
      b->set_kind(static_cast<v1::StoreKind>(Int(1, 3)));
      b->set_subject(static_cast<v1::Subject>(Int(1, 3)));
    } else if (roll < 8) {
      auto* b = c.mutable_register_individual_business();
      b->set_merchant_id(Pick(kMerchants));
      b->set_license_number("L-1");
    } else if (roll < 16) {
      auto* b = c.mutable_add_product();
      b->set_store_id(AnyStore());
      b->set_product_id(Pick(kProducts));
      b->set_kind(static_cast<v1::ProductKind>(Int(1, 2)));
      b->set_origin(Chance(20) ? v1::THIRD_PARTY : v1::OWN);
      b->set_category_id(Pick(kCategories));
      b->set_price_fen(Chance(3) ? 0 : Int(1, 50) * 100);
    } else if (roll < 24) {
      auto* b = c.mutable_list_product();
      b->set_store_id(AnyStore());
      b->set_product_id(Pick(kProducts));
      b->set_live_room(Chance(20));
    } else if (roll < 26) {
      auto* b = c.mutable_delist_product();
      b->set_store_id(AnyStore());
      b->set_product_id(Pick(kProducts));
    } else if (roll < 27) {
      c.mutable_apply_policy();
    } else if (roll < 30) {
      auto* b = c.mutable_upgrade_store();
      b->set_source_store_id(AnyStore());
      b->set_target_store_id(Pick(kTargets));
    } else if (roll < 32) {
      auto* b = c.mutable_sync_products();
      b->set_source_store_id(AnyStore());
      b->set_target_store_id(Chance(80) ? UpgradedTo(b->source_store_id())
                                        : Pick(kTargets));
    } else if (roll < 35) {
      auto* b = c.mutable_grant_category_qualification();
      b->set_store_id(AnyStore());
      b->set_category_id(Pick(kCategories));
    } else if (roll < 38) {
      auto* b = c.mutable_pay_deposit();
      b->set_store_id(AnyStore());
      b->set_category_id(Pick(kCategories));
      b->set_amount_fen(Chance(3) ? -5 : Int(1, 3) * 25000);
    } else if (roll < 56) {
      auto* b = c.mutable_place_order();
      b->set_store_id(AnyStore());
      b->set_order_id(absl::StrCat("o", Int(1, 400)));
      b->set_channel(Chance(15) ? v1::LIVE_ROOM
                                : Chance(15) ? v1::OFFICIAL_ACCOUNT
                                             : v1::STORE_PAGE);
      auto* line = b->add_lines();
      line->set_product_id(Pick(kProducts));
      line->set_quantity(Chance(2) ? 0 : Int(1, 3));
      line->set_unit_price_fen(Int(1, 50) * 100);
    } else if (roll < 86) {
      // Order follow-ups, mostly on orders that exist, under their store.
      std::string order_id = absl::StrCat("o", Int(1, 400));
      std::string store_id = AnyStore();
      const ModelOrder* order = nullptr;
      if (!model_->orders().empty() && !Chance(10)) {
        auto it = model_->orders().begin();
        std::advance(it, Int(0, static_cast<int>(model_->orders().size()) - 1));
        order_id = it->first;
        order = &it->second;
        if (!Chance(5)) store_id = it->second.store;
      }
      const int kind = Int(0, 9);
      if (kind < 3) {
        auto* b = c.mutable_pay_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
        b->set_amount_fen(order && !Chance(10) ? order->total : Int(1, 5000));
      } else if (kind < 5) {
        auto* b = c.mutable_ship_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
      } else if (kind < 7) {
        auto* b = c.mutable_settle_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
        const int64_t gross = order ? order->paid - order->refunded : 100;
        b->set_commission_fen(Chance(5) ? -1 : Chance(5) ? gross + 1 : gross / 20);
      } else if (kind < 9) {
        auto* b = c.mutable_refund_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
        const int64_t left = order ? order->paid - order->refunded : 100;
        b->set_amount_fen(Chance(5) ? 0 : Chance(50) ? left : std::max<int64_t>(1, left / 2));
      } else {
        auto* b = c.mutable_cancel_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
      }
    } else {
      std::string withdrawal_id = absl::StrCat("w", Int(1, 120));
      std::string store_id = AnyStore();
      if (!model_->withdrawals().empty() && Chance(60)) {
        auto it = model_->withdrawals().begin();
        std::advance(it, Int(0, static_cast<int>(model_->withdrawals().size()) - 1));
        withdrawal_id = it->first;
        if (!Chance(5)) store_id = it->second.store;
        if (Chance(50)) {
          auto* b = c.mutable_complete_withdrawal();
          b->set_store_id(store_id);
          b->set_withdrawal_id(withdrawal_id);
        } else {
          auto* b = c.mutable_fail_withdrawal();
          b->set_store_id(store_id);
          b->set_withdrawal_id(withdrawal_id);
        }
      } else {
        auto* b = c.mutable_request_withdrawal();
        b->set_store_id(store_id);
        b->set_withdrawal_id(withdrawal_id);
        auto store = model_->stores().find(store_id);
        const int64_t available =
            store == model_->stores().end() ? 100 : store->second.available;
        b->set_amount_fen(Chance(5)    ? 0
                          : Chance(10) ? available + 1
                                       : std::max<int64_t>(1, available / 2));
      }
    }
    return c;
  }

 private:
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(0, 99) < percent; }
  template <size_t N>
  std::string Pick(const char* const (&pool)[N]) {
    return pool[Int(0, static_cast<int>(N) - 1)];
  }
  std::string AnyStore() { return Chance(75) ? Pick(kStores) : Pick(kTargets); }
  std::string UpgradedTo(const std::string& store) {
    auto it = model_->stores().find(store);
    return it == model_->stores().end() || it->second.upgraded_to.empty()
               ? Pick(kTargets)
               : it->second.upgraded_to;
  }

  static constexpr const char* kStores[] = {"s1", "s2", "s3", "s4", "s5", "s6"};
  static constexpr const char* kTargets[] = {"u1", "u2", "u3"};
  static constexpr const char* kMerchants[] = {"m1", "m2", "m3", "m4"};
  static constexpr const char* kProducts[] = {"p1", "p2", "p3", "p4"};
  static constexpr const char* kCategories[] = {"c1", "c2"};

  std::mt19937_64 rng_;
  const Model* model_;
};

TEST(LedgerModelTest, LedgerAndModelAgreeOnEveryOutcomeAndBalance) {
  const uint64_t seed = SeedFromEnvironment();
  int commands = 4000;
  if (const char* n = std::getenv("STORELEDGER_MODEL_COMMANDS")) {
    commands = std::atoi(n);
  }
  std::cout << "LedgerModelTest seed: " << seed
            << " (re-run with STORELEDGER_SEED=" << seed << ")\n";
  SCOPED_TRACE(absl::StrCat("seed ", seed));

  TempDir dir;
  FixedClock clock(absl::FromUnixSeconds(1'800'000'000));
  LedgerOptions options;
  options.clock = &clock;
  options.sync = false;  // durability is not what this test is about
  absl::StatusOr<std::unique_ptr<Ledger>> opened =
      Ledger::Open(dir.Sub("db"), options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Ledger& ledger = **opened;
  Model model(ledger.policy());
  Generator generator(seed, &model);

  // From before the Channels product stop to past every Mini cutoff.
  absl::Time at = China(9, 10);
  const absl::Duration step =
      (China(12, 1) - at) / std::max(commands, 1);
  std::map<std::string, int> accepted_by_type;
  for (int n = 1; n <= commands; ++n) {
    at += step;
    v1::Command command = generator.Next(n, at);
    const Expect expect = model.Apply(command);
    absl::StatusOr<v1::CommandResult> result = ledger.Execute(command);
    ASSERT_TRUE(result.ok()) << result.status();
    ASSERT_EQ(result->status() == v1::ACCEPTED, expect.accepted)
        << "command " << n << ": " << command.ShortDebugString()
        << "\nledger: " << result->ShortDebugString()
        << "\nmodel: " << (expect.accepted ? "ACCEPTED" : expect.rule);
    if (!expect.accepted) {
      ASSERT_EQ(result->rule(), expect.rule)
          << "command " << n << ": " << command.ShortDebugString()
          << "\nledger: " << result->ShortDebugString();
    } else {
      ++accepted_by_type[v1::Command::GetDescriptor()
                             ->FindFieldByNumber(command.body_case())
                             ->name()];
    }
    if (n % 25 == 0 || n == commands) {
      for (const auto& [id, expected] : model.stores()) {
        absl::StatusOr<v1::StoreState> state = ledger.State(id);
        ASSERT_TRUE(state.ok()) << id << ": " << state.status();
        const v1::Balances& b = state->balances();
        ASSERT_EQ(b.pending_fen(), expected.pending) << id << " after " << n;
        ASSERT_EQ(b.available_fen(), expected.available) << id << " after " << n;
        ASSERT_EQ(b.withdrawing_fen(), expected.withdrawing) << id << " after " << n;
        ASSERT_EQ(b.paid_out_fen(), expected.paid_out) << id << " after " << n;
        ASSERT_EQ(b.deposit_fen(), expected.deposit) << id << " after " << n;
        ASSERT_EQ(state->status() == v1::UPGRADED, expected.upgraded) << id;
      }
    }
  }
  // The run must have exercised the money paths, or it proves little.
  for (const char* type : {"open_store", "pay_order", "settle_order",
                           "refund_order", "request_withdrawal",
                           "upgrade_store"}) {
    EXPECT_GT(accepted_by_type[type], 0) << type << " never accepted";
  }

  // Every event's postings balance and touch one store (R13).
  std::map<std::string, int64_t> balance_by_account;
  absl::Status scanned = ledger.log().Scan(
      0, [&](const v1::Envelope& envelope, absl::string_view) {
        int64_t sum = 0;
        std::set<std::string> stores;
        for (const Posting& p : PostingsFor(envelope.payload())) {
          sum += p.debit_fen - p.credit_fen;
          stores.insert(p.store_id);
          balance_by_account[p.account] += p.debit_fen - p.credit_fen;
        }
        EXPECT_EQ(sum, 0) << "position " << envelope.position();
        EXPECT_LE(stores.size(), 1u) << "position " << envelope.position();
        return true;
      });
  ASSERT_TRUE(scanned.ok()) << scanned;
  // And summed, they are the model's balances.
  for (const auto& [id, expected] : model.stores()) {
    EXPECT_EQ(balance_by_account[absl::StrCat(id, "/pending")], expected.pending);
    EXPECT_EQ(balance_by_account[absl::StrCat(id, "/available")], expected.available);
    EXPECT_EQ(balance_by_account[absl::StrCat("payouts/", id)], expected.paid_out);
  }
}

}  // namespace
}  // namespace storeledger
