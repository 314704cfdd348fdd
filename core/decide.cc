// The rules R0–R15 (DESIGN.md §1).
//
// Inside this file a rejection travels as a non-ok absl::Status carrying a
// payload (the rule and the RejectionCode), so that shape checks, state reads
// and rule checks can all use RETURN_IF_ERROR / ASSIGN_OR_RETURN. Decide()
// turns such a status into a rejected Decision; any other non-ok status is an
// error of the StateReader and is returned as is.
#include "core/decide.h"

#include <algorithm>
#include <iterator>
#include <set>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "core/evolve.h"
#include "core/limits.h"
#include "core/money.h"
#include "core/streams.h"
#include "google/protobuf/descriptor.h"

namespace storeledger {
namespace {

using v1::ProductStatus;

constexpr char kRejectionPayloadUrl[] =
    "type.storeledger.dev/storeledger.core.Rejection";

// A rejection of `command` by `rule`, as a status (see the file comment).
absl::Status Reject(Rule rule, RejectionCode code, std::string message) {
  absl::Status status(absl::StatusCode::kFailedPrecondition, message);
  status.SetPayload(
      kRejectionPayloadUrl,
      absl::Cord(absl::StrCat(RuleName(rule), ":", static_cast<int>(code))));
  return status;
}

absl::Status ShapeError(std::string message) {
  return Reject(Rule::kShape, v1::INVALID_ARGUMENT, std::move(message));
}

// Instants are shown in China time, as the article and the policy state them.
std::string ShowTime(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t,
                          absl::FixedTimeZone(8 * 60 * 60));
}

std::string EnumName(const google::protobuf::EnumDescriptor* descriptor,
                     int value) {
  const google::protobuf::EnumValueDescriptor* v =
      descriptor->FindValueByNumber(value);
  return v != nullptr ? v->name() : absl::StrCat(value);
}
std::string Name(v1::StoreKind v) {
  return EnumName(v1::StoreKind_descriptor(), v);
}
std::string Name(v1::Subject v) {
  return EnumName(v1::Subject_descriptor(), v);
}
std::string Name(v1::ProductStatus v) {
  return EnumName(v1::ProductStatus_descriptor(), v);
}
std::string Name(v1::OrderStatus v) {
  return EnumName(v1::OrderStatus_descriptor(), v);
}
std::string Name(v1::WithdrawalStatus v) {
  return EnumName(v1::WithdrawalStatus_descriptor(), v);
}

// ------------------------------------------------------------ R0 shape checks

absl::Status CheckId(absl::string_view field, absl::string_view value) {
  const IdCheck check = CheckIdBytes(value);
  switch (check.problem) {
    case IdCheck::kValid:
      return absl::OkStatus();
    case IdCheck::kEmpty:
      return ShapeError(absl::StrCat(field, " must not be empty"));
    case IdCheck::kTooLong:
      return ShapeError(absl::StrCat(field, " must be at most ", kIdBytesMax,
                                     " bytes, got ", value.size()));
    case IdCheck::kBadByte:
      return ShapeError(absl::StrFormat(
          "%s must be printable ASCII without spaces (0x21..0x7E), got byte "
          "0x%02X at offset %d",
          field, static_cast<unsigned char>(value[check.bad_byte_offset]),
          check.bad_byte_offset));
  }
  return absl::OkStatus();
}

// An amount in 1..kAmountFenMax.
absl::Status CheckAmount(absl::string_view field, int64_t value) {
  if (value <= 0) {
    return ShapeError(absl::StrCat(field, " must be > 0, got ", value));
  }
  if (value > kAmountFenMax) {
    return ShapeError(
        absl::StrCat(field, " must be <= ", kAmountFenMax, ", got ", value));
  }
  return absl::OkStatus();
}

// An enum value that the schema knows; `zero_allowed` is false for the
// *_UNSPECIFIED enums, whose zero means "missing".
absl::Status CheckEnum(absl::string_view field,
                       const google::protobuf::EnumDescriptor* descriptor,
                       int value, bool zero_allowed) {
  const google::protobuf::EnumValueDescriptor* known =
      descriptor->FindValueByNumber(value);
  if (known != nullptr && (zero_allowed || value != 0)) return absl::OkStatus();
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->value_count(); ++i) {
    if (!zero_allowed && descriptor->value(i)->number() == 0) continue;
    names.push_back(descriptor->value(i)->name());
  }
  return ShapeError(absl::StrCat(field, " must be one of ",
                                 absl::StrJoin(names, ", "), ", got ",
                                 EnumName(descriptor, value)));
}

// ------------------------------------------------------------ context

struct Context {
  const Command& command;
  absl::Time at;
  const StateReader& state;
  const Policy& policy;
  Decision* decision;

  void Emit(std::string stream_id, Event event) {
    decision->events.push_back({std::move(stream_id), std::move(event)});
  }
  std::string At() const { return ShowTime(at); }
};

// A refusal about to name `store_id`, a store the command does not name (the
// store an order or withdrawal belongs to): it joins the decision's
// store_ids, so that every store a refusal names is listed there.
void NameStore(const Context& c, const std::string& store_id) {
  std::vector<std::string>& ids = c.decision->store_ids;
  if (std::find(ids.begin(), ids.end(), store_id) == ids.end()) {
    ids.push_back(store_id);
  }
}

// "occurredAt 2024-… is before NAME (2024-…)" for rules bound to an instant.
std::string BeforeInstant(const Context& c, absl::string_view name,
                          const google::protobuf::Timestamp& instant) {
  return absl::StrCat("occurredAt ", c.At(), " is before ", name, " (",
                      ShowTime(ToTime(instant)), ")");
}
std::string FromInstant(const Context& c, absl::string_view name,
                        const google::protobuf::Timestamp& instant) {
  return absl::StrCat("from ", name, " (", ShowTime(ToTime(instant)),
                      "); occurredAt is ", c.At());
}
bool AtOrAfter(const Context& c, const google::protobuf::Timestamp& instant) {
  return c.at >= ToTime(instant);
}

absl::StatusOr<RecordRef<StoreRecord>> RequireStore(
    const Context& c, Rule rule, absl::string_view store_id) {
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, c.state.Store(store_id));
  if (!store) {
    return Reject(rule, v1::NOT_FOUND,
                  absl::StrCat("store ", store_id, " not found"));
  }
  return store;
}

absl::StatusOr<RecordRef<ProductRecord>> RequireProduct(
    const Context& c, Rule rule, absl::string_view store_id,
    absl::string_view product_id) {
  ASSIGN_OR_RETURN(RecordRef<ProductRecord> product,
                   c.state.Product(store_id, product_id));
  if (!product) {
    return Reject(
        rule, v1::NOT_FOUND,
        absl::StrCat("product ", product_id, " not found in store ", store_id));
  }
  return product;
}

// The order `order_id`, which must live in `store_id` (R13).
absl::StatusOr<RecordRef<OrderRecord>> RequireOrder(
    const Context& c, Rule rule, absl::string_view store_id,
    absl::string_view order_id) {
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> order, c.state.Order(order_id));
  if (!order) {
    return Reject(rule, v1::NOT_FOUND,
                  absl::StrCat("order ", order_id, " not found"));
  }
  if (order->store_id() != store_id) {
    NameStore(c, order->store_id());
    return Reject(Rule::kOwnStore, v1::FAILED_PRECONDITION,
                  absl::StrCat("order ", order_id, " belongs to store ",
                               order->store_id(), ", not ", store_id));
  }
  return order;
}

