// The ledger against a model: thousands of random commands, valid and not,
// go through Ledger::Execute on a real RocksDB and through a deliberately
// simple in-memory model of the rules written from DESIGN.md
// (tests/support/ledger_model.h, independent of core/; the decide-sequence
// fuzzer uses it as its oracle too). They must agree on every outcome
// (status and rule) and on every balance; every event's postings, read the
// model's way, balance and touch one store, and sum to the model's balances.
// The generator reaches every verb (deleteProduct too), orders of several
// lines, many upgrades and registrations, and commands dated before their
// stream's latest event; a run must have seen every rule R0-R15 both let a
// command through and refuse one (R6 excepted: applyPolicy cannot be
// refused by its own rule, so its cutoffs must have refused an order
// instead).
//
// Seeded: the seed is printed; re-run with STORELEDGER_SEED=<seed>.
// STORELEDGER_MODEL_COMMANDS sets the number of commands (default 4000).
#include "tests/support/ledger_model.h"

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/policy.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::LedgerModel;
using ::storeledger::testing::ModelOrder;
using ::storeledger::testing::ModelPosting;
using ::storeledger::testing::ModelPostings;
using ::storeledger::testing::ModelVerdict;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// ------------------------------------------------------------------ generator

class Generator {
 public:
  Generator(uint64_t seed, const LedgerModel* model)
      : rng_(seed), model_(model) {}

