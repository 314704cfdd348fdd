#include "tests/support/ledger_model.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace storeledger::testing {
namespace {

// The README's limits, restated: the model does not read core/limits.h.
constexpr size_t kModelIdBytesMax = 64;
constexpr int64_t kModelAmountFenMax = 1'000'000'000'000'000;  // 10^15
constexpr int64_t kModelQuantityMax = 1'000'000;
constexpr int kModelOrderLinesMax = 100;
constexpr int64_t kModelProductsPerStoreMax = 50'000;
constexpr size_t kModelEventsPerCommandMax = 100'000;

ModelVerdict Accept() { return {true, ""}; }
ModelVerdict Reject(std::string rule) { return {false, std::move(rule)}; }

absl::Time TimeOf(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

// R0: non-empty, at most 64 bytes, printable ASCII without spaces.
bool GoodId(const std::string& id) {
  if (id.empty() || id.size() > kModelIdBytesMax) return false;
  for (char ch : id) {
    if (ch < 0x21 || ch > 0x7E) return false;
  }
  return true;
}
bool GoodAmount(int64_t fen) { return fen >= 1 && fen <= kModelAmountFenMax; }
// A balance that `add` would push past what an int64 holds.
bool Overflows(int64_t balance, int64_t add) {
  int64_t sum;
  return __builtin_add_overflow(balance, add, &sum);
}

std::string StoreStreamName(const std::string& store) {
  return absl::StrCat("store/", store);
}
std::string MerchantStreamName(const std::string& merchant) {
  return absl::StrCat("merchant/", merchant);
}

// The rule that governs each verb.
const char* RuleOf(v1::Command::BodyCase body) {
  switch (body) {
    case v1::Command::kOpenStore:
      return "R1";
    case v1::Command::kAddProduct:
      return "R2";
    case v1::Command::kListProduct:
      return "R3";
    case v1::Command::kDelistProduct:
      return "R4";
    case v1::Command::kDeleteProduct:
      return "R5";
    case v1::Command::kApplyPolicy:
      return "R6";
    case v1::Command::kRegisterIndividualBusiness:
      return "R7";
    case v1::Command::kUpgradeStore:
      return "R8";
    case v1::Command::kSyncProducts:
      return "R9";
    case v1::Command::kPlaceOrder:
      return "R10";
    case v1::Command::kCancelOrder:
    case v1::Command::kPayOrder:
      return "R11";
    case v1::Command::kShipOrder:
    case v1::Command::kSettleOrder:
    case v1::Command::kRefundOrder:
      return "R12";
    case v1::Command::kRequestWithdrawal:
    case v1::Command::kCompleteWithdrawal:
    case v1::Command::kFailWithdrawal:
      return "R14";
    case v1::Command::kGrantCategoryQualification:
    case v1::Command::kPayDeposit:
      return "R15";
    case v1::Command::BODY_NOT_SET:
      break;
  }
  return "R0";
}

// Verbs that name an order or a withdrawal under a store (R13).
bool NamesOwnedRecord(v1::Command::BodyCase body) {
  switch (body) {
    case v1::Command::kCancelOrder:
    case v1::Command::kPayOrder:
    case v1::Command::kShipOrder:
    case v1::Command::kSettleOrder:
    case v1::Command::kRefundOrder:
    case v1::Command::kCompleteWithdrawal:
    case v1::Command::kFailWithdrawal:
      return true;
    default:
      return false;
  }
}

}  // namespace

LedgerModel::LedgerModel(v1::Policy policy) : policy_(std::move(policy)) {}

ModelVerdict LedgerModel::Apply(const v1::Command& c) {
  ModelVerdict verdict;
  const google::protobuf::Timestamp& ts = c.occurred_at();
  if (!GoodId(c.command_id()) || !c.has_occurred_at() ||
      ts.seconds() < -62135596800 || ts.seconds() > 253402300799 ||
      ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    verdict = Reject("R0");
  } else {
    at_ = TimeOf(ts);
    Streams streams;
    effects_ = false;
    verdict = Judge(c, &streams);
    for (const std::string& stream : streams) {
      auto last = stream_last_.find(stream);
      if (verdict.accepted && last != stream_last_.end() &&
          at_ < last->second) {
        verdict = Reject("R0");
      }
    }
    if (verdict.accepted) {
      effects_ = true;
      Streams applied;
      Judge(c, &applied);
      for (const std::string& stream : applied) stream_last_[stream] = at_;
    }
  }
  if (verdict.accepted) {
    ++rule_counts_["R0"].accepted;
    ++rule_counts_[RuleOf(c.body_case())].accepted;
    if (NamesOwnedRecord(c.body_case())) ++rule_counts_["R13"].accepted;
  } else {
    ++rule_counts_[verdict.rule].rejected;
  }
  return verdict;
}

ModelVerdict LedgerModel::Judge(const v1::Command& c, Streams* streams) {
  switch (c.body_case()) {
    case v1::Command::kOpenStore:
      return OpenStore(c.open_store(), streams);
    case v1::Command::kRegisterIndividualBusiness:
      return Register(c.register_individual_business(), streams);
    case v1::Command::kAddProduct:
      return AddProduct(c.add_product(), streams);
    case v1::Command::kListProduct:
      return ListProduct(c.list_product(), streams);
    case v1::Command::kDelistProduct:
      return DelistProduct(c.delist_product(), streams);
    case v1::Command::kDeleteProduct:
      return DeleteProduct(c.delete_product(), streams);
    case v1::Command::kApplyPolicy:
      return ApplyPolicy(streams);
    case v1::Command::kUpgradeStore:
      return Upgrade(c.upgrade_store(), streams);
    case v1::Command::kSyncProducts:
      return Sync(c.sync_products(), streams);
    case v1::Command::kGrantCategoryQualification:
      return Grant(c.grant_category_qualification(), streams);
    case v1::Command::kPayDeposit:
      return PayDeposit(c.pay_deposit(), streams);
    case v1::Command::kPlaceOrder:
      return PlaceOrder(c.place_order(), streams);
    case v1::Command::kCancelOrder:
      return Cancel(c.cancel_order(), streams);
    case v1::Command::kPayOrder:
      return Pay(c.pay_order(), streams);
    case v1::Command::kShipOrder:
      return Ship(c.ship_order(), streams);
    case v1::Command::kSettleOrder:
      return Settle(c.settle_order(), streams);
    case v1::Command::kRefundOrder:
      return Refund(c.refund_order(), streams);
    case v1::Command::kRequestWithdrawal:
      return RequestWithdrawal(c.request_withdrawal(), streams);
    case v1::Command::kCompleteWithdrawal:
      return FinishWithdrawal(c.complete_withdrawal().store_id(),
                              c.complete_withdrawal().withdrawal_id(), true,
                              streams);
    case v1::Command::kFailWithdrawal:
      return FinishWithdrawal(c.fail_withdrawal().store_id(),
                              c.fail_withdrawal().withdrawal_id(), false,
                              streams);
    case v1::Command::BODY_NOT_SET:
      break;
  }
  return Reject("R0");  // no body
}

bool LedgerModel::After(const google::protobuf::Timestamp& instant) const {
  return at_ >= TimeOf(instant);
}

// R6 as DESIGN.md says it: in a mini store, an e-voucher is delisted from
// MINI_EVOUCHER_CUTOFF and everything from MINI_PHYSICAL_CUTOFF, whether or
// not an event said so yet (a draft too: it can never be listed again).
v1::ProductStatus LedgerModel::Effective(const ModelStore& store,
                                         const ModelProduct& product) const {
  if (store.kind == v1::MINI_STORE &&
      (product.status == v1::DRAFT || product.status == v1::LISTED)) {
    if (product.kind == v1::E_VOUCHER && After(policy_.mini_evoucher_cutoff()))
      return v1::DELISTED;
    if (After(policy_.mini_physical_cutoff())) return v1::DELISTED;
  }
  return product.status;
}

int64_t LedgerModel::RequiredDeposit(const std::string& category) const {
  for (const v1::CategoryDeposit& deposit : policy_.category_deposits()) {
    if (deposit.category_id() == category) return deposit.amount_fen();
  }
  return policy_.default_category_deposit_fen();
}

ModelStore* LedgerModel::FindStore(const std::string& id) {
  auto it = stores_.find(id);
  return it == stores_.end() ? nullptr : &it->second;
}

ModelProduct* LedgerModel::FindProduct(const std::string& store,
                                       const std::string& id) {
  auto it = products_.find({store, id});
  return it == products_.end() ? nullptr : &it->second;
}

ModelVerdict LedgerModel::OpenStore(const v1::OpenStore& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.merchant_id()) ||
      !v1::StoreKind_IsValid(c.kind()) || c.kind() == 0 ||
      !v1::Subject_IsValid(c.subject()) || c.subject() == 0)
    return Reject("R0");
  if (FindStore(c.store_id())) return Reject("R1");
  if (c.kind() == v1::WECHAT_STORE) {
    if (!After(policy_.wechat_store_launch())) return Reject("R1");
    if (c.subject() == v1::PERSONAL && !policy_.personal_wechat_store())
      return Reject("R1");
  }
  auto merchant = merchants_.find(c.merchant_id());
  if (merchant != merchants_.end() && merchant->second != c.subject())
    return Reject("R1");
  streams->insert(StoreStreamName(c.store_id()));
  if (merchant == merchants_.end())
    streams->insert(MerchantStreamName(c.merchant_id()));
  if (!effects_) return Accept();
  merchants_[c.merchant_id()] = c.subject();
  ModelStore& opened = stores_[c.store_id()];
  opened.kind = c.kind();
  opened.merchant = c.merchant_id();
  return Accept();
}

