#include "cli/simulate.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/policy.h"

namespace storeledger {
namespace {

using v1::Command;

absl::Time China(int month, int day, int hour = 0, int minute = 0) {
  static const absl::TimeZone* zone =
      new absl::TimeZone(absl::FixedTimeZone(8 * 3600));
  return absl::FromCivil(absl::CivilMinute(2024, month, day, hour, minute),
                         *zone);
}

// The article's calendar, as the simulator plans around it.
const absl::Time kLaunch = China(8, 25);
const absl::Time kChannelsNoNew = China(9, 25);
const absl::Time kOfficialAccount = China(9, 27);
const absl::Time kMiniUpgradeOpen = China(10, 21);
const absl::Time kLiveRoomClosed = China(10, 25);
const absl::Time kEvoucherCutoff = China(11, 4);
const absl::Time kPhysicalCutoff = China(11, 18);

struct PlannedProduct {
  std::string id;
  v1::ProductKind kind;
  v1::ProductOrigin origin;
  std::string category;
  int64_t price_fen;
  absl::Time gone_at = absl::InfiniteFuture();  // merchant delisted it
};

class StorePlanner {
 public:
  StorePlanner(int index, uint64_t seed,
               std::vector<std::pair<absl::Time, SimulatedStep>>* out)
      : index_(index),
        rng_(seed * 1'000'003ULL + static_cast<uint64_t>(index)),
        out_(out),
        prefix_(absl::StrFormat("sim%d-%s", seed, SimulatedStoreId(index))) {}

  void Plan();