  v1::Command Next(int n, absl::Time at) {
    v1::Command c;
    c.set_command_id(absl::StrCat("c", n));
    // R0: now and then a command dated before its stream's latest event.
    if (Chance(2)) at -= absl::Hours(Int(1, 72));
    *c.mutable_occurred_at() = ToProto(at);
    const int roll = Int(0, 99);
    if (roll < 6) {
      auto* b = c.mutable_open_store();
      const int store = Int(0, std::size(kStores) - 1);
      b->set_store_id(Chance(3)    ? ""
                      : Chance(10) ? Pick(kTargets)
                                   : kStores[store]);
      const int merchant = Int(0, std::size(kMerchants) - 1);
      b->set_merchant_id(kMerchants[merchant]);
      // Mostly a kind by store (mini, Channels, WeChat in turn).
      b->set_kind(
          static_cast<v1::StoreKind>(Chance(80) ? 1 + store % 3 : Int(1, 3)));
      // Mostly the merchant's subject (R1 refuses another one); the first
      // half of the merchants start PERSONAL (registrations to come).
      auto known = model_->merchants().find(b->merchant_id());
      b->set_subject(Chance(10) ? static_cast<v1::Subject>(Int(1, 3))
                     : known != model_->merchants().end() ? known->second
                     : merchant < static_cast<int>(std::size(kMerchants)) / 2
                         ? v1::PERSONAL
                         : static_cast<v1::Subject>(Int(1, 2)));
    } else if (roll < 9) {
      auto* b = c.mutable_register_individual_business();
      const std::vector<std::string> personal = PersonalMerchants();
      b->set_merchant_id(Chance(10)                        ? "m-unknown"
                         : !personal.empty() && Chance(60) ? OneOf(personal)
                                                           : Pick(kMerchants));
      b->set_license_number(Chance(5) ? "" : "L-1");
    } else if (roll < 16) {
      auto* b = c.mutable_add_product();
      b->set_store_id(AnyStore());
      b->set_product_id(Pick(kProducts));
      b->set_kind(static_cast<v1::ProductKind>(Int(1, 2)));
      b->set_origin(Chance(20) ? v1::THIRD_PARTY : v1::OWN);
      b->set_category_id(Pick(kCategories));
      b->set_price_fen(Chance(3) ? 0 : Int(1, 50) * 100);
    } else if (roll < 23) {
      auto* b = c.mutable_list_product();
      b->set_store_id(AnyStore());
      b->set_product_id(AnyProductOf(b->store_id()));
      b->set_live_room(Chance(20));
    } else if (roll < 26) {
      auto* b = c.mutable_delist_product();
      b->set_store_id(AnyStore());
      b->set_product_id(AnyProductOf(b->store_id()));
    } else if (roll < 29) {
      auto* b = c.mutable_delete_product();
      b->set_store_id(AnyStore());
      b->set_product_id(AnyProductOf(b->store_id()));
    } else if (roll < 30 && Chance(30)) {
      // Rare, so that orders meet products past their cutoff that no
      // applyPolicy has delisted yet.
      c.mutable_apply_policy();
    } else if (roll < 35) {  // (and most of applyPolicy's share)
      auto* b = c.mutable_upgrade_store();
      const std::vector<std::string> legacy = LegacyStores();
      b->set_source_store_id(!legacy.empty() && Chance(70) ? OneOf(legacy)
                                                           : AnyStore());
      b->set_target_store_id(Pick(kTargets));
    } else if (roll < 38) {
      auto* b = c.mutable_sync_products();
      b->set_source_store_id(AnyStore());
      b->set_target_store_id(Chance(80) ? UpgradedTo(b->source_store_id())
                                        : Pick(kTargets));
    } else if (roll < 41) {
      auto* b = c.mutable_grant_category_qualification();
      b->set_store_id(WeChatStoreOrAny());
      b->set_category_id(Pick(kCategories));
    } else if (roll < 44) {
      auto* b = c.mutable_pay_deposit();
      b->set_store_id(WeChatStoreOrAny());
      b->set_category_id(Pick(kCategories));
      b->set_amount_fen(Chance(3) ? -5 : Int(1, 3) * 25000);
    } else if (roll < 60) {
      auto* b = c.mutable_place_order();
      // Mostly a store with something on its shelf, and its products.
      const std::vector<std::string> selling = StoresWithListedProducts();
      b->set_store_id(!selling.empty() && Chance(70) ? OneOf(selling)
                                                     : AnyStore());
      b->set_order_id(absl::StrCat("o", Int(1, 600)));
      b->set_channel(Chance(15)   ? v1::LIVE_ROOM
                     : Chance(15) ? v1::OFFICIAL_ACCOUNT
                                  : v1::STORE_PAGE);
      // One to four lines (none now and then: R0).
      const int lines = Chance(2) ? 0 : Int(1, 4);
      for (int l = 0; l < lines; ++l) {
        auto* line = b->add_lines();
        line->set_product_id(AnyProductOf(b->store_id()));
        line->set_quantity(Chance(2) ? 0 : Int(1, 3));
        line->set_unit_price_fen(Int(1, 50) * 100);
      }
    } else if (roll < 86) {
      // Order follow-ups, mostly on orders that exist, under their store.
      std::string order_id = absl::StrCat("o", Int(1, 600));
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
        b->set_commission_fen(Chance(5)   ? -1
                              : Chance(5) ? gross + 1
                                          : gross / 20);
      } else if (kind < 9) {
        auto* b = c.mutable_refund_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
        const int64_t left = order ? order->paid - order->refunded : 100;
        b->set_amount_fen(Chance(5)    ? 0
                          : Chance(50) ? left
                                       : std::max<int64_t>(1, left / 2));
      } else {
        auto* b = c.mutable_cancel_order();
        b->set_store_id(store_id);
        b->set_order_id(order_id);
      }
    } else {
      std::string withdrawal_id = absl::StrCat("w", Int(1, 200));
      std::string store_id = AnyStore();
      if (!model_->withdrawals().empty() && Chance(60)) {
        auto it = model_->withdrawals().begin();
        std::advance(
            it, Int(0, static_cast<int>(model_->withdrawals().size()) - 1));
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
  int Int(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  bool Chance(int percent) { return Int(0, 99) < percent; }
  template <size_t N>
  std::string Pick(const char* const (&pool)[N]) {
    return pool[Int(0, static_cast<int>(N) - 1)];
  }
  // The test's fixture (ids "fx-...") is not the generator's to touch.
  static bool Drawable(const std::string& store) {
    return !absl::StartsWith(store, "fx-");
  }
  std::string AnyStore() {
    std::vector<std::string> stores;
    for (const auto& [id, store] : model_->stores()) {
      if (Drawable(id)) stores.push_back(id);
    }
    if (!stores.empty() && Chance(60)) return OneOf(stores);
    return Chance(70) ? Pick(kStores) : Pick(kTargets);
  }
  std::string OneOf(const std::vector<std::string>& pool) {
    return pool[static_cast<size_t>(Int(0, static_cast<int>(pool.size()) - 1))];
  }
  // Mostly one of the store's products (listed ones first), else any id.
  std::string AnyProductOf(const std::string& store) {
    std::vector<std::string> all, listed;
    for (const auto& [key, product] : model_->products()) {
      if (key.first != store) continue;
      all.push_back(key.second);
      if (product.status == v1::LISTED) listed.push_back(key.second);
    }
    if (!listed.empty() && Chance(50)) return OneOf(listed);
    if (!all.empty() && Chance(80)) return OneOf(all);
    return Pick(kProducts);
  }
  std::vector<std::string> StoresWithListedProducts() {
    std::set<std::string> stores;
    for (const auto& [key, product] : model_->products()) {
      if (product.status == v1::LISTED && Drawable(key.first)) {
        stores.insert(key.first);
      }
    }
    return {stores.begin(), stores.end()};
  }
  std::vector<std::string> LegacyStores() {
    std::vector<std::string> stores;
    for (const auto& [id, store] : model_->stores()) {
      if (store.kind != v1::WECHAT_STORE && store.upgraded_to.empty() &&
          Drawable(id)) {
        stores.push_back(id);
      }
    }
    return stores;
  }
  std::string WeChatStoreOrAny() {
    std::vector<std::string> stores;
    for (const auto& [id, store] : model_->stores()) {
      if (store.kind == v1::WECHAT_STORE) stores.push_back(id);
    }
    return !stores.empty() && Chance(80) ? OneOf(stores) : AnyStore();
  }
  std::vector<std::string> PersonalMerchants() {
    std::vector<std::string> merchants;
    for (const auto& [id, subject] : model_->merchants()) {
      if (subject == v1::PERSONAL) merchants.push_back(id);
    }
    return merchants;
  }
  std::string UpgradedTo(const std::string& store) {
    auto it = model_->stores().find(store);
    return it == model_->stores().end() || it->second.upgraded_to.empty()
               ? Pick(kTargets)
               : it->second.upgraded_to;
  }

  // Sixteen legacy stores over twelve merchants leave room for many
  // upgrades (each into one of the targets) and registrations.
  static constexpr const char* kStores[] = {
      "s1", "s2",  "s3",  "s4",  "s5",  "s6",  "s7",  "s8",
      "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16"};
  static constexpr const char* kTargets[] = {
      "u1", "u2",  "u3",  "u4",  "u5",  "u6",  "u7",  "u8",
      "u9", "u10", "u11", "u12", "u13", "u14", "u15", "u16"};
  static constexpr const char* kMerchants[] = {"m1", "m2",  "m3",  "m4",
                                               "m5", "m6",  "m7",  "m8",
                                               "m9", "m10", "m11", "m12"};
  static constexpr const char* kProducts[] = {"p1", "p2", "p3", "p4", "p5"};
  static constexpr const char* kCategories[] = {"c1", "c2"};

  std::mt19937_64 rng_;
  const LedgerModel* model_;
};

std::string BodyName(const v1::Command& command) {
  return v1::Command::GetDescriptor()
      ->FindFieldByNumber(command.body_case())
      ->name();
}

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
  LedgerModel model(ledger.policy());
  Generator generator(seed, &model);

  std::map<std::string, int> generated_by_type, accepted_by_type;
  // One command through both; they must agree. Returns the ledger's result.
  auto run = [&](const v1::Command& command) -> v1::CommandResult {
    ++generated_by_type[BodyName(command)];
    const ModelVerdict expect = model.Apply(command);
    absl::StatusOr<v1::CommandResult> result = ledger.Execute(command);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return v1::CommandResult();
    EXPECT_EQ(result->status() == v1::ACCEPTED, expect.accepted)
        << command.ShortDebugString()
        << "\nledger: " << result->ShortDebugString()
        << "\nmodel: " << (expect.accepted ? "ACCEPTED" : expect.rule);
    if (!expect.accepted) {
      EXPECT_EQ(result->rule(), expect.rule)
          << command.ShortDebugString()
          << "\nledger: " << result->ShortDebugString();
    } else {
      ++accepted_by_type[BodyName(command)];
    }
    return *result;
  };
  auto fixture = [&](const std::string& id, absl::Time when,
                     const std::string& json) {
    v1::Command command;
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(json, &command).ok())
        << json;
    command.set_command_id(id);
    *command.mutable_occurred_at() = ToProto(when);
    return run(command);
  };

  // R6 at work whatever the random commands do: a mini store's physical
  // product listed now, out of every pool the generator draws from. When
  // the run passes MINI_PHYSICAL_CUTOFF, an order for it is refused while it
  // is still stored LISTED (no applyPolicy delists physical goods before
  // that cutoff), and then applyPolicy delists it.
  absl::Time at = China(9, 10);
  fixture("fx-1", at,
          R"({"openStore": {"storeId": "fx-mini", "merchantId": "m-fx",
              "kind": "MINI_STORE", "subject": "ENTERPRISE"}})");
  fixture("fx-2", at,
          R"({"addProduct": {"storeId": "fx-mini", "productId": "fx-p",
              "kind": "PHYSICAL", "origin": "OWN", "categoryId": "c1",
              "priceFen": "100"}})");
  fixture("fx-3", at,
          R"({"listProduct": {"storeId": "fx-mini", "productId": "fx-p"}})");
  bool cutoff_seen = false;

  // From before the Channels product stop to past every Mini cutoff.
  const absl::Duration step = (China(12, 1) - at) / std::max(commands, 1);
  for (int n = 1; n <= commands && !HasFatalFailure(); ++n) {
    at += step;
    if (!cutoff_seen && at >= China(11, 18)) {
      cutoff_seen = true;
      const v1::CommandResult refused =
          fixture("fx-4", at,
                  R"({"placeOrder": {"storeId": "fx-mini", "orderId": "fx-o",
              "lines": [{"productId": "fx-p", "quantity": "1",
                         "unitPriceFen": "100"}]}})");
      EXPECT_EQ(refused.rule(), "R10") << refused.ShortDebugString();
      EXPECT_TRUE(absl::StrContains(refused.message(), "(policy cutoff)"))
          << refused.ShortDebugString();
      fixture("fx-5", at, R"({"applyPolicy": {}})");
    }
    v1::Command command = generator.Next(n, at);
    SCOPED_TRACE(absl::StrCat("command ", n));
    run(command);
    if (HasFailure()) return;
    if (n % 25 == 0 || n == commands) {
      for (const auto& [id, expected] : model.stores()) {
        absl::StatusOr<v1::StoreState> state = ledger.State(id);
        ASSERT_TRUE(state.ok()) << id << ": " << state.status();
        const v1::Balances& b = state->balances();
        ASSERT_EQ(b.pending_fen(), expected.pending) << id << " after " << n;
        ASSERT_EQ(b.available_fen(), expected.available)
            << id << " after " << n;
        ASSERT_EQ(b.withdrawing_fen(), expected.withdrawing)
            << id << " after " << n;
        ASSERT_EQ(b.paid_out_fen(), expected.paid_out) << id << " after " << n;
        ASSERT_EQ(b.deposit_fen(), expected.deposit) << id << " after " << n;
        ASSERT_EQ(state->status() == v1::UPGRADED,
                  !expected.upgraded_to.empty())
            << id;
      }
    }
  }

  // The run must have reached every verb and every rule both ways, or it
  // proves little.
  const google::protobuf::OneofDescriptor* bodies =
      v1::Command::GetDescriptor()->FindOneofByName("body");
  for (int i = 0; i < bodies->field_count(); ++i) {
    const std::string type = bodies->field(i)->name();
    EXPECT_GT(accepted_by_type[type], 0)
        << type << " never accepted (" << generated_by_type[type]
        << " generated)";
  }
  std::cout << "rules (accepted/rejected):";
  for (int rule = 0; rule <= 15; ++rule) {
    const std::string name = absl::StrCat("R", rule);
    const testing::RuleCount count = model.rule_counts().count(name)
                                         ? model.rule_counts().at(name)
                                         : testing::RuleCount{};
    std::cout << " " << name << " " << count.accepted << "/" << count.rejected;
    EXPECT_GT(count.accepted, 0) << name << " never let a command through";
    if (name == "R6") {
      // applyPolicy has no refusal of its own (R0 alone refuses it); R6
      // refuses through the cutoffs: an order for a product still stored
      // LISTED but past its cutoff.
      EXPECT_EQ(count.rejected, 0) << "R6 refused a command";
      EXPECT_GT(model.orders_refused_by_cutoff(), 0)
          << "no order was refused by a policy cutoff";
      EXPECT_GT(model.policy_delistings(), 0)
          << "applyPolicy never delisted anything";
    } else {
      EXPECT_GT(count.rejected, 0) << name << " never refused a command";
    }
  }
  std::cout << "; " << model.policy_delistings()
            << " products delisted by applyPolicy, "
            << model.orders_refused_by_cutoff()
            << " orders refused by a cutoff\n";

  // Every event's postings, as the model reads DESIGN.md §4, balance and
  // touch one store (R13); summed, they are the model's balances.
  std::map<std::string, int64_t> balance_by_account;
  absl::Status scanned = ledger.log().Scan(
      0, [&](const v1::Envelope& envelope, absl::string_view) {
        int64_t sum = 0;
        std::set<std::string> stores;
        for (const ModelPosting& p : ModelPostings(envelope.payload())) {
          sum += p.debit_fen - p.credit_fen;
          stores.insert(p.store);
          balance_by_account[p.account] += p.debit_fen - p.credit_fen;
        }
        EXPECT_EQ(sum, 0) << "position " << envelope.position();
        EXPECT_LE(stores.size(), 1u) << "position " << envelope.position();
        return true;
      });
  ASSERT_TRUE(scanned.ok()) << scanned;
  for (const auto& [id, expected] : model.stores()) {
    EXPECT_EQ(balance_by_account[absl::StrCat(id, "/pending")],
              expected.pending);
    EXPECT_EQ(balance_by_account[absl::StrCat(id, "/available")],
              expected.available);
    EXPECT_EQ(balance_by_account[absl::StrCat(id, "/withdrawing")],
              expected.withdrawing);
    EXPECT_EQ(balance_by_account[absl::StrCat("payouts/", id)],
              expected.paid_out);
    int64_t deposits = 0;
    for (const auto& [category, fen] : expected.deposit_by_category) {
      EXPECT_EQ(balance_by_account[absl::StrCat(id, "/deposit/", category)],
                fen);
      deposits += fen;
    }
    EXPECT_EQ(deposits, expected.deposit) << id;
  }
}

}  // namespace
}  // namespace storeledger