ModelVerdict LedgerModel::Register(const v1::RegisterIndividualBusiness& c,
                                   Streams* streams) {
  if (!GoodId(c.merchant_id()) || !GoodId(c.license_number()))
    return Reject("R0");
  auto merchant = merchants_.find(c.merchant_id());
  if (merchant == merchants_.end()) return Reject("R7");
  if (merchant->second != v1::PERSONAL) return Reject("R7");
  streams->insert(MerchantStreamName(c.merchant_id()));
  if (!effects_) return Accept();
  merchant->second = v1::INDIVIDUAL_BUSINESS;
  return Accept();
}

ModelVerdict LedgerModel::AddProduct(const v1::AddProduct& c,
                                     Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.product_id()) ||
      !v1::ProductKind_IsValid(c.kind()) || c.kind() == 0 ||
      !v1::ProductOrigin_IsValid(c.origin()) || c.origin() == 0 ||
      !GoodId(c.category_id()) || !GoodAmount(c.price_fen()))
    return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  if (!store || !store->upgraded_to.empty()) return Reject("R2");
  if (store->kind == v1::MINI_STORE && After(policy_.mini_evoucher_cutoff()))
    return Reject("R2");
  if (store->kind == v1::CHANNELS_STORE &&
      After(policy_.channels_no_new_products()))
    return Reject("R2");
  if (FindProduct(c.store_id(), c.product_id())) return Reject("R2");
  if (store->products >= kModelProductsPerStoreMax) return Reject("R2");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  products_[{c.store_id(), c.product_id()}] = ModelProduct{
      c.kind(), c.origin(), c.category_id(), c.price_fen(), v1::DRAFT};
  ++store->products;
  return Accept();
}