 private:
  double Uniform() {
    return std::uniform_real_distribution<double>(0, 1)(rng_);
  }
  int Int(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  absl::Time Between(absl::Time a, absl::Time b) {
    const int64_t span = absl::ToInt64Minutes(b - a);
    return a + absl::Minutes(std::uniform_int_distribution<int64_t>(
                   0, std::max<int64_t>(span, 0))(rng_));
  }

  Command& Add(absl::Time at, SimulatedStep::Amount amount =
                                  SimulatedStep::Amount::kAsWritten) {
    auto& [time, step] = out_->emplace_back();
    time = at;
    step.amount = amount;
    step.command.set_command_id(absl::StrCat(prefix_, "-", ++count_));
    *step.command.mutable_occurred_at() = ToProto(at);
    return step.command;
  }

  // An openStore of `store` at `at`.
  void AddOpenStore(absl::Time at, const std::string& store,
                    const std::string& merchant, v1::StoreKind kind,
                    v1::Subject subject) {
    auto* open = Add(at).mutable_open_store();
    open->set_store_id(store);
    open->set_merchant_id(merchant);
    open->set_kind(kind);
    open->set_subject(subject);
  }

  void AddProducts(const std::string& store, v1::StoreKind kind,
                   absl::Time from, int n,
                   std::vector<PlannedProduct>* products);
  void PlanOrders(const std::string& store, v1::StoreKind kind, absl::Time from,
                  absl::Time to, int n,
                  const std::vector<PlannedProduct>& products);
  void PlanWithdrawals(const std::string& store, absl::Time at);
  void PlanWeChatSetup(const std::string& store, absl::Time at,
                       const std::vector<PlannedProduct>& products);

  int index_;
  std::mt19937_64 rng_;
  std::vector<std::pair<absl::Time, SimulatedStep>>* out_;
  std::string prefix_;
  int count_ = 0;
  int orders_ = 0;
  int withdrawals_ = 0;
};

void StorePlanner::AddProducts(const std::string& store, v1::StoreKind kind,
                               absl::Time from, int n,
                               std::vector<PlannedProduct>* products) {
  for (int p = 0; p < n; ++p) {
    PlannedProduct product;
    product.id = absl::StrCat("p", p + 1);
    const double evoucher_share = kind == v1::MINI_STORE ? 0.35 : 0.2;
    product.kind = Uniform() < evoucher_share ? v1::E_VOUCHER : v1::PHYSICAL;
    product.origin = Uniform() < 0.85 ? v1::OWN : v1::THIRD_PARTY;
    product.category = absl::StrCat("cat-", Int(1, 5));
    product.price_fen = Int(99, 9999) * 10;
    const absl::Time added = from + absl::Hours(p + 1);
    auto* add = Add(added).mutable_add_product();
    add->set_store_id(store);
    add->set_product_id(product.id);
    add->set_kind(product.kind);
    add->set_origin(product.origin);
    add->set_category_id(product.category);
    add->set_price_fen(product.price_fen);
    if (kind != v1::WECHAT_STORE) {
      auto* list = Add(added + absl::Minutes(30)).mutable_list_product();
      list->set_store_id(store);
      list->set_product_id(product.id);
      list->set_live_room(kind == v1::CHANNELS_STORE && Uniform() < 0.3);
      if (Uniform() < 0.1) {  // the merchant takes it off the shelf (R4, R5)
        product.gone_at = added + absl::Hours(24 * 20);
        auto* delist = Add(product.gone_at).mutable_delist_product();
        delist->set_store_id(store);
        delist->set_product_id(product.id);
        auto* del =
            Add(product.gone_at + absl::Hours(1)).mutable_delete_product();
        del->set_store_id(store);
        del->set_product_id(product.id);
      }
    }
    products->push_back(product);
  }
}

// Is `product` effectively listed in a store of `kind` at `t` (R6, R10)?
bool Sellable(const PlannedProduct& product, v1::StoreKind kind, absl::Time t) {
  if (t >= product.gone_at) return false;
  if (kind == v1::MINI_STORE) {
    if (t >= kPhysicalCutoff) return false;
    if (product.kind == v1::E_VOUCHER && t >= kEvoucherCutoff) return false;
  }
  return true;
}

void StorePlanner::PlanOrders(const std::string& store, v1::StoreKind kind,
                              absl::Time from, absl::Time to, int n,
                              const std::vector<PlannedProduct>& products) {
  if (products.empty()) return;
  for (int k = 0; k < n; ++k) {
    const absl::Time t = Between(from, to);
    const PlannedProduct& product =
        products[Int(0, static_cast<int>(products.size()) - 1)];
    const std::string order_id = absl::StrCat("o-", store, "-", ++orders_);
    v1::Channel channel = v1::STORE_PAGE;
    if (kind == v1::CHANNELS_STORE && Uniform() < 0.25) channel = v1::LIVE_ROOM;
    if (kind == v1::WECHAT_STORE && t >= kOfficialAccount && Uniform() < 0.3) {
      channel = v1::OFFICIAL_ACCOUNT;
    }
    if (kind != v1::WECHAT_STORE && Uniform() < 0.02)
      channel = v1::OFFICIAL_ACCOUNT;
    const int64_t quantity = Uniform() < 0.01 ? 0 : Int(1, 3);  // R0 on purpose
    auto* place = Add(t).mutable_place_order();
    place->set_store_id(store);
    place->set_order_id(order_id);
    place->set_channel(channel);
    auto* line = place->add_lines();
    line->set_product_id(product.id);
    line->set_quantity(quantity);
    line->set_unit_price_fen(product.price_fen);
    const bool refused =
        quantity == 0 || !Sellable(product, kind, t) ||
        (channel == v1::OFFICIAL_ACCOUNT && kind != v1::WECHAT_STORE) ||
        (channel == v1::LIVE_ROOM && kind == v1::CHANNELS_STORE &&
         t >= kLiveRoomClosed);
    if (refused) continue;  // the refusal is the point; no follow-ups
    const int64_t total = quantity * product.price_fen;
    if (Uniform() < 0.05) {
      auto* cancel = Add(t + absl::Minutes(20)).mutable_cancel_order();
      cancel->set_store_id(store);
      cancel->set_order_id(order_id);
      continue;
    }
    if (Uniform() < 0.03) {  // a wrong amount first (R11)
      auto* pay = Add(t + absl::Minutes(9)).mutable_pay_order();
      pay->set_store_id(store);
      pay->set_order_id(order_id);
      pay->set_amount_fen(total + 100);
    }
    auto* pay = Add(t + absl::Minutes(10)).mutable_pay_order();
    pay->set_store_id(store);
    pay->set_order_id(order_id);
    pay->set_amount_fen(total);
    int64_t refunded = 0;
    if (Uniform() < 0.06) {  // partial refund before settlement, from pending
      refunded = total / 2;
      if (refunded > 0) {
        auto* refund = Add(t + absl::Hours(12)).mutable_refund_order();
        refund->set_store_id(store);
        refund->set_order_id(order_id);
        refund->set_amount_fen(refunded);
      }
    }
    auto* ship = Add(t + absl::Hours(24)).mutable_ship_order();
    ship->set_store_id(store);
    ship->set_order_id(order_id);
    if (Uniform() < 0.1) continue;  // still in transit at the end
    const int64_t commission = (total - refunded) * 5 / 100;
    if (Uniform() < 0.02) {  // named under the wrong store (R13)
      auto* wrong = Add(t + absl::Hours(24 * 8 - 1)).mutable_settle_order();
      wrong->set_store_id(absl::StrCat(store, "-x"));
      wrong->set_order_id(order_id);
      wrong->set_commission_fen(commission);
    }
    auto* settle = Add(t + absl::Hours(24 * 8)).mutable_settle_order();
    settle->set_store_id(store);
    settle->set_order_id(order_id);
    settle->set_commission_fen(commission);
    if (Uniform() < 0.04) {  // an after-sale refund, from available
      auto* refund = Add(t + absl::Hours(24 * 9)).mutable_refund_order();
      refund->set_store_id(store);
      refund->set_order_id(order_id);
      refund->set_amount_fen(total - refunded);
    }
  }
}

void StorePlanner::PlanWithdrawals(const std::string& store, absl::Time at) {
  if (Uniform() < 0.1) {  // asks for more than there is (R14)
    auto* too_much = Add(at - absl::Hours(2), SimulatedStep::Amount::kTooMuch)
                         .mutable_request_withdrawal();
    too_much->set_store_id(store);
    too_much->set_withdrawal_id(
        absl::StrCat("wd-", store, "-", ++withdrawals_));
  }
  std::string id = absl::StrCat("wd-", store, "-", ++withdrawals_);
  auto* request =
      Add(at, SimulatedStep::Amount::kAll).mutable_request_withdrawal();
  request->set_store_id(store);
  request->set_withdrawal_id(id);
  if (Uniform() < 0.1) {  // the bank bounces it; the merchant tries again
    auto* fail = Add(at + absl::Hours(24)).mutable_fail_withdrawal();
    fail->set_store_id(store);
    fail->set_withdrawal_id(id);
    id = absl::StrCat("wd-", store, "-", ++withdrawals_);
    auto* again = Add(at + absl::Hours(30), SimulatedStep::Amount::kAll)
                      .mutable_request_withdrawal();
    again->set_store_id(store);
    again->set_withdrawal_id(id);
  }
  auto* complete = Add(at + absl::Hours(48)).mutable_complete_withdrawal();
  complete->set_store_id(store);
  complete->set_withdrawal_id(id);
}

void StorePlanner::PlanWeChatSetup(
    const std::string& store, absl::Time at,
    const std::vector<PlannedProduct>& products) {
  std::vector<std::string> categories;
  for (const PlannedProduct& p : products) categories.push_back(p.category);
  std::sort(categories.begin(), categories.end());
  categories.erase(std::unique(categories.begin(), categories.end()),
                   categories.end());
  const bool short_deposit = Uniform() < 0.1;
  for (const std::string& category : categories) {
    auto* grant = Add(at).mutable_grant_category_qualification();
    grant->set_store_id(store);
    grant->set_category_id(category);
    auto* deposit = Add(at + absl::Minutes(30)).mutable_pay_deposit();
    deposit->set_store_id(store);
    deposit->set_category_id(category);
    deposit->set_amount_fen(short_deposit ? 30000 : 50000);
  }
  for (const PlannedProduct& p : products) {
    auto* list = Add(at + absl::Hours(1)).mutable_list_product();
    list->set_store_id(store);
    list->set_product_id(p.id);
  }
  if (short_deposit) {  // R3 refused the listings above; top up and retry
    for (const std::string& category : categories) {
      auto* deposit = Add(at + absl::Hours(2)).mutable_pay_deposit();
      deposit->set_store_id(store);
      deposit->set_category_id(category);
      deposit->set_amount_fen(20000);
    }
    for (const PlannedProduct& p : products) {
      auto* list = Add(at + absl::Hours(3)).mutable_list_product();
      list->set_store_id(store);
      list->set_product_id(p.id);
    }
  }
}

void StorePlanner::Plan() {
  const std::string store = SimulatedStoreId(index_);
  const std::string merchant = absl::StrCat("m", index_);
  const double kind_roll = Uniform();
  const v1::StoreKind kind = kind_roll < 0.45  ? v1::MINI_STORE
                             : kind_roll < 0.8 ? v1::CHANNELS_STORE
                                               : v1::WECHAT_STORE;
  const double subject_roll = Uniform();
  v1::Subject subject = subject_roll < 0.7    ? v1::ENTERPRISE
                        : subject_roll < 0.85 ? v1::INDIVIDUAL_BUSINESS
                                              : v1::PERSONAL;
  const absl::Time end = China(12, 10);

  if (kind == v1::WECHAT_STORE) {
    absl::Time opened = Between(kLaunch, China(10, 31));
    if (subject == v1::PERSONAL || Uniform() < 0.05) {
      // Refused: a personal WeChat Store (R1) or one before the launch.
      const absl::Time early =
          subject == v1::PERSONAL ? opened : kLaunch - absl::Hours(6);
      AddOpenStore(early, store, merchant, kind, subject);
      if (subject == v1::PERSONAL) subject = v1::INDIVIDUAL_BUSINESS;
      opened += absl::Hours(1);
    }
    AddOpenStore(opened, store, merchant, kind, subject);
    std::vector<PlannedProduct> products;
    AddProducts(store, kind, opened, Int(2, 6), &products);
    const absl::Time ready = opened + absl::Hours(10);
    PlanWeChatSetup(store, ready, products);
    PlanOrders(store, kind, ready + absl::Hours(4), end, Int(4, 10), products);
    PlanWithdrawals(store, China(12, 21));
    return;
  }

  const absl::Time opened = Between(China(5, 1), China(8, 20));
  AddOpenStore(opened, store, merchant, kind, subject);
  std::vector<PlannedProduct> products;
  AddProducts(store, kind, opened, Int(3, 7), &products);
  if (kind == v1::CHANNELS_STORE && Uniform() < 0.1) {  // too late (R2)
    auto* late =
        Add(Between(kChannelsNoNew, China(10, 20))).mutable_add_product();
    late->set_store_id(store);
    late->set_product_id("late-1");
    late->set_kind(v1::PHYSICAL);
    late->set_origin(v1::OWN);
    late->set_category_id("cat-1");
    late->set_price_fen(1990);
  }
  PlanOrders(store, kind, opened + absl::Hours(24), end, Int(4, 10), products);

  const bool upgrades = Uniform() < (kind == v1::MINI_STORE ? 0.8 : 0.75);
  if (upgrades) {
    const std::string target = SimulatedUpgradeTargetId(index_);
    absl::Time at = Between(kind == v1::MINI_STORE ? kMiniUpgradeOpen : kLaunch,
                            China(11, 15));
    auto upgrade = [&](absl::Time t) {
      auto* u = Add(t).mutable_upgrade_store();
      u->set_source_store_id(store);
      u->set_target_store_id(target);
    };
    if (kind == v1::MINI_STORE && Uniform() < 0.05) {
      upgrade(kMiniUpgradeOpen - absl::Minutes(1));  // a minute early (R8)
    }
    if (subject == v1::PERSONAL) {
      upgrade(at);  // refused: register as an individual business first (R8)
      auto* reg =
          Add(at + absl::Hours(24)).mutable_register_individual_business();
      reg->set_merchant_id(merchant);
      reg->set_license_number(absl::StrFormat("92440300MA%08d", index_));
      at += absl::Hours(48);
    }
    upgrade(at);
    auto* sync = Add(at + absl::Hours(1)).mutable_sync_products();
    sync->set_source_store_id(store);
    sync->set_target_store_id(target);
    // What R9 will copy: own products still effectively draft or listed.
    std::vector<PlannedProduct> synced;
    for (const PlannedProduct& p : products) {
      if (p.origin == v1::OWN && Sellable(p, kind, at + absl::Hours(1))) {
        synced.push_back(p);
      }
    }
    if (Uniform() < 0.05) {  // an upgraded store adds nothing (R2)
      auto* late = Add(at + absl::Hours(2)).mutable_add_product();
      late->set_store_id(store);
      late->set_product_id("after-upgrade");
      late->set_kind(v1::PHYSICAL);
      late->set_origin(v1::OWN);
      late->set_category_id("cat-1");
      late->set_price_fen(1990);
    }
    const absl::Time ready = at + absl::Hours(3);
    PlanWeChatSetup(target, ready, synced);
    PlanOrders(target, v1::WECHAT_STORE, ready + absl::Hours(4), end, Int(3, 8),
               synced);
    PlanWithdrawals(target, China(12, 21));
  }
  // The legacy store keeps settling and withdrawing after the upgrade (R13).
  PlanWithdrawals(store, China(12, 20));
}

}  // namespace

std::string SimulatedStoreId(int i) { return absl::StrFormat("s%05d", i); }
std::string SimulatedUpgradeTargetId(int i) {
  return absl::StrFormat("s%05d-wx", i);
}

std::vector<SimulatedStep> PlanMigration(int stores, uint64_t seed) {
  std::vector<std::pair<absl::Time, SimulatedStep>> planned;
  for (int i = 1; i <= stores; ++i) {
    StorePlanner(i, seed, &planned).Plan();
  }
  // The platform runs ApplyPolicy at each cutoff, and once more (a no-op).
  const absl::Time policy_runs[] = {kEvoucherCutoff, kPhysicalCutoff,
                                    kPhysicalCutoff + absl::Hours(1)};
  int run = 0;
  for (absl::Time at : policy_runs) {
    auto& [time, step] = planned.emplace_back();
    time = at;
    step.command.set_command_id(
        absl::StrFormat("sim%d-policy-%d", seed, ++run));
    *step.command.mutable_occurred_at() = ToProto(at);
    step.command.mutable_apply_policy();
  }
  std::stable_sort(
      planned.begin(), planned.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<SimulatedStep> steps;
  steps.reserve(planned.size());
  for (auto& [time, step] : planned) steps.push_back(std::move(step));
  return steps;
}

bool SimulatedWithdrawals::NeedsBalance(const SimulatedStep& step) {
  return step.command.has_request_withdrawal() &&
         step.amount != SimulatedStep::Amount::kAsWritten;
}

std::optional<v1::Command> SimulatedWithdrawals::Next(const SimulatedStep& step,
                                                      int64_t available_fen) {
  v1::Command command = step.command;
  if (NeedsBalance(step)) {
    v1::RequestWithdrawal* request = command.mutable_request_withdrawal();
    if (step.amount == SimulatedStep::Amount::kTooMuch) {
      request->set_amount_fen(available_fen + 1);
    } else if (available_fen == 0) {
      // Nothing to withdraw: the merchant would not ask.
      skipped_.insert(request->withdrawal_id());
      return std::nullopt;
    } else {
      request->set_amount_fen(available_fen);
    }
  }
  if ((command.has_complete_withdrawal() &&
       skipped_.count(command.complete_withdrawal().withdrawal_id())) ||
      (command.has_fail_withdrawal() &&
       skipped_.count(command.fail_withdrawal().withdrawal_id()))) {
    return std::nullopt;
  }
  return command;
}

std::vector<v1::Command> PlanWrittenAhead(int stores, uint64_t seed) {
  std::vector<v1::Command> commands;
  for (SimulatedStep& step : PlanMigration(stores, seed)) {
    v1::Command& command = step.command;
    if (command.has_request_withdrawal()) {
      if (step.amount == SimulatedStep::Amount::kAll) {
        command.mutable_request_withdrawal()->set_amount_fen(kWithdrawAllFen);
      } else if (step.amount == SimulatedStep::Amount::kTooMuch) {
        command.mutable_request_withdrawal()->set_amount_fen(
            kWithdrawTooMuchFen);
      }
    }
    commands.push_back(std::move(command));
  }
  return commands;
}

}  // namespace storeledger
