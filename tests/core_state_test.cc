// StateOverlay over a base, the policy calendar and parser, and the naming
// helpers of decide.h.
#include <string>

#include "core/decide.h"
#include "core/policy.h"
#include "core/state.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "tests/core_test_util.h"

namespace storeledger {
namespace {

using testing_core::ParseCommand;
using testing_core::ParseTime;

ProductRecord MakeProduct(const std::string& store, const std::string& id,
                          v1::ProductStatus status) {
  ProductRecord p;
  p.set_store_id(store);
  p.set_product_id(id);
  p.set_status(status);
  return p;
}

StoreRecord MakeStore(const std::string& id, v1::StoreKind kind) {
  StoreRecord s;
  s.set_store_id(id);
  s.set_kind(kind);
  return s;
}

TEST(StateOverlay, ReadsChangesFirstAndMergesListsSortedById) {
  StateOverlay base(&EmptyState());
  base.PutStore(MakeStore("s2", v1::MINI_STORE));
  base.PutStore(MakeStore("c1", v1::CHANNELS_STORE));
  base.PutProduct(MakeProduct("s2", "b", v1::DRAFT));
  base.PutProduct(MakeProduct("s2", "d", v1::DRAFT));
  base.PutProduct(MakeProduct("s3", "a", v1::DRAFT));
  OrderRecord o;
  o.set_store_id("s2");
  o.set_order_id("o2");
  o.set_status(v1::PLACED);
  base.PutOrder(o);
  WithdrawalRecord w;
  w.set_store_id("s2");
  w.set_withdrawal_id("w2");
  base.PutWithdrawal(w);

  StateOverlay top(&base);
  top.PutStore(MakeStore("s1", v1::MINI_STORE));
  top.PutProduct(MakeProduct("s2", "d", v1::LISTED));  // overrides the base
  top.PutProduct(MakeProduct("s2", "a", v1::DRAFT));
  top.PutProduct(MakeProduct("s2", "c", v1::DRAFT));
  o.set_status(v1::PAID);
  top.PutOrder(o);
  o.set_order_id("o1");
  top.PutOrder(o);
  o.set_store_id("s9");
  o.set_order_id("o0");
  top.PutOrder(o);
  w.set_withdrawal_id("w1");
  top.PutWithdrawal(w);

  auto products = top.Products("s2");
  ASSERT_TRUE(products.ok());
  std::vector<std::string> ids;
  for (const ProductRecord& p : *products) ids.push_back(p.product_id());
  EXPECT_EQ(ids, (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ((*products)[3].status(), v1::LISTED);
  EXPECT_EQ((*top.Product("s2", "d"))->status(), v1::LISTED);
  EXPECT_EQ((*top.Product("s2", "b"))->status(), v1::DRAFT);
  EXPECT_EQ(*top.Product("s2", "z"), nullptr);
  EXPECT_EQ(top.Products("s3")->size(), 1u);

  auto orders = top.Orders("s2");
  ASSERT_TRUE(orders.ok());
  ASSERT_EQ(orders->size(), 2u);
  EXPECT_EQ((*orders)[0].order_id(), "o1");
  EXPECT_EQ((*orders)[1].status(), v1::PAID);
  EXPECT_EQ(top.Withdrawals("s2")->size(), 2u);

  EXPECT_EQ(*top.StoreIds(v1::MINI_STORE),
            (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(*top.StoreIds(v1::CHANNELS_STORE), std::vector<std::string>{"c1"});
  EXPECT_TRUE(top.StoreIds(v1::WECHAT_STORE)->empty());
  EXPECT_NE(*top.Store("c1"), nullptr);

  // The overlay's own changes are only what was put into it.
  EXPECT_EQ(top.stores().size(), 1u);
  EXPECT_EQ(top.products().size(), 3u);

  StateOverlay merged(&base);
  merged.MergeFrom(top);
  EXPECT_EQ(merged.Products("s2")->size(), 4u);
  EXPECT_EQ((*merged.Order("o2"))->status(), v1::PAID);
  merged.Clear();
  EXPECT_EQ((*merged.Order("o2"))->status(), v1::PLACED);
  EXPECT_TRUE(merged.stores().empty());
}

TEST(StateOverlay, TakeChangesMovesEveryRecordOutAndLeavesItReadingTheBase) {
  StateOverlay base(&EmptyState());
  base.PutStore(MakeStore("s1", v1::MINI_STORE));
  StateOverlay top(&base);
  top.PutStore(MakeStore("s1", v1::CHANNELS_STORE));  // overrides the base
  top.PutStore(MakeStore("s2", v1::WECHAT_STORE));
  top.PutProduct(MakeProduct("s2", "p1", v1::LISTED));
  OrderRecord order;
  order.set_store_id("s2");
  order.set_order_id("o1");
  top.PutOrder(order);
  WithdrawalRecord withdrawal;
  withdrawal.set_store_id("s2");
  withdrawal.set_withdrawal_id("w1");
  top.PutWithdrawal(withdrawal);
  MerchantRecord merchant;
  merchant.set_merchant_id("m1");
  top.PutMerchant(merchant);
  StreamHead head;
  head.set_version(3);
  top.PutHead("store-s2", head);

  StateChanges changes = top.TakeChanges();
  ASSERT_EQ(changes.stores.size(), 2u);
  EXPECT_EQ(changes.stores.at("s1")->kind(), v1::CHANNELS_STORE);
  EXPECT_EQ(changes.products.size(), 1u);
  EXPECT_EQ(changes.products.count({"s2", "p1"}), 1u);
  EXPECT_EQ(changes.orders.count("o1"), 1u);
  EXPECT_EQ(changes.withdrawals.count("w1"), 1u);
  EXPECT_EQ(changes.merchants.count("m1"), 1u);
  EXPECT_EQ(changes.heads.at("store-s2")->version(), 3u);

  // Nothing left in the overlay: it reads as its base.
  EXPECT_TRUE(top.stores().empty());
  EXPECT_TRUE(top.products().empty());
  EXPECT_TRUE(top.orders().empty());
  EXPECT_TRUE(top.withdrawals().empty());
  EXPECT_TRUE(top.merchants().empty());
  EXPECT_TRUE(top.heads().empty());
  absl::StatusOr<RecordRef<StoreRecord>> s1 = top.Store("s1");
  ASSERT_TRUE(s1.ok());
  ASSERT_NE(*s1, nullptr);
  EXPECT_EQ((*s1)->kind(), v1::MINI_STORE);
  absl::StatusOr<RecordRef<StoreRecord>> s2 = top.Store("s2");
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(*s2, nullptr);
}

TEST(Policy, DefaultCalendar) {
  const Policy& p = DefaultPolicy();
  EXPECT_TRUE(ValidatePolicy(p).ok());
  EXPECT_EQ(p.version(), "builtin-2024-10-22");
  EXPECT_EQ(ToTime(p.wechat_store_launch()),
            ParseTime("2024-08-25T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.wechat_store_launch()), ParseTime("2024-08-24T16:00:00Z"));
  EXPECT_EQ(ToTime(p.channels_no_new_products()),
            ParseTime("2024-09-25T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.official_account_sales()),
            ParseTime("2024-09-27T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.mini_upgrade_open()),
            ParseTime("2024-10-21T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.channels_live_room_closed()),
            ParseTime("2024-10-25T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.mini_evoucher_cutoff()),
            ParseTime("2024-11-04T00:00:00+08:00"));
  EXPECT_EQ(ToTime(p.mini_physical_cutoff()),
            ParseTime("2024-11-18T00:00:00+08:00"));
  EXPECT_FALSE(p.personal_wechat_store());
  EXPECT_EQ(RequiredDepositFen(p, "anything"), 50000);
}

TEST(Policy, ParsesTextAndNamesTheBadField) {
  std::string text;
  ASSERT_TRUE(
      google::protobuf::TextFormat::PrintToString(DefaultPolicy(), &text));
  auto parsed = ParsePolicyText(
      text +
      "\ncategory_deposits { category_id: \"gold\" amount_fen: 90000 }\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(RequiredDepositFen(*parsed, "gold"), 90000);
  EXPECT_EQ(RequiredDepositFen(*parsed, "food"), 50000);

  Policy missing = DefaultPolicy();
  missing.clear_mini_physical_cutoff();
  std::string missing_text;
  google::protobuf::TextFormat::PrintToString(missing, &missing_text);
  auto no_cutoff = ParsePolicyText(missing_text);
  EXPECT_EQ(no_cutoff.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_cutoff.status().message().find("mini_physical_cutoff"),
            std::string::npos);

  auto garbage = ParsePolicyText("version: \"x\"\nno_such_field: 3\n");
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(garbage.status().message().find("no_such_field"), std::string::npos)
      << garbage.status();

  Policy bad = DefaultPolicy();
  bad.set_version("");
  EXPECT_NE(ValidatePolicy(bad).message().find("policy.version"),
            std::string::npos);
  bad = DefaultPolicy();
  bad.set_default_category_deposit_fen(0);
  EXPECT_NE(ValidatePolicy(bad).message().find("default_category_deposit_fen"),
            std::string::npos);
  bad = DefaultPolicy();
  bad.add_category_deposits()->set_category_id("x");
  EXPECT_NE(
      ValidatePolicy(bad).message().find("category_deposits[0].amount_fen"),
      std::string::npos);
}

TEST(Policy, TimestampConversionsRoundTrip) {
  for (const char* t : {"2024-11-04T00:00:00+08:00", "1969-12-31T23:59:59.5Z",
                        "2024-10-22T10:00:00.000000001Z"}) {
    const absl::Time time = ParseTime(t);
    const google::protobuf::Timestamp ts = ToProto(time);
    EXPECT_GE(ts.nanos(), 0);
    EXPECT_LT(ts.nanos(), 1000000000);
    EXPECT_EQ(ToTime(ts), time) << t;
  }
  EXPECT_EQ(ToProto(ParseTime("1969-12-31T23:59:59.5Z")).seconds(), -1);
}

TEST(Names, EventTypeNameAndStoreIdsOf) {
  v1::Event e;
  e.mutable_order_paid();
  EXPECT_EQ(EventTypeName(e), "OrderPaid");
  e.mutable_command_rejected();
  EXPECT_EQ(EventTypeName(e), "CommandRejected");
  EXPECT_EQ(EventTypeName(v1::Event()), "");

  EXPECT_EQ(
      StoreIdsOf(ParseCommand(
          "2024-10-22T10:00:00+08:00",
          R"("syncProducts":{"sourceStoreId":"s1","targetStoreId":"w1"})")),
      (std::vector<std::string>{"s1", "w1"}));
  EXPECT_EQ(
      StoreIdsOf(ParseCommand("2024-10-22T10:00:00+08:00",
                              R"("payOrder":{"storeId":"s1","orderId":"o1"})")),
      std::vector<std::string>{"s1"});
  EXPECT_TRUE(StoreIdsOf(ParseCommand("2024-10-22T10:00:00+08:00",
                                      R"("applyPolicy":{})"))
                  .empty());
  EXPECT_TRUE(
      StoreIdsOf(
          ParseCommand("2024-10-22T10:00:00+08:00",
                       R"("registerIndividualBusiness":{"merchantId":"m1"})"))
          .empty());
}

TEST(Decide, CommandWithoutBodyOrTimeIsRejectedNotACrash) {
  v1::Command command;
  command.set_command_id("c1");
  auto d = Decide(command, EmptyState(), DefaultPolicy());
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->accepted);
  EXPECT_EQ(d->rule, "R0");
  EXPECT_EQ(d->message, "occurredAt must be set");
  *command.mutable_occurred_at() =
      ToProto(ParseTime("2024-10-22T10:00:00+08:00"));
  d = Decide(command, EmptyState(), DefaultPolicy());
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->message, "command has no body");
  EXPECT_EQ(d->code, v1::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace storeledger