ModelVerdict LedgerModel::ListProduct(const v1::ListProduct& c,
                                      Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.product_id())) return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  ModelProduct* product = FindProduct(c.store_id(), c.product_id());
  if (!store || !product || !store->upgraded_to.empty()) return Reject("R3");
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
    auto paid = store->deposit_by_category.find(product->category);
    if ((paid == store->deposit_by_category.end() ? 0 : paid->second) <
        RequiredDeposit(product->category))
      return Reject("R3");
  }
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  product->status = v1::LISTED;
  return Accept();
}

ModelVerdict LedgerModel::DelistProduct(const v1::DelistProduct& c,
                                        Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.product_id())) return Reject("R0");
  ModelProduct* product = FindProduct(c.store_id(), c.product_id());
  if (!FindStore(c.store_id()) || !product || product->status != v1::LISTED)
    return Reject("R4");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  product->status = v1::DELISTED;
  return Accept();
}

ModelVerdict LedgerModel::DeleteProduct(const v1::DeleteProduct& c,
                                        Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.product_id())) return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  ModelProduct* product = FindProduct(c.store_id(), c.product_id());
  if (!store || !product || product->status == v1::DELETED) return Reject("R5");
  // Delist first; a product past its cutoff (R6) counts as delisted.
  if (Effective(*store, *product) == v1::LISTED) return Reject("R5");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  product->status = v1::DELETED;
  return Accept();
}