absl::StatusOr<RecordRef<WithdrawalRecord>> RequireWithdrawal(
    const Context& c, absl::string_view store_id,
    absl::string_view withdrawal_id) {
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> withdrawal,
                   c.state.Withdrawal(withdrawal_id));
  if (!withdrawal) {
    return Reject(Rule::kWithdrawal, v1::NOT_FOUND,
                  absl::StrCat("withdrawal ", withdrawal_id, " not found"));
  }
  if (withdrawal->store_id() != store_id) {
    NameStore(c, withdrawal->store_id());
    return Reject(
        Rule::kOwnStore, v1::FAILED_PRECONDITION,
        absl::StrCat("withdrawal ", withdrawal_id, " belongs to store ",
                     withdrawal->store_id(), ", not ", store_id));
  }
  return withdrawal;
}

absl::Status RequireNotUpgraded(Rule rule, const StoreRecord& store,
                                absl::string_view what) {
  if (store.status() == v1::UPGRADED) {
    return Reject(rule, v1::FAILED_PRECONDITION,
                  absl::StrCat("store ", store.store_id(), " was upgraded to ",
                               store.upgraded_to(), "; ", what));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ R1 open store

absl::Status DecideOpenStore(Context& c) {
  const v1::OpenStore& cmd = c.command.open_store();
  RETURN_IF_ERROR(CheckId("openStore.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("openStore.merchantId", cmd.merchant_id()));
  RETURN_IF_ERROR(CheckEnum("openStore.kind", v1::StoreKind_descriptor(),
                            cmd.kind(), false));
  RETURN_IF_ERROR(CheckEnum("openStore.subject", v1::Subject_descriptor(),
                            cmd.subject(), false));

  ASSIGN_OR_RETURN(RecordRef<StoreRecord> existing,
                   c.state.Store(cmd.store_id()));
  if (existing) {
    return Reject(Rule::kOpenStore, v1::ALREADY_EXISTS,
                  absl::StrCat("store ", cmd.store_id(), " already exists"));
  }
  if (cmd.kind() == v1::WECHAT_STORE) {
    if (!AtOrAfter(c, c.policy.wechat_store_launch())) {
      return Reject(Rule::kOpenStore, v1::FAILED_PRECONDITION,
                    absl::StrCat("WECHAT_STORE stores open ",
                                 FromInstant(c, "WECHAT_STORE_LAUNCH",
                                             c.policy.wechat_store_launch())));
    }
    if (cmd.subject() == v1::PERSONAL && !c.policy.personal_wechat_store()) {
      return Reject(
          Rule::kOpenStore, v1::FAILED_PRECONDITION,
          absl::StrCat("a PERSONAL merchant cannot open a WECHAT_STORE "
                       "(policy personal_wechat_store is off); merchant ",
                       cmd.merchant_id(),
                       " must register as an individual business first"));
    }
  }
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant,
                   c.state.Merchant(cmd.merchant_id()));
  if (merchant && merchant->subject() != cmd.subject()) {
    return Reject(
        Rule::kOpenStore, v1::FAILED_PRECONDITION,
        absl::StrCat("openStore.subject must be merchant ", cmd.merchant_id(),
                     "'s subject ", Name(merchant->subject()), ", got ",
                     Name(cmd.subject())));
  }
  Event opened;
  v1::StoreOpened* e = opened.mutable_store_opened();
  e->set_store_id(cmd.store_id());
  e->set_merchant_id(cmd.merchant_id());
  e->set_kind(cmd.kind());
  e->set_subject(cmd.subject());
  if (merchant) e->set_license_number(merchant->license_number());
  c.Emit(StoreStream(cmd.store_id()), std::move(opened));
  if (!merchant) {
    Event onboarded;
    v1::MerchantOnboarded* m = onboarded.mutable_merchant_onboarded();
    m->set_merchant_id(cmd.merchant_id());
    m->set_subject(cmd.subject());
    m->set_first_store_id(cmd.store_id());
    c.Emit(MerchantStream(cmd.merchant_id()), std::move(onboarded));
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ R7

absl::Status DecideRegisterIndividualBusiness(Context& c) {
  const v1::RegisterIndividualBusiness& cmd =
      c.command.register_individual_business();
  RETURN_IF_ERROR(
      CheckId("registerIndividualBusiness.merchantId", cmd.merchant_id()));
  RETURN_IF_ERROR(CheckId("registerIndividualBusiness.licenseNumber",
                          cmd.license_number()));
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant,
                   c.state.Merchant(cmd.merchant_id()));
  if (!merchant) {
    return Reject(Rule::kRegisterBusiness, v1::NOT_FOUND,
                  absl::StrCat("merchant ", cmd.merchant_id(), " not found"));
  }
  if (merchant->subject() != v1::PERSONAL) {
    return Reject(Rule::kRegisterBusiness, v1::FAILED_PRECONDITION,
                  absl::StrCat("merchant ", cmd.merchant_id(), " is ",
                               Name(merchant->subject()),
                               "; only a PERSONAL merchant registers as an "
                               "individual business"));
  }
  Event event;
  v1::IndividualBusinessRegistered* e =
      event.mutable_individual_business_registered();
  e->set_merchant_id(cmd.merchant_id());
  e->set_license_number(cmd.license_number());
  e->set_previous_subject(merchant->subject());
  c.Emit(MerchantStream(cmd.merchant_id()), std::move(event));
  return absl::OkStatus();
}

// ------------------------------------------------------------ R2–R5 products

absl::Status DecideAddProduct(Context& c) {
  const v1::AddProduct& cmd = c.command.add_product();
  RETURN_IF_ERROR(CheckId("addProduct.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("addProduct.productId", cmd.product_id()));
  RETURN_IF_ERROR(CheckEnum("addProduct.kind", v1::ProductKind_descriptor(),
                            cmd.kind(), false));
  RETURN_IF_ERROR(CheckEnum("addProduct.origin", v1::ProductOrigin_descriptor(),
                            cmd.origin(), false));
  RETURN_IF_ERROR(CheckId("addProduct.categoryId", cmd.category_id()));
  RETURN_IF_ERROR(CheckAmount("addProduct.priceFen", cmd.price_fen()));

  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kAddProduct, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  RETURN_IF_ERROR(
      RequireNotUpgraded(Rule::kAddProduct, store, "it adds no products"));
  if (store.kind() == v1::MINI_STORE &&
      AtOrAfter(c, c.policy.mini_evoucher_cutoff())) {
    return Reject(
        Rule::kAddProduct, v1::FAILED_PRECONDITION,
        absl::StrCat("MINI_STORE ", store.store_id(), " adds no products ",
                     FromInstant(c, "MINI_EVOUCHER_CUTOFF",
                                 c.policy.mini_evoucher_cutoff())));
  }
  if (store.kind() == v1::CHANNELS_STORE &&
      AtOrAfter(c, c.policy.channels_no_new_products())) {
    return Reject(
        Rule::kAddProduct, v1::FAILED_PRECONDITION,
        absl::StrCat("CHANNELS_STORE ", store.store_id(), " adds no products ",
                     FromInstant(c, "CHANNELS_NO_NEW_PRODUCTS",
                                 c.policy.channels_no_new_products())));
  }
  ASSIGN_OR_RETURN(RecordRef<ProductRecord> existing,
                   c.state.Product(cmd.store_id(), cmd.product_id()));
  if (existing) {
    return Reject(Rule::kAddProduct, v1::ALREADY_EXISTS,
                  absl::StrCat("product ", cmd.product_id(),
                               " already exists in store ", cmd.store_id()));
  }
  if (static_cast<size_t>(store.product_count()) >= kProductsPerStoreMax) {
    return Reject(
        Rule::kAddProduct, v1::FAILED_PRECONDITION,
        absl::StrCat("store ", cmd.store_id(), " already holds ",
                     store.product_count(), " products, the maximum is ",
                     kProductsPerStoreMax));
  }
  Event event;
  v1::ProductAdded* e = event.mutable_product_added();
  e->set_store_id(cmd.store_id());
  e->set_product_id(cmd.product_id());
  e->set_kind(cmd.kind());
  e->set_origin(cmd.origin());
  e->set_category_id(cmd.category_id());
  e->set_price_fen(cmd.price_fen());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideListProduct(Context& c) {
  const v1::ListProduct& cmd = c.command.list_product();
  RETURN_IF_ERROR(CheckId("listProduct.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("listProduct.productId", cmd.product_id()));

  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kListProduct, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  ASSIGN_OR_RETURN(
      const RecordRef<ProductRecord> product_ref,
      RequireProduct(c, Rule::kListProduct, cmd.store_id(), cmd.product_id()));
  const ProductRecord& product = *product_ref;
  RETURN_IF_ERROR(
      RequireNotUpgraded(Rule::kListProduct, store, "it lists no products"));
  if (product.status() != v1::DRAFT && product.status() != v1::DELISTED) {
    return Reject(Rule::kListProduct, v1::FAILED_PRECONDITION,
                  absl::StrCat("product ", cmd.product_id(), " in store ",
                               cmd.store_id(), " is ", Name(product.status()),
                               "; only a DRAFT or DELISTED product is listed"));
  }
  switch (store.kind()) {
    case v1::MINI_STORE:
      if (product.kind() == v1::E_VOUCHER &&
          AtOrAfter(c, c.policy.mini_evoucher_cutoff())) {
        return Reject(
            Rule::kListProduct, v1::FAILED_PRECONDITION,
            absl::StrCat("MINI_STORE ", store.store_id(),
                         " lists no E_VOUCHER product ",
                         FromInstant(c, "MINI_EVOUCHER_CUTOFF",
                                     c.policy.mini_evoucher_cutoff())));
      }
      if (AtOrAfter(c, c.policy.mini_physical_cutoff())) {
        return Reject(
            Rule::kListProduct, v1::FAILED_PRECONDITION,
            absl::StrCat("MINI_STORE ", store.store_id(), " lists no product ",
                         FromInstant(c, "MINI_PHYSICAL_CUTOFF",
                                     c.policy.mini_physical_cutoff())));
      }
      break;
    case v1::CHANNELS_STORE:
      if (cmd.live_room() &&
          AtOrAfter(c, c.policy.channels_live_room_closed())) {
        return Reject(
            Rule::kListProduct, v1::FAILED_PRECONDITION,
            absl::StrCat("CHANNELS_STORE ", store.store_id(),
                         " lists nothing into live rooms ",
                         FromInstant(c, "CHANNELS_LIVE_ROOM_CLOSED",
                                     c.policy.channels_live_room_closed())));
      }
      break;
    case v1::WECHAT_STORE: {
      const std::string& category = product.category_id();
      bool qualified = false;
      for (const std::string& q : store.qualified_categories()) {
        qualified = qualified || q == category;
      }
      if (!qualified) {
        return Reject(
            Rule::kListProduct, v1::FAILED_PRECONDITION,
            absl::StrCat("category ", category, " of product ",
                         cmd.product_id(), " is not qualified in store ",
                         store.store_id(),
                         " (grantCategoryQualification first)"));
      }
      const int64_t required = RequiredDepositFen(c.policy, category);
      auto it = store.deposit_fen_by_category().find(category);
      const int64_t paid =
          it == store.deposit_fen_by_category().end() ? 0 : it->second;
      if (paid < required) {
        return Reject(
            Rule::kListProduct, v1::FAILED_PRECONDITION,
            absl::StrCat("deposit for category ", category, " in store ",
                         store.store_id(), " is ", paid,
                         " fen; the policy requires ", required, " fen"));
      }
      break;
    }
    default:
      break;
  }
  Event event;
  v1::ProductListed* e = event.mutable_product_listed();
  e->set_store_id(cmd.store_id());
  e->set_product_id(cmd.product_id());
  e->set_live_room(cmd.live_room());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideDelistProduct(Context& c) {
  const v1::DelistProduct& cmd = c.command.delist_product();
  RETURN_IF_ERROR(CheckId("delistProduct.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("delistProduct.productId", cmd.product_id()));
  RETURN_IF_ERROR(
      RequireStore(c, Rule::kDelistProduct, cmd.store_id()).status());
  ASSIGN_OR_RETURN(const RecordRef<ProductRecord> product_ref,
                   RequireProduct(c, Rule::kDelistProduct, cmd.store_id(),
                                  cmd.product_id()));
  const ProductRecord& product = *product_ref;
  if (product.status() != v1::LISTED) {
    return Reject(
        Rule::kDelistProduct, v1::FAILED_PRECONDITION,
        absl::StrCat("product ", cmd.product_id(), " in store ", cmd.store_id(),
                     " is ", Name(product.status()), ", not LISTED"));
  }
  Event event;
  v1::ProductDelisted* e = event.mutable_product_delisted();
  e->set_store_id(cmd.store_id());
  e->set_product_id(cmd.product_id());
  e->set_reason(v1::MERCHANT);
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideDeleteProduct(Context& c) {
  const v1::DeleteProduct& cmd = c.command.delete_product();
  RETURN_IF_ERROR(CheckId("deleteProduct.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("deleteProduct.productId", cmd.product_id()));
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kDeleteProduct, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  ASSIGN_OR_RETURN(const RecordRef<ProductRecord> product_ref,
                   RequireProduct(c, Rule::kDeleteProduct, cmd.store_id(),
                                  cmd.product_id()));
  const ProductRecord& product = *product_ref;
  if (product.status() == v1::DELETED) {
    return Reject(Rule::kDeleteProduct, v1::FAILED_PRECONDITION,
                  absl::StrCat("product ", cmd.product_id(), " in store ",
                               cmd.store_id(), " is already DELETED"));
  }
  // A product the policy has taken off the shelf (R6) counts as delisted.
  if (EffectiveStatus(product, store.kind(), c.at, c.policy) == v1::LISTED) {
    return Reject(
        Rule::kDeleteProduct, v1::FAILED_PRECONDITION,
        absl::StrCat("product ", cmd.product_id(), " in store ", cmd.store_id(),
                     " is LISTED; delist it before deleting"));
  }
  Event event;
  v1::ProductDeleted* e = event.mutable_product_deleted();
  e->set_store_id(cmd.store_id());
  e->set_product_id(cmd.product_id());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

// ------------------------------------------------------------ R6

// Only stored-LISTED products get a ProductDelisted: a DRAFT product is on no
// shelf, so there is nothing to take off; its effective status (R6) is
// DELISTED all the same, and R3 refuses to list it.
absl::Status DecideApplyPolicy(Context& c) {
  const absl::Time evoucher_cutoff = ToTime(c.policy.mini_evoucher_cutoff());
  const absl::Time physical_cutoff = ToTime(c.policy.mini_physical_cutoff());
  if (c.at < evoucher_cutoff && c.at < physical_cutoff) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::vector<std::string> store_ids,
                   c.state.StoreIds(v1::MINI_STORE));
  for (const std::string& store_id : store_ids) {
    ASSIGN_OR_RETURN(std::vector<ProductRecord> products,
                     c.state.Products(store_id));
    for (const ProductRecord& product : products) {
      if (product.status() != v1::LISTED) continue;
      v1::DelistReason reason;
      absl::Time effective_at;
      if (product.kind() == v1::E_VOUCHER && c.at >= evoucher_cutoff) {
        reason = v1::POLICY_EVOUCHER_CUTOFF;
        effective_at = evoucher_cutoff;
      } else if (c.at >= physical_cutoff) {
        reason = v1::POLICY_PHYSICAL_CUTOFF;
        effective_at = physical_cutoff;
      } else {
        continue;
      }
      if (c.decision->events.size() >= kEventsPerCommandMax) {
        return Reject(Rule::kShape, v1::FAILED_PRECONDITION,
                      absl::StrCat("applyPolicy would append more than ",
                                   kEventsPerCommandMax, " events"));
      }
      Event event;
      v1::ProductDelisted* e = event.mutable_product_delisted();
      e->set_store_id(store_id);
      e->set_product_id(product.product_id());
      e->set_reason(reason);
      *e->mutable_effective_at() = ToProto(effective_at);
      c.Emit(StoreStream(store_id), std::move(event));
    }
  }
  return absl::OkStatus();
}

// ------------------------------------------------------------ R8, R9

absl::Status DecideUpgradeStore(Context& c) {
  const v1::UpgradeStore& cmd = c.command.upgrade_store();
  RETURN_IF_ERROR(CheckId("upgradeStore.sourceStoreId", cmd.source_store_id()));
  RETURN_IF_ERROR(CheckId("upgradeStore.targetStoreId", cmd.target_store_id()));

  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> source_ref,
                   RequireStore(c, Rule::kUpgrade, cmd.source_store_id()));
  const StoreRecord& source = *source_ref;
  if (source.status() == v1::UPGRADED) {
    return Reject(
        Rule::kUpgrade, v1::FAILED_PRECONDITION,
        absl::StrCat("store ", source.store_id(), " was already upgraded to ",
                     source.upgraded_to()));
  }
  switch (source.kind()) {
    case v1::MINI_STORE:
      if (!AtOrAfter(c, c.policy.mini_upgrade_open())) {
        return Reject(
            Rule::kUpgrade, v1::FAILED_PRECONDITION,
            absl::StrCat("MINI_STORE ", source.store_id(),
                         " cannot upgrade yet: ",
                         BeforeInstant(c, "MINI_UPGRADE_OPEN",
                                       c.policy.mini_upgrade_open())));
      }
      break;
    case v1::CHANNELS_STORE:
      if (!AtOrAfter(c, c.policy.wechat_store_launch())) {
        return Reject(
            Rule::kUpgrade, v1::FAILED_PRECONDITION,
            absl::StrCat("CHANNELS_STORE ", source.store_id(),
                         " cannot upgrade yet: ",
                         BeforeInstant(c, "WECHAT_STORE_LAUNCH",
                                       c.policy.wechat_store_launch())));
      }
      break;
    default:
      return Reject(Rule::kUpgrade, v1::FAILED_PRECONDITION,
                    absl::StrCat("store ", source.store_id(), " is a ",
                                 Name(source.kind()),
                                 "; only MINI_STORE and CHANNELS_STORE "
                                 "stores upgrade"));
  }
  ASSIGN_OR_RETURN(RecordRef<MerchantRecord> merchant,
                   c.state.Merchant(source.merchant_id()));
  if (!merchant) {
    return Reject(Rule::kUpgrade, v1::NOT_FOUND,
                  absl::StrCat("merchant ", source.merchant_id(), " of store ",
                               source.store_id(), " not found"));
  }
  if (merchant->subject() == v1::PERSONAL) {
    return Reject(Rule::kUpgrade, v1::FAILED_PRECONDITION,
                  absl::StrCat("merchant ", merchant->merchant_id(),
                               " is PERSONAL and cannot upgrade store ",
                               source.store_id(),
                               "; register as an individual business first "
                               "(registerIndividualBusiness)"));
  }
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> target,
                   c.state.Store(cmd.target_store_id()));
  if (target) {
    return Reject(
        Rule::kUpgrade, v1::ALREADY_EXISTS,
        absl::StrCat("store ", cmd.target_store_id(), " already exists"));
  }
  Event upgraded;
  v1::StoreUpgraded* u = upgraded.mutable_store_upgraded();
  u->set_store_id(source.store_id());
  u->set_target_store_id(cmd.target_store_id());
  c.Emit(StoreStream(source.store_id()), std::move(upgraded));
  Event opened;
  v1::StoreOpened* o = opened.mutable_store_opened();
  o->set_store_id(cmd.target_store_id());
  o->set_merchant_id(merchant->merchant_id());
  o->set_kind(v1::WECHAT_STORE);
  o->set_subject(merchant->subject());
  o->set_upgraded_from(source.store_id());
  o->set_license_number(merchant->license_number());
  c.Emit(StoreStream(cmd.target_store_id()), std::move(opened));
  return absl::OkStatus();
}

absl::Status DecideSyncProducts(Context& c) {
  const v1::SyncProducts& cmd = c.command.sync_products();
  RETURN_IF_ERROR(CheckId("syncProducts.sourceStoreId", cmd.source_store_id()));
  RETURN_IF_ERROR(CheckId("syncProducts.targetStoreId", cmd.target_store_id()));
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> source_ref,
                   RequireStore(c, Rule::kSync, cmd.source_store_id()));
  const StoreRecord& source = *source_ref;
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> target_ref,
                   RequireStore(c, Rule::kSync, cmd.target_store_id()));
  const StoreRecord& target = *target_ref;
  if (source.upgraded_to() != target.store_id()) {
    return Reject(Rule::kSync, v1::FAILED_PRECONDITION,
                  absl::StrCat("store ", source.store_id(),
                               " was not upgraded into ", target.store_id(),
                               source.upgraded_to().empty()
                                   ? std::string(" (it is not upgraded)")
                                   : absl::StrCat(" (it upgraded into ",
                                                  source.upgraded_to(), ")")));
  }
  ASSIGN_OR_RETURN(std::vector<ProductRecord> source_products,
                   c.state.Products(source.store_id()));
  ASSIGN_OR_RETURN(std::vector<ProductRecord> target_products,
                   c.state.Products(target.store_id()));
  std::map<std::string, const ProductRecord*> in_target;
  for (const ProductRecord& p : target_products) in_target[p.product_id()] = &p;

  size_t target_count = target_products.size();
  for (const ProductRecord& product : source_products) {  // sorted by id
    const ProductStatus effective =
        EffectiveStatus(product, source.kind(), c.at, c.policy);
    std::string skip;
    auto found = in_target.find(product.product_id());
    if (product.origin() != v1::OWN) {
      skip = "third-party product";
    } else if (product.status() == v1::DELETED) {
      skip = "deleted";
    } else if (product.status() == v1::DELISTED) {
      skip = "delisted";
    } else if (effective != v1::DRAFT && effective != v1::LISTED) {
      skip = "delisted by policy";
    } else if (found != in_target.end()) {
      skip = found->second->synced_from() == source.store_id()
                 ? "already synced"
                 : "product id already used in the target store";
    }
    if (!skip.empty()) {
      v1::SyncSkip s;
      s.set_product_id(product.product_id());
      s.set_reason(std::move(skip));
      c.decision->skipped.push_back(std::move(s));
      continue;
    }
    if (target_count >= kProductsPerStoreMax) {
      return Reject(
          Rule::kSync, v1::FAILED_PRECONDITION,
          absl::StrCat("syncing into store ", target.store_id(),
                       " would exceed ", kProductsPerStoreMax, " products"));
    }
    ++target_count;
    Event event;
    v1::ProductAdded* e = event.mutable_product_added();
    e->set_store_id(target.store_id());
    e->set_product_id(product.product_id());
    e->set_kind(product.kind());
    e->set_origin(product.origin());
    e->set_category_id(product.category_id());
    e->set_price_fen(product.price_fen());
    e->set_synced_from(source.store_id());
    c.Emit(StoreStream(target.store_id()), std::move(event));
    c.decision->synced_product_ids.push_back(product.product_id());
  }
  // The outcome, copies or not, is a fact of the target's history (R9).
  Event synced;
  v1::ProductsSynced* outcome = synced.mutable_products_synced();
  outcome->set_store_id(target.store_id());
  outcome->set_source_store_id(source.store_id());
  *outcome->mutable_copied_product_ids() = {
      c.decision->synced_product_ids.begin(),
      c.decision->synced_product_ids.end()};
  *outcome->mutable_skipped() = {c.decision->skipped.begin(),
                                 c.decision->skipped.end()};
  c.Emit(StoreStream(target.store_id()), std::move(synced));
  return absl::OkStatus();
}

// ------------------------------------------------------------ R15

absl::StatusOr<RecordRef<StoreRecord>> RequireWeChatStore(
    const Context& c, absl::string_view store_id, absl::string_view what) {
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kWeChatStoreCategory, store_id));
  const StoreRecord& store = *store_ref;
  if (store.kind() != v1::WECHAT_STORE) {
    return Reject(Rule::kWeChatStoreCategory, v1::FAILED_PRECONDITION,
                  absl::StrCat("store ", store_id, " is a ", Name(store.kind()),
                               "; ", what, " only in a WECHAT_STORE"));
  }
  return store_ref;
}

absl::Status DecideGrantCategoryQualification(Context& c) {
  const v1::GrantCategoryQualification& cmd =
      c.command.grant_category_qualification();
  RETURN_IF_ERROR(
      CheckId("grantCategoryQualification.storeId", cmd.store_id()));
  RETURN_IF_ERROR(
      CheckId("grantCategoryQualification.categoryId", cmd.category_id()));
  ASSIGN_OR_RETURN(
      const RecordRef<StoreRecord> store_ref,
      RequireWeChatStore(c, cmd.store_id(), "categories are qualified"));
  const StoreRecord& store = *store_ref;
  for (const std::string& q : store.qualified_categories()) {
    if (q == cmd.category_id()) {
      return Reject(
          Rule::kWeChatStoreCategory, v1::ALREADY_EXISTS,
          absl::StrCat("category ", cmd.category_id(),
                       " is already qualified in store ", cmd.store_id()));
    }
  }
  Event event;
  v1::CategoryQualificationGranted* e =
      event.mutable_category_qualification_granted();
  e->set_store_id(cmd.store_id());
  e->set_category_id(cmd.category_id());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

// A balance that the command would push past INT64_MAX. Unreachable with
// amounts of at most kAmountFenMax short of ~9,200 maximal payments into one
// store, but a command is refused here rather than accepted and then found
// unfoldable by Evolve (kDataLoss).
absl::Status CheckBalanceRoom(absl::string_view field, int64_t amount_fen,
                              int64_t balance_fen, absl::string_view balance,
                              absl::string_view store_id) {
  if (CheckedAdd(balance_fen, amount_fen)) return absl::OkStatus();
  return ShapeError(absl::StrCat(field, " ", amount_fen, " overflows the ",
                                 balance, " balance of store ", store_id));
}

absl::Status DecidePayDeposit(Context& c) {
  const v1::PayDeposit& cmd = c.command.pay_deposit();
  RETURN_IF_ERROR(CheckId("payDeposit.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("payDeposit.categoryId", cmd.category_id()));
  RETURN_IF_ERROR(CheckAmount("payDeposit.amountFen", cmd.amount_fen()));
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireWeChatStore(c, cmd.store_id(), "deposits are paid"));
  const StoreRecord& store = *store_ref;
  RETURN_IF_ERROR(CheckBalanceRoom("payDeposit.amountFen", cmd.amount_fen(),
                                   store.balances().deposit_fen(), "deposit",
                                   cmd.store_id()));
  Event event;
  v1::DepositPaid* e = event.mutable_deposit_paid();
  e->set_store_id(cmd.store_id());
  e->set_category_id(cmd.category_id());
  e->set_amount_fen(cmd.amount_fen());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

// ------------------------------------------------------------ R10–R12 orders

absl::Status DecidePlaceOrder(Context& c) {
  const v1::PlaceOrder& cmd = c.command.place_order();
  RETURN_IF_ERROR(CheckId("placeOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("placeOrder.orderId", cmd.order_id()));
  RETURN_IF_ERROR(CheckEnum("placeOrder.channel", v1::Channel_descriptor(),
                            cmd.channel(), true));
  if (cmd.lines_size() < 1 ||
      static_cast<size_t>(cmd.lines_size()) > kOrderLinesMax) {
    return ShapeError(absl::StrCat("placeOrder.lines must hold 1..",
                                   kOrderLinesMax, " lines, got ",
                                   cmd.lines_size()));
  }
  int64_t total_fen = 0;
  for (int i = 0; i < cmd.lines_size(); ++i) {
    const v1::OrderLine& line = cmd.lines(i);
    const std::string field = absl::StrCat("placeOrder.lines[", i, "]");
    RETURN_IF_ERROR(CheckId(field + ".productId", line.product_id()));
    if (line.quantity() < 1) {
      return ShapeError(
          absl::StrCat(field, ".quantity must be >= 1, got ", line.quantity()));
    }
    if (line.quantity() > kQuantityMax) {
      return ShapeError(absl::StrCat(field, ".quantity must be <= ",
                                     kQuantityMax, ", got ", line.quantity()));
    }
    RETURN_IF_ERROR(
        CheckAmount(field + ".unitPriceFen", line.unit_price_fen()));
    std::optional<int64_t> line_fen =
        CheckedMul(line.quantity(), line.unit_price_fen());
    std::optional<int64_t> sum =
        line_fen ? CheckedAdd(total_fen, *line_fen) : std::nullopt;
    if (!sum) {
      return ShapeError(absl::StrCat("placeOrder total overflows at ", field,
                                     " (", line.quantity(), " x ",
                                     line.unit_price_fen(), " fen)"));
    }
    total_fen = *sum;
  }
  if (total_fen > kAmountFenMax) {
    return ShapeError(absl::StrCat("placeOrder total ", total_fen,
                                   " fen exceeds the maximum amount ",
                                   kAmountFenMax, " fen"));
  }

  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kPlaceOrder, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  ASSIGN_OR_RETURN(RecordRef<OrderRecord> existing,
                   c.state.Order(cmd.order_id()));
  if (existing) {
    NameStore(c, existing->store_id());
    return Reject(
        Rule::kPlaceOrder, v1::ALREADY_EXISTS,
        absl::StrCat("order ", cmd.order_id(), " already exists (in store ",
                     existing->store_id(), ")"));
  }
  if (cmd.channel() == v1::LIVE_ROOM && store.kind() == v1::CHANNELS_STORE &&
      AtOrAfter(c, c.policy.channels_live_room_closed())) {
    return Reject(
        Rule::kPlaceOrder, v1::FAILED_PRECONDITION,
        absl::StrCat("CHANNELS_STORE ", store.store_id(),
                     " takes no LIVE_ROOM orders ",
                     FromInstant(c, "CHANNELS_LIVE_ROOM_CLOSED",
                                 c.policy.channels_live_room_closed())));
  }
  if (cmd.channel() == v1::OFFICIAL_ACCOUNT) {
    if (store.kind() != v1::WECHAT_STORE) {
      return Reject(
          Rule::kPlaceOrder, v1::FAILED_PRECONDITION,
          absl::StrCat("OFFICIAL_ACCOUNT orders are taken only by a "
                       "WECHAT_STORE; store ",
                       store.store_id(), " is a ", Name(store.kind())));
    }
    if (!AtOrAfter(c, c.policy.official_account_sales())) {
      return Reject(
          Rule::kPlaceOrder, v1::FAILED_PRECONDITION,
          absl::StrCat("OFFICIAL_ACCOUNT orders are not taken yet: ",
                       BeforeInstant(c, "OFFICIAL_ACCOUNT_SALES",
                                     c.policy.official_account_sales())));
    }
  }
  for (int i = 0; i < cmd.lines_size(); ++i) {
    const v1::OrderLine& line = cmd.lines(i);
    ASSIGN_OR_RETURN(RecordRef<ProductRecord> product,
                     c.state.Product(store.store_id(), line.product_id()));
    if (!product) {
      return Reject(Rule::kPlaceOrder, v1::NOT_FOUND,
                    absl::StrCat("placeOrder.lines[", i,
                                 "].productId: product ", line.product_id(),
                                 " not found in store ", store.store_id()));
    }
    const ProductStatus effective =
        EffectiveStatus(*product, store.kind(), c.at, c.policy);
    if (effective != v1::LISTED) {
      return Reject(
          Rule::kPlaceOrder, v1::FAILED_PRECONDITION,
          absl::StrCat("placeOrder.lines[", i, "].productId: product ",
                       line.product_id(), " in store ", store.store_id(),
                       " is ", Name(effective),
                       effective != product->status() ? " (policy cutoff)" : "",
                       " at ", c.At(), ", not LISTED"));
    }
  }
  Event event;
  v1::OrderPlaced* e = event.mutable_order_placed();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  e->set_channel(cmd.channel());
  *e->mutable_lines() = cmd.lines();
  e->set_total_fen(total_fen);
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status RequireOrderStatus(Rule rule, const OrderRecord& order,
                                std::initializer_list<v1::OrderStatus> allowed,
                                absl::string_view verb) {
  std::vector<std::string> names;
  for (v1::OrderStatus s : allowed) {
    if (order.status() == s) return absl::OkStatus();
    names.push_back(Name(s));
  }
  return Reject(rule, v1::FAILED_PRECONDITION,
                absl::StrCat("order ", order.order_id(), " is ",
                             Name(order.status()), "; only a ",
                             absl::StrJoin(names, " or "), " order is ", verb));
}

absl::Status DecideCancelOrder(Context& c) {
  const v1::CancelOrder& cmd = c.command.cancel_order();
  RETURN_IF_ERROR(CheckId("cancelOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("cancelOrder.orderId", cmd.order_id()));
  ASSIGN_OR_RETURN(
      const RecordRef<OrderRecord> order_ref,
      RequireOrder(c, Rule::kPayOrCancel, cmd.store_id(), cmd.order_id()));
  const OrderRecord& order = *order_ref;
  RETURN_IF_ERROR(
      RequireOrderStatus(Rule::kPayOrCancel, order, {v1::PLACED}, "cancelled"));
  Event event;
  v1::OrderCancelled* e = event.mutable_order_cancelled();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecidePayOrder(Context& c) {
  const v1::PayOrder& cmd = c.command.pay_order();
  RETURN_IF_ERROR(CheckId("payOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("payOrder.orderId", cmd.order_id()));
  RETURN_IF_ERROR(CheckAmount("payOrder.amountFen", cmd.amount_fen()));
  ASSIGN_OR_RETURN(
      const RecordRef<OrderRecord> order_ref,
      RequireOrder(c, Rule::kPayOrCancel, cmd.store_id(), cmd.order_id()));
  const OrderRecord& order = *order_ref;
  RETURN_IF_ERROR(
      RequireOrderStatus(Rule::kPayOrCancel, order, {v1::PLACED}, "paid"));
  if (cmd.amount_fen() != order.total_fen()) {
    return Reject(Rule::kPayOrCancel, v1::FAILED_PRECONDITION,
                  absl::StrCat("payOrder.amountFen must equal the total ",
                               order.total_fen(), " fen of order ",
                               cmd.order_id(), ", got ", cmd.amount_fen()));
  }
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kPayOrCancel, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  RETURN_IF_ERROR(CheckBalanceRoom("payOrder.amountFen", cmd.amount_fen(),
                                   store.balances().pending_fen(), "pending",
                                   cmd.store_id()));
  Event event;
  v1::OrderPaid* e = event.mutable_order_paid();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  e->set_amount_fen(cmd.amount_fen());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideShipOrder(Context& c) {
  const v1::ShipOrder& cmd = c.command.ship_order();
  RETURN_IF_ERROR(CheckId("shipOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("shipOrder.orderId", cmd.order_id()));
  ASSIGN_OR_RETURN(
      const RecordRef<OrderRecord> order_ref,
      RequireOrder(c, Rule::kOrderMoney, cmd.store_id(), cmd.order_id()));
  const OrderRecord& order = *order_ref;
  RETURN_IF_ERROR(
      RequireOrderStatus(Rule::kOrderMoney, order, {v1::PAID}, "shipped"));
  Event event;
  v1::OrderShipped* e = event.mutable_order_shipped();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideSettleOrder(Context& c) {
  const v1::SettleOrder& cmd = c.command.settle_order();
  RETURN_IF_ERROR(CheckId("settleOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("settleOrder.orderId", cmd.order_id()));
  if (cmd.commission_fen() < 0 || cmd.commission_fen() > kAmountFenMax) {
    return ShapeError(absl::StrCat("settleOrder.commissionFen must be in 0..",
                                   kAmountFenMax, ", got ",
                                   cmd.commission_fen()));
  }
  ASSIGN_OR_RETURN(
      const RecordRef<OrderRecord> order_ref,
      RequireOrder(c, Rule::kOrderMoney, cmd.store_id(), cmd.order_id()));
  const OrderRecord& order = *order_ref;
  RETURN_IF_ERROR(
      RequireOrderStatus(Rule::kOrderMoney, order, {v1::SHIPPED}, "settled"));
  const int64_t gross_fen = order.paid_fen() - order.refunded_fen();
  if (cmd.commission_fen() > gross_fen) {
    return Reject(
        Rule::kOrderMoney, v1::FAILED_PRECONDITION,
        absl::StrCat("settleOrder.commissionFen must be <= ", gross_fen,
                     " (paid ", order.paid_fen(), " - refunded ",
                     order.refunded_fen(), " of order ", cmd.order_id(),
                     "), got ", cmd.commission_fen()));
  }
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kOrderMoney, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  RETURN_IF_ERROR(CheckBalanceRoom(
      "settleOrder net", gross_fen - cmd.commission_fen(),
      store.balances().available_fen(), "available", cmd.store_id()));
  Event event;
  v1::OrderSettled* e = event.mutable_order_settled();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  e->set_gross_fen(gross_fen);
  e->set_commission_fen(cmd.commission_fen());
  e->set_net_fen(gross_fen - cmd.commission_fen());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideRefundOrder(Context& c) {
  const v1::RefundOrder& cmd = c.command.refund_order();
  RETURN_IF_ERROR(CheckId("refundOrder.storeId", cmd.store_id()));
  RETURN_IF_ERROR(CheckId("refundOrder.orderId", cmd.order_id()));
  RETURN_IF_ERROR(CheckAmount("refundOrder.amountFen", cmd.amount_fen()));
  ASSIGN_OR_RETURN(
      const RecordRef<OrderRecord> order_ref,
      RequireOrder(c, Rule::kOrderMoney, cmd.store_id(), cmd.order_id()));
  const OrderRecord& order = *order_ref;
  RETURN_IF_ERROR(RequireOrderStatus(Rule::kOrderMoney, order,
                                     {v1::PAID, v1::SHIPPED, v1::SETTLED},
                                     "refunded"));
  const int64_t refundable_fen = order.paid_fen() - order.refunded_fen();
  if (cmd.amount_fen() > refundable_fen) {
    return Reject(
        Rule::kOrderMoney, v1::FAILED_PRECONDITION,
        absl::StrCat("refundOrder.amountFen must be <= ", refundable_fen,
                     " (paid ", order.paid_fen(), " - refunded ",
                     order.refunded_fen(), " of order ", cmd.order_id(),
                     "), got ", cmd.amount_fen()));
  }
  v1::RefundSource source = v1::FROM_PENDING;
  if (order.status() == v1::SETTLED) {
    source = v1::FROM_AVAILABLE;
    ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                     RequireStore(c, Rule::kOrderMoney, cmd.store_id()));
    const StoreRecord& store = *store_ref;
    if (store.balances().available_fen() < cmd.amount_fen()) {
      return Reject(Rule::kOrderMoney, v1::INSUFFICIENT_FUNDS,
                    absl::StrCat("refundOrder.amountFen ", cmd.amount_fen(),
                                 " exceeds the available balance ",
                                 store.balances().available_fen(), " of store ",
                                 cmd.store_id(), " (order ", cmd.order_id(),
                                 " is settled)"));
    }
  }
  Event event;
  v1::OrderRefunded* e = event.mutable_order_refunded();
  e->set_store_id(cmd.store_id());
  e->set_order_id(cmd.order_id());
  e->set_amount_fen(cmd.amount_fen());
  e->set_source(source);
  e->set_fully_refunded(cmd.amount_fen() == refundable_fen);
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

// ------------------------------------------------------------ R14

absl::Status DecideRequestWithdrawal(Context& c) {
  const v1::RequestWithdrawal& cmd = c.command.request_withdrawal();
  RETURN_IF_ERROR(CheckId("requestWithdrawal.storeId", cmd.store_id()));
  RETURN_IF_ERROR(
      CheckId("requestWithdrawal.withdrawalId", cmd.withdrawal_id()));
  RETURN_IF_ERROR(CheckAmount("requestWithdrawal.amountFen", cmd.amount_fen()));
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kWithdrawal, cmd.store_id()));
  const StoreRecord& store = *store_ref;
  ASSIGN_OR_RETURN(RecordRef<WithdrawalRecord> existing,
                   c.state.Withdrawal(cmd.withdrawal_id()));
  if (existing) {
    NameStore(c, existing->store_id());
    return Reject(
        Rule::kWithdrawal, v1::ALREADY_EXISTS,
        absl::StrCat("withdrawal ", cmd.withdrawal_id(),
                     " already exists (in store ", existing->store_id(), ")"));
  }
  if (cmd.amount_fen() > store.balances().available_fen()) {
    return Reject(Rule::kWithdrawal, v1::INSUFFICIENT_FUNDS,
                  absl::StrCat("requestWithdrawal.amountFen ", cmd.amount_fen(),
                               " exceeds the available balance ",
                               store.balances().available_fen(), " of store ",
                               cmd.store_id()));
  }
  RETURN_IF_ERROR(CheckBalanceRoom(
      "requestWithdrawal.amountFen", cmd.amount_fen(),
      store.balances().withdrawing_fen(), "withdrawing", cmd.store_id()));
  Event event;
  v1::WithdrawalRequested* e = event.mutable_withdrawal_requested();
  e->set_store_id(cmd.store_id());
  e->set_withdrawal_id(cmd.withdrawal_id());
  e->set_amount_fen(cmd.amount_fen());
  c.Emit(StoreStream(cmd.store_id()), std::move(event));
  return absl::OkStatus();
}

absl::Status DecideFinishWithdrawal(Context& c, bool complete) {
  const std::string& store_id = complete
                                    ? c.command.complete_withdrawal().store_id()
                                    : c.command.fail_withdrawal().store_id();
  const std::string& withdrawal_id =
      complete ? c.command.complete_withdrawal().withdrawal_id()
               : c.command.fail_withdrawal().withdrawal_id();
  const std::string verb = complete ? "completeWithdrawal" : "failWithdrawal";
  RETURN_IF_ERROR(CheckId(verb + ".storeId", store_id));
  RETURN_IF_ERROR(CheckId(verb + ".withdrawalId", withdrawal_id));
  ASSIGN_OR_RETURN(const RecordRef<WithdrawalRecord> withdrawal_ref,
                   RequireWithdrawal(c, store_id, withdrawal_id));
  const WithdrawalRecord& withdrawal = *withdrawal_ref;
  if (withdrawal.status() != v1::WITHDRAWING) {
    return Reject(Rule::kWithdrawal, v1::FAILED_PRECONDITION,
                  absl::StrCat("withdrawal ", withdrawal_id, " is ",
                               Name(withdrawal.status()), ", not WITHDRAWING"));
  }
  ASSIGN_OR_RETURN(const RecordRef<StoreRecord> store_ref,
                   RequireStore(c, Rule::kWithdrawal, store_id));
  const StoreRecord& store = *store_ref;
  RETURN_IF_ERROR(CheckBalanceRoom(verb + " amount", withdrawal.amount_fen(),
                                   complete ? store.balances().paid_out_fen()
                                            : store.balances().available_fen(),
                                   complete ? "paid-out" : "available",
                                   store_id));
  Event event;
  if (complete) {
    v1::WithdrawalCompleted* e = event.mutable_withdrawal_completed();
    e->set_store_id(store_id);
    e->set_withdrawal_id(withdrawal_id);
    e->set_amount_fen(withdrawal.amount_fen());
  } else {
    v1::WithdrawalFailed* e = event.mutable_withdrawal_failed();
    e->set_store_id(store_id);
    e->set_withdrawal_id(withdrawal_id);
    e->set_amount_fen(withdrawal.amount_fen());
  }
  c.Emit(StoreStream(store_id), std::move(event));
  return absl::OkStatus();
}

// ------------------------------------------------------------ dispatch

absl::Status DecideBody(Context& c) {
  switch (c.command.body_case()) {
    case Command::kOpenStore:
      return DecideOpenStore(c);
    case Command::kRegisterIndividualBusiness:
      return DecideRegisterIndividualBusiness(c);
    case Command::kAddProduct:
      return DecideAddProduct(c);
    case Command::kListProduct:
      return DecideListProduct(c);
    case Command::kDelistProduct:
      return DecideDelistProduct(c);
    case Command::kDeleteProduct:
      return DecideDeleteProduct(c);
    case Command::kApplyPolicy:
      return DecideApplyPolicy(c);
    case Command::kUpgradeStore:
      return DecideUpgradeStore(c);
    case Command::kSyncProducts:
      return DecideSyncProducts(c);
    case Command::kGrantCategoryQualification:
      return DecideGrantCategoryQualification(c);
    case Command::kPayDeposit:
      return DecidePayDeposit(c);
    case Command::kPlaceOrder:
      return DecidePlaceOrder(c);
    case Command::kCancelOrder:
      return DecideCancelOrder(c);
    case Command::kPayOrder:
      return DecidePayOrder(c);
    case Command::kShipOrder:
      return DecideShipOrder(c);
    case Command::kSettleOrder:
      return DecideSettleOrder(c);
    case Command::kRefundOrder:
      return DecideRefundOrder(c);
    case Command::kRequestWithdrawal:
      return DecideRequestWithdrawal(c);
    case Command::kCompleteWithdrawal:
      return DecideFinishWithdrawal(c, /*complete=*/true);
    case Command::kFailWithdrawal:
      return DecideFinishWithdrawal(c, /*complete=*/false);
    case Command::BODY_NOT_SET:
      break;
  }
  return ShapeError("command has no body");
}

// R0: business time never goes backwards within a stream the decision
// appends to.
absl::Status CheckTimeOrder(const Context& c) {
  std::set<std::string> seen;
  for (const DecidedEvent& event : c.decision->events) {
    if (!seen.insert(event.stream_id).second) continue;
    ASSIGN_OR_RETURN(RecordRef<StreamHead> head, c.state.Head(event.stream_id));
    if (!head) continue;
    const absl::Time last = ToTime(head->last_occurred_at());
    if (c.at < last) {
      return Reject(Rule::kShape, v1::FAILED_PRECONDITION,
                    absl::StrCat("occurredAt ", c.At(),
                                 " is earlier than the latest event of stream ",
                                 event.stream_id, " (", ShowTime(last), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEnvelope(const Command& command) {
  RETURN_IF_ERROR(CheckId("commandId", command.command_id()));
  if (!command.has_occurred_at()) return ShapeError("occurredAt must be set");
  const google::protobuf::Timestamp& ts = command.occurred_at();
  if (ts.seconds() < kTimeSecondsMin || ts.seconds() > kTimeSecondsMax ||
      ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    return ShapeError("occurredAt must be a valid timestamp in 0001..9999");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view RuleName(Rule rule) {
  static constexpr absl::string_view kNames[] = {
      "R0", "R1", "R2",  "R3",  "R4",  "R5",  "R6",  "R7",
      "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15"};
  static_assert(std::size(kNames) ==
                static_cast<size_t>(Rule::kWeChatStoreCategory) + 1);
  return kNames[static_cast<size_t>(rule)];
}

std::string EventTypeName(const Event& event) {
  const google::protobuf::OneofDescriptor* body =
      Event::descriptor()->FindOneofByName("body");
  const google::protobuf::FieldDescriptor* field =
      event.GetReflection()->GetOneofFieldDescriptor(event, body);
  return field == nullptr ? std::string() : field->message_type()->name();
}

std::vector<std::string> StoreIdsOf(const Command& command) {
  std::vector<std::string> ids;
  auto add = [&ids](const std::string& id) {
    if (id.empty()) return;
    for (const std::string& seen : ids) {
      if (seen == id) return;
    }
    ids.push_back(id);
  };
  switch (command.body_case()) {
    case Command::kOpenStore:
      add(command.open_store().store_id());
      break;
    case Command::kAddProduct:
      add(command.add_product().store_id());
      break;
    case Command::kListProduct:
      add(command.list_product().store_id());
      break;
    case Command::kDelistProduct:
      add(command.delist_product().store_id());
      break;
    case Command::kDeleteProduct:
      add(command.delete_product().store_id());
      break;
    case Command::kUpgradeStore:
      add(command.upgrade_store().source_store_id());
      add(command.upgrade_store().target_store_id());
      break;
    case Command::kSyncProducts:
      add(command.sync_products().source_store_id());
      add(command.sync_products().target_store_id());
      break;
    case Command::kGrantCategoryQualification:
      add(command.grant_category_qualification().store_id());
      break;
    case Command::kPayDeposit:
      add(command.pay_deposit().store_id());
      break;
    case Command::kPlaceOrder:
      add(command.place_order().store_id());
      break;
    case Command::kCancelOrder:
      add(command.cancel_order().store_id());
      break;
    case Command::kPayOrder:
      add(command.pay_order().store_id());
      break;
    case Command::kShipOrder:
      add(command.ship_order().store_id());
      break;
    case Command::kSettleOrder:
      add(command.settle_order().store_id());
      break;
    case Command::kRefundOrder:
      add(command.refund_order().store_id());
      break;
    case Command::kRequestWithdrawal:
      add(command.request_withdrawal().store_id());
      break;
    case Command::kCompleteWithdrawal:
      add(command.complete_withdrawal().store_id());
      break;
    case Command::kFailWithdrawal:
      add(command.fail_withdrawal().store_id());
      break;
    case Command::kRegisterIndividualBusiness:
    case Command::kApplyPolicy:
    case Command::BODY_NOT_SET:
      break;
  }
  return ids;
}

absl::StatusOr<Decision> Decide(const Command& command,
                                const StateReader& state,
                                const Policy& policy) {
  Decision decision;
  decision.store_ids = StoreIdsOf(command);
  absl::Status status = CheckEnvelope(command);
  if (status.ok()) {
    Context c{command, ToTime(command.occurred_at()), state, policy, &decision};
    status = DecideBody(c);
    if (status.ok()) status = CheckTimeOrder(c);
  }
  if (status.ok()) {
    decision.accepted = true;
    return decision;
  }
  absl::optional<absl::Cord> payload = status.GetPayload(kRejectionPayloadUrl);
  if (!payload) return status;  // the StateReader failed
  const std::string rule_and_code(*payload);
  const std::pair<std::string, std::string> parts =
      absl::StrSplit(rule_and_code, absl::MaxSplits(':', 1));
  int code = 0;
  if (!absl::SimpleAtoi(parts.second, &code)) code = v1::FAILED_PRECONDITION;
  Decision rejected;
  rejected.accepted = false;
  rejected.rule = parts.first;
  rejected.code = static_cast<RejectionCode>(code);
  rejected.message = std::string(status.message());
  rejected.store_ids = std::move(decision.store_ids);
  return rejected;
}

}  // namespace storeledger