// R6 cannot refuse: applyPolicy appends the forced delistings due by its
// time, or nothing. Only R0 refuses it (business time, the event limit).
ModelVerdict LedgerModel::ApplyPolicy(Streams* streams) {
  size_t delistings = 0;
  for (auto& [key, product] : products_) {
    const ModelStore& store = stores_.at(key.first);
    if (store.kind != v1::MINI_STORE || product.status != v1::LISTED) continue;
    if (Effective(store, product) != v1::DELISTED) continue;
    if (++delistings > kModelEventsPerCommandMax) return Reject("R0");
    streams->insert(StoreStreamName(key.first));
    if (effects_) {
      product.status = v1::DELISTED;
      ++policy_delistings_;
    }
  }
  return Accept();
}

ModelVerdict LedgerModel::Upgrade(const v1::UpgradeStore& c, Streams* streams) {
  if (!GoodId(c.source_store_id()) || !GoodId(c.target_store_id()))
    return Reject("R0");
  ModelStore* source = FindStore(c.source_store_id());
  if (!source || !source->upgraded_to.empty()) return Reject("R8");
  if (source->kind == v1::MINI_STORE && !After(policy_.mini_upgrade_open()))
    return Reject("R8");
  if (source->kind == v1::CHANNELS_STORE &&
      !After(policy_.wechat_store_launch()))
    return Reject("R8");
  if (source->kind != v1::MINI_STORE && source->kind != v1::CHANNELS_STORE)
    return Reject("R8");
  if (merchants_.at(source->merchant) == v1::PERSONAL) return Reject("R8");
  if (FindStore(c.target_store_id())) return Reject("R8");
  streams->insert(StoreStreamName(c.source_store_id()));
  streams->insert(StoreStreamName(c.target_store_id()));
  if (!effects_) return Accept();
  source->upgraded_to = c.target_store_id();
  ModelStore target;
  target.kind = v1::WECHAT_STORE;
  target.merchant = source->merchant;
  stores_[c.target_store_id()] = std::move(target);
  return Accept();
}

// R9: copies, as DRAFT under the same id, every OWN product of the source
// whose stored status is DRAFT or LISTED and effective status (R6) too, that
// the target does not hold yet.
ModelVerdict LedgerModel::Sync(const v1::SyncProducts& c, Streams* streams) {
  if (!GoodId(c.source_store_id()) || !GoodId(c.target_store_id()))
    return Reject("R0");
  ModelStore* source = FindStore(c.source_store_id());
  ModelStore* target = FindStore(c.target_store_id());
  if (!source || !target || source->upgraded_to != c.target_store_id())
    return Reject("R9");
  std::vector<std::pair<std::string, ModelProduct>> copies;
  for (const auto& [key, product] : products_) {
    if (key.first != c.source_store_id()) continue;
    if (product.origin != v1::OWN) continue;
    if (product.status != v1::DRAFT && product.status != v1::LISTED) continue;
    const v1::ProductStatus effective = Effective(*source, product);
    if (effective != v1::DRAFT && effective != v1::LISTED) continue;
    if (FindProduct(c.target_store_id(), key.second)) continue;
    if (target->products + static_cast<int64_t>(copies.size()) >=
        kModelProductsPerStoreMax)
      return Reject("R9");
    ModelProduct copy = product;
    copy.status = v1::DRAFT;
    copies.emplace_back(key.second, copy);
  }
  // R9 as amended: one ProductsSynced on the target's stream, even when
  // nothing is copied, so the sync takes part in R0's time order there.
  streams->insert(StoreStreamName(c.target_store_id()));
  if (!effects_) return Accept();
  for (auto& [id, copy] : copies) {
    products_[{c.target_store_id(), id}] = copy;
    ++target->products;
  }
  return Accept();
}

ModelVerdict LedgerModel::Grant(const v1::GrantCategoryQualification& c,
                                Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.category_id())) return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  if (!store || store->kind != v1::WECHAT_STORE) return Reject("R15");
  if (store->qualified.count(c.category_id())) return Reject("R15");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  store->qualified.insert(c.category_id());
  return Accept();
}

ModelVerdict LedgerModel::PayDeposit(const v1::PayDeposit& c,
                                     Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.category_id()) ||
      !GoodAmount(c.amount_fen()))
    return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  if (!store || store->kind != v1::WECHAT_STORE) return Reject("R15");
  if (Overflows(store->deposit, c.amount_fen())) return Reject("R0");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  store->deposit_by_category[c.category_id()] += c.amount_fen();
  store->deposit += c.amount_fen();
  return Accept();
}

ModelVerdict LedgerModel::PlaceOrder(const v1::PlaceOrder& c,
                                     Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id()) ||
      !v1::Channel_IsValid(c.channel()) || c.lines_size() < 1 ||
      c.lines_size() > kModelOrderLinesMax)
    return Reject("R0");
  int64_t total = 0;
  for (const v1::OrderLine& line : c.lines()) {
    if (!GoodId(line.product_id()) || line.quantity() < 1 ||
        line.quantity() > kModelQuantityMax ||
        !GoodAmount(line.unit_price_fen()))
      return Reject("R0");
    int64_t line_fen;
    if (__builtin_mul_overflow(line.quantity(), line.unit_price_fen(),
                               &line_fen) ||
        __builtin_add_overflow(total, line_fen, &total))
      return Reject("R0");
  }
  if (total > kModelAmountFenMax) return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  if (!store || orders_.count(c.order_id())) return Reject("R10");
  if (c.channel() == v1::LIVE_ROOM && store->kind == v1::CHANNELS_STORE &&
      After(policy_.channels_live_room_closed()))
    return Reject("R10");
  if (c.channel() == v1::OFFICIAL_ACCOUNT &&
      (store->kind != v1::WECHAT_STORE ||
       !After(policy_.official_account_sales())))
    return Reject("R10");
  // Every line's product must be effectively LISTED in this store.
  for (const v1::OrderLine& line : c.lines()) {
    const ModelProduct* product = FindProduct(c.store_id(), line.product_id());
    if (!product) return Reject("R10");
    if (Effective(*store, *product) != v1::LISTED) {
      if (product->status == v1::LISTED && !effects_) {
        ++orders_refused_by_cutoff_;
      }
      return Reject("R10");
    }
  }
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  orders_[c.order_id()] = ModelOrder{c.store_id(), v1::PLACED, total, 0, 0};
  return Accept();
}

ModelOrder* LedgerModel::FindOrder(const std::string& rule,
                                   const std::string& store,
                                   const std::string& id,
                                   ModelVerdict* refusal) {
  auto it = orders_.find(id);
  if (it == orders_.end()) {
    *refusal = Reject(rule);
    return nullptr;
  }
  if (it->second.store != store) {
    *refusal = Reject("R13");
    return nullptr;
  }
  return &it->second;
}

ModelVerdict LedgerModel::Cancel(const v1::CancelOrder& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id())) return Reject("R0");
  ModelVerdict refusal;
  ModelOrder* order = FindOrder("R11", c.store_id(), c.order_id(), &refusal);
  if (!order) return refusal;
  if (order->status != v1::PLACED) return Reject("R11");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  order->status = v1::CANCELLED;
  return Accept();
}

ModelVerdict LedgerModel::Pay(const v1::PayOrder& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id()) ||
      !GoodAmount(c.amount_fen()))
    return Reject("R0");
  ModelVerdict refusal;
  ModelOrder* order = FindOrder("R11", c.store_id(), c.order_id(), &refusal);
  if (!order) return refusal;
  if (order->status != v1::PLACED || c.amount_fen() != order->total)
    return Reject("R11");
  ModelStore& store = stores_.at(order->store);
  if (Overflows(store.pending, c.amount_fen())) return Reject("R0");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  order->status = v1::PAID;
  order->paid = c.amount_fen();
  store.pending += c.amount_fen();
  return Accept();
}

ModelVerdict LedgerModel::Ship(const v1::ShipOrder& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id())) return Reject("R0");
  ModelVerdict refusal;
  ModelOrder* order = FindOrder("R12", c.store_id(), c.order_id(), &refusal);
  if (!order) return refusal;
  if (order->status != v1::PAID) return Reject("R12");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  order->status = v1::SHIPPED;
  return Accept();
}

ModelVerdict LedgerModel::Settle(const v1::SettleOrder& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id()) ||
      c.commission_fen() < 0 || c.commission_fen() > kModelAmountFenMax)
    return Reject("R0");
  ModelVerdict refusal;
  ModelOrder* order = FindOrder("R12", c.store_id(), c.order_id(), &refusal);
  if (!order) return refusal;
  const int64_t gross = order->paid - order->refunded;
  if (order->status != v1::SHIPPED || c.commission_fen() > gross)
    return Reject("R12");
  ModelStore& store = stores_.at(order->store);
  if (Overflows(store.available, gross - c.commission_fen()))
    return Reject("R0");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  order->status = v1::SETTLED;
  store.pending -= gross;
  store.available += gross - c.commission_fen();
  return Accept();
}

ModelVerdict LedgerModel::Refund(const v1::RefundOrder& c, Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.order_id()) ||
      !GoodAmount(c.amount_fen()))
    return Reject("R0");
  ModelVerdict refusal;
  ModelOrder* order = FindOrder("R12", c.store_id(), c.order_id(), &refusal);
  if (!order) return refusal;
  if (order->status != v1::PAID && order->status != v1::SHIPPED &&
      order->status != v1::SETTLED)
    return Reject("R12");
  const int64_t refundable = order->paid - order->refunded;
  if (c.amount_fen() > refundable) return Reject("R12");
  ModelStore& store = stores_.at(order->store);
  // After settlement the money comes from available, which may be short.
  if (order->status == v1::SETTLED && store.available < c.amount_fen())
    return Reject("R12");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  if (order->status == v1::SETTLED) {
    store.available -= c.amount_fen();
  } else {
    store.pending -= c.amount_fen();
  }
  order->refunded += c.amount_fen();
  if (c.amount_fen() == refundable) order->status = v1::REFUNDED;
  return Accept();
}

ModelVerdict LedgerModel::RequestWithdrawal(const v1::RequestWithdrawal& c,
                                            Streams* streams) {
  if (!GoodId(c.store_id()) || !GoodId(c.withdrawal_id()) ||
      !GoodAmount(c.amount_fen()))
    return Reject("R0");
  ModelStore* store = FindStore(c.store_id());
  if (!store || withdrawals_.count(c.withdrawal_id())) return Reject("R14");
  if (c.amount_fen() > store->available) return Reject("R14");
  if (Overflows(store->withdrawing, c.amount_fen())) return Reject("R0");
  streams->insert(StoreStreamName(c.store_id()));
  if (!effects_) return Accept();
  store->available -= c.amount_fen();
  store->withdrawing += c.amount_fen();
  withdrawals_[c.withdrawal_id()] =
      ModelWithdrawal{c.store_id(), v1::WITHDRAWING, c.amount_fen()};
  return Accept();
}

ModelVerdict LedgerModel::FinishWithdrawal(const std::string& store_id,
                                           const std::string& id, bool complete,
                                           Streams* streams) {
  if (!GoodId(store_id) || !GoodId(id)) return Reject("R0");
  auto it = withdrawals_.find(id);
  if (it == withdrawals_.end()) return Reject("R14");
  if (it->second.store != store_id) return Reject("R13");
  if (it->second.status != v1::WITHDRAWING) return Reject("R14");
  ModelStore& store = stores_.at(store_id);
  if (Overflows(complete ? store.paid_out : store.available, it->second.amount))
    return Reject("R0");
  streams->insert(StoreStreamName(store_id));
  if (!effects_) return Accept();
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

std::vector<ModelPosting> ModelPostings(const v1::Event& event) {
  // `amount` from account `from` (credited) to `to` (debited), in store S.
  std::vector<ModelPosting> postings;
  auto move = [&postings](const std::string& store, const std::string& from,
                          const std::string& to, int64_t amount) {
    if (amount == 0) return;
    postings.push_back({store, to, amount, 0});
    postings.push_back({store, from, 0, amount});
  };
  switch (event.body_case()) {
    case v1::Event::kOrderPaid: {
      const v1::OrderPaid& e = event.order_paid();
      move(e.store_id(), "buyers", absl::StrCat(e.store_id(), "/pending"),
           e.amount_fen());
      break;
    }
    case v1::Event::kOrderSettled: {
      const v1::OrderSettled& e = event.order_settled();
      const std::string pending = absl::StrCat(e.store_id(), "/pending");
      move(e.store_id(), pending, absl::StrCat(e.store_id(), "/available"),
           e.net_fen());
      move(e.store_id(), pending, "platform/commission", e.commission_fen());
      break;
    }
    case v1::Event::kOrderRefunded: {
      const v1::OrderRefunded& e = event.order_refunded();
      move(e.store_id(),
           absl::StrCat(e.store_id(), e.source() == v1::FROM_AVAILABLE
                                          ? "/available"
                                          : "/pending"),
           "buyers", e.amount_fen());
      break;
    }
    case v1::Event::kWithdrawalRequested: {
      const v1::WithdrawalRequested& e = event.withdrawal_requested();
      move(e.store_id(), absl::StrCat(e.store_id(), "/available"),
           absl::StrCat(e.store_id(), "/withdrawing"), e.amount_fen());
      break;
    }
    case v1::Event::kWithdrawalCompleted: {
      const v1::WithdrawalCompleted& e = event.withdrawal_completed();
      move(e.store_id(), absl::StrCat(e.store_id(), "/withdrawing"),
           absl::StrCat("payouts/", e.store_id()), e.amount_fen());
      break;
    }
    case v1::Event::kWithdrawalFailed: {
      const v1::WithdrawalFailed& e = event.withdrawal_failed();
      move(e.store_id(), absl::StrCat(e.store_id(), "/withdrawing"),
           absl::StrCat(e.store_id(), "/available"), e.amount_fen());
      break;
    }
    case v1::Event::kDepositPaid: {
      const v1::DepositPaid& e = event.deposit_paid();
      move(e.store_id(), absl::StrCat("merchant_bank/", e.store_id()),
           absl::StrCat(e.store_id(), "/deposit/", e.category_id()),
           e.amount_fen());
      break;
    }
    default:
      break;
  }
  return postings;
}

}  // namespace storeledger::testing
