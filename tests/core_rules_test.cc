// The rules R0–R15 of DESIGN.md §1, each accepted and rejected, and every
// policy instant at its boundary: one second before, exactly at, after.
// Pure: the state is a StateOverlay over EmptyState(); accepted decisions are
// folded in with Evolve.
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/limits.h"
#include "core/policy.h"
#include "gtest/gtest.h"
#include "tests/core_test_util.h"

namespace storeledger {
namespace {

using testing_core::Accepted;
using testing_core::kChannelsLiveRoomClosed;
using testing_core::kChannelsNoNewProducts;
using testing_core::kEarly;
using testing_core::kLaunch;
using testing_core::kMiniEvoucherCutoff;
using testing_core::kMiniPhysicalCutoff;
using testing_core::kMiniUpgradeOpen;
using testing_core::kOfficialAccountSales;
using testing_core::MemoryLedger;
using testing_core::ParseCommand;
using testing_core::ParseTime;
using testing_core::Rejected;
using testing_core::Shift;

constexpr char kOct22[] = "2024-10-22T10:00:00+08:00";

// A mini store s1 of merchant m1 with one listed physical product p1.
void MiniStoreWithListedProduct(MemoryLedger& l, const char* at = kEarly) {
  ASSERT_TRUE(Accepted(l.OpenStore(at, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(at, "s1", "p1")));
  ASSERT_TRUE(Accepted(l.ListProduct(at, "s1", "p1")));
}

// A WeChat store w1 of merchant m1 with qualified, deposit-paid category
// "food" and a listed product p1 at 1000 fen.
void WeChatStoreWithListedProduct(MemoryLedger& l, const char* at = kOct22) {
  ASSERT_TRUE(Accepted(l.OpenStore(at, "w1", "m1", "WECHAT_STORE")));
  ASSERT_TRUE(Accepted(l.Grant(at, "w1", "food")));
  ASSERT_TRUE(Accepted(l.PayDeposit(at, "w1", "food", 50000)));
  ASSERT_TRUE(Accepted(l.AddProduct(at, "w1", "p1")));
  ASSERT_TRUE(Accepted(l.ListProduct(at, "w1", "p1")));
}

// A failing reader: proves the shape checks read no state.
class FailingState : public StateReader {
 public:
  template <typename T>
  static absl::StatusOr<T> Fail() {
    return absl::InternalError("state read");
  }
  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view) const override {
    return Fail<RecordRef<StoreRecord>>();
  }
  absl::StatusOr<RecordRef<ProductRecord>> Product(
      absl::string_view, absl::string_view) const override {
    return Fail<RecordRef<ProductRecord>>();
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view) const override {
    return Fail<std::vector<ProductRecord>>();
  }
  absl::StatusOr<RecordRef<OrderRecord>> Order(
      absl::string_view) const override {
    return Fail<RecordRef<OrderRecord>>();
  }
  absl::StatusOr<std::vector<OrderRecord>> Orders(
      absl::string_view) const override {
    return Fail<std::vector<OrderRecord>>();
  }
  absl::StatusOr<RecordRef<WithdrawalRecord>> Withdrawal(
      absl::string_view) const override {
    return Fail<RecordRef<WithdrawalRecord>>();
  }
  absl::StatusOr<std::vector<WithdrawalRecord>> Withdrawals(
      absl::string_view) const override {
    return Fail<std::vector<WithdrawalRecord>>();
  }
  absl::StatusOr<RecordRef<MerchantRecord>> Merchant(
      absl::string_view) const override {
    return Fail<RecordRef<MerchantRecord>>();
  }
  absl::StatusOr<std::vector<std::string>> StoreIds(StoreKind) const override {
    return Fail<std::vector<std::string>>();
  }
  absl::StatusOr<RecordRef<StreamHead>> Head(absl::string_view) const override {
    return Fail<RecordRef<StreamHead>>();
  }
};

// ------------------------------------------------------------------ R0

TEST(R0Shape, IdsAreOneTo64PrintableBytes) {
  MemoryLedger l;
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, "", "m1", "MINI_STORE"), "R0",
                       v1::INVALID_ARGUMENT,
                       "openStore.storeId must not be empty"));
  const std::string id64(kIdBytesMax, 'a');
  const std::string id65(kIdBytesMax + 1, 'a');
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, id65, "m1", "MINI_STORE"), "R0",
                       v1::INVALID_ARGUMENT,
                       "openStore.storeId must be at most 64 bytes, got 65"));
  EXPECT_TRUE(Accepted(l.OpenStore(kEarly, id64, "m1", "MINI_STORE")));
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, "s 1", "m1", "MINI_STORE"), "R0",
                       v1::INVALID_ARGUMENT,
                       "openStore.storeId must be printable ASCII"));
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, "s1", "m\\u00e9", "MINI_STORE"),
                       "R0", v1::INVALID_ARGUMENT, "openStore.merchantId"));
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, "s1", "m\\t", "MINI_STORE"), "R0",
                       v1::INVALID_ARGUMENT, "0x09"));
}

TEST(R0Shape, UnsetEnumsAreRejected) {
  MemoryLedger l;
  EXPECT_TRUE(Rejected(
      l.Run(
          kEarly,
          R"("openStore":{"storeId":"s1","merchantId":"m1","subject":"ENTERPRISE"})"),
      "R0", v1::INVALID_ARGUMENT,
      "openStore.kind must be one of MINI_STORE, CHANNELS_STORE, "
      "WECHAT_STORE, got STORE_KIND_UNSPECIFIED"));
  EXPECT_TRUE(Rejected(
      l.Run(
          kEarly,
          R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE"})"),
      "R0", v1::INVALID_ARGUMENT, "openStore.subject must be one of"));
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  EXPECT_TRUE(
      Rejected(l.AddProduct(kEarly, "s1", "p1", "PRODUCT_KIND_UNSPECIFIED"),
               "R0", v1::INVALID_ARGUMENT, "addProduct.kind"));
  EXPECT_TRUE(Rejected(l.AddProduct(kEarly, "s1", "p1", "PHYSICAL",
                                    "PRODUCT_ORIGIN_UNSPECIFIED"),
                       "R0", v1::INVALID_ARGUMENT, "addProduct.origin"));
}

TEST(R0Shape, AmountsArePositiveAndBounded) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  EXPECT_TRUE(Rejected(
      l.AddProduct(kEarly, "s1", "p1", "PHYSICAL", "OWN", "food", 0), "R0",
      v1::INVALID_ARGUMENT, "addProduct.priceFen must be > 0, got 0"));
  EXPECT_TRUE(Rejected(
      l.AddProduct(kEarly, "s1", "p1", "PHYSICAL", "OWN", "food", -5), "R0",
      v1::INVALID_ARGUMENT, "addProduct.priceFen must be > 0, got -5"));
  EXPECT_TRUE(Rejected(l.AddProduct(kEarly, "s1", "p1", "PHYSICAL", "OWN",
                                    "food", kAmountFenMax + 1),
                       "R0", v1::INVALID_ARGUMENT,
                       "addProduct.priceFen must be <= 1000000000000000"));
  EXPECT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p1", "PHYSICAL", "OWN",
                                    "food", kAmountFenMax)));
  EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", kEarly, "s1", "o1", 0), "R0",
                       v1::INVALID_ARGUMENT, "payOrder.amountFen"));
  EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", kEarly, "s1", "o1", -1),
                       "R0", v1::INVALID_ARGUMENT, "refundOrder.amountFen"));
  EXPECT_TRUE(Rejected(l.OrderMoney("settleOrder", kEarly, "s1", "o1", -1),
                       "R0", v1::INVALID_ARGUMENT,
                       "settleOrder.commissionFen must be in 0.."));
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kEarly, "s1", "w1", 0), "R0",
                       v1::INVALID_ARGUMENT, "requestWithdrawal.amountFen"));
}

TEST(R0Shape, OrderLines) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  EXPECT_TRUE(Rejected(
      l.Run(kEarly, R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[
          {"productId":"p1","quantity":"1","unitPriceFen":"10"},
          {"productId":"p1","quantity":"0","unitPriceFen":"10"}]})"),
      "R0", v1::INVALID_ARGUMENT,
      "placeOrder.lines[1].quantity must be >= 1, got 0"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s1", "o1", "p1", kQuantityMax + 1),
                       "R0", v1::INVALID_ARGUMENT,
                       "placeOrder.lines[0].quantity must be <= 1000000"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 0), "R0",
                       v1::INVALID_ARGUMENT,
                       "placeOrder.lines[0].unitPriceFen must be > 0, got 0"));
  EXPECT_TRUE(Rejected(
      l.Run(kEarly, R"("placeOrder":{"storeId":"s1","orderId":"o1"})"), "R0",
      v1::INVALID_ARGUMENT, "placeOrder.lines must hold 1..100 lines, got 0"));

  auto order_with_lines = [](size_t n) {
    std::string lines;
    for (size_t i = 0; i < n; ++i) {
      absl::StrAppend(
          &lines, i ? "," : "",
          R"({"productId":"p1","quantity":"1","unitPriceFen":"1"})");
    }
    return absl::StrCat(R"("placeOrder":{"storeId":"s1","orderId":"o)", n,
                        R"(","lines":[)", lines, "]}");
  };
  EXPECT_TRUE(Rejected(l.Run(kEarly, order_with_lines(kOrderLinesMax + 1)),
                       "R0", v1::INVALID_ARGUMENT, "got 101"));
  const Decision at_max = l.Run(kEarly, order_with_lines(kOrderLinesMax));
  ASSERT_TRUE(Accepted(at_max));
  EXPECT_EQ(l.Order("o100").total_fen(), 100);
}

TEST(R0Shape, OrderTotalOverflowIsRejected) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  // 10^6 x 10^15 overflows int64 in the product.
  EXPECT_TRUE(Rejected(
      l.PlaceOrder(kEarly, "s1", "o1", "p1", kQuantityMax, kAmountFenMax), "R0",
      v1::INVALID_ARGUMENT,
      "placeOrder total overflows at placeOrder.lines[0]"));
  // The sum of lines overflows although each line fits.
  std::string lines;
  for (int i = 0; i < 10; ++i) {
    absl::StrAppend(
        &lines, i ? "," : "",
        R"({"productId":"p1","quantity":"1000000","unitPriceFen":"1000000000000"})");
  }
  EXPECT_TRUE(Rejected(
      l.Run(kEarly,
            absl::StrCat(
                R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[)",
                lines, "]}")),
      "R0", v1::INVALID_ARGUMENT,
      "placeOrder total overflows at placeOrder.lines[9]"));
  // No overflow, but past the largest amount the ledger holds.
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s1", "o1", "p1", 2, kAmountFenMax),
                       "R0", v1::INVALID_ARGUMENT,
                       "exceeds the maximum amount"));
  EXPECT_TRUE(
      Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, kAmountFenMax)));
}

TEST(R0Shape, IsCheckedBeforeAnyStateRead) {
  FailingState failing;
  const v1::Command bad = ParseCommand(
      kEarly, R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":"0"})");
  absl::StatusOr<Decision> d = Decide(bad, failing, DefaultPolicy());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(Rejected(*d, "R0", v1::INVALID_ARGUMENT, "payOrder.amountFen"));
  EXPECT_EQ(d->store_ids, std::vector<std::string>{"s1"});

  // A well-formed command does read, and a failing read is an error, not a
  // rejection.
  const v1::Command good = ParseCommand(
      kEarly, R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":"5"})");
  EXPECT_EQ(Decide(good, failing, DefaultPolicy()).status().code(),
            absl::StatusCode::kInternal);
}

TEST(R0Time, BusinessTimeNeverGoesBackwardsInAStream) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l, kOct22);
  const Decision backwards = l.AddProduct(Shift(kOct22, -1), "s1", "p2");
  EXPECT_TRUE(Rejected(backwards, "R0", v1::FAILED_PRECONDITION,
                       "is earlier than the latest event of stream store-s1"));
  EXPECT_NE(backwards.message.find("2024-10-22T10:00:00+08:00"),
            std::string::npos)
      << backwards.message;
  // The same instant is not backwards; another stream has its own clock.
  EXPECT_TRUE(Accepted(l.AddProduct(kOct22, "s1", "p2")));
  EXPECT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m2", "MINI_STORE")));
  // An upgrade checks both streams it appends to.
  ASSERT_TRUE(Accepted(
      l.OpenStore("2024-10-23T00:00:00+08:00", "s3", "m1", "MINI_STORE")));
  EXPECT_TRUE(Accepted(l.Upgrade("2024-10-23T00:00:00+08:00", "s1", "w1")));
}

TEST(R0Time, ApplyPolicyChecksEveryStoreStreamItAppendsTo) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p2")));
  // s1 has an event after the cutoff (a delist at 11-10); policy run at 11-05.
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "p2")));
  ASSERT_TRUE(Accepted(l.StoreProduct(
      "delistProduct", "2024-11-20T00:00:00+08:00", "s1", "p2")));
  EXPECT_TRUE(Rejected(l.ApplyPolicy(kMiniPhysicalCutoff), "R0",
                       v1::FAILED_PRECONDITION, "store-s1"));
  EXPECT_TRUE(Accepted(l.ApplyPolicy("2024-11-20T00:00:00+08:00")));
}

// ------------------------------------------------------------------ R1

TEST(R1OpenStore, FirstStoreOnboardsTheMerchant) {
  MemoryLedger l;
  const Decision d = l.OpenStore(kEarly, "s1", "m1", "MINI_STORE");
  ASSERT_TRUE(Accepted(d));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].stream_id, "store-s1");
  EXPECT_EQ(EventTypeName(d.events[0].event), "StoreOpened");
  EXPECT_EQ(d.events[1].stream_id, "merchant-m1");
  EXPECT_EQ(EventTypeName(d.events[1].event), "MerchantOnboarded");
  EXPECT_EQ(d.store_ids, std::vector<std::string>{"s1"});

  const Decision second = l.OpenStore(kEarly, "s2", "m1", "CHANNELS_STORE");
  ASSERT_TRUE(Accepted(second));
  ASSERT_EQ(second.events.size(), 1u);
  EXPECT_EQ(l.Merchant("m1").store_ids().size(), 2);
  EXPECT_EQ(l.Merchant("m1").subject(), v1::ENTERPRISE);
  const StoreRecord s2 = l.Store("s2");
  EXPECT_EQ(s2.kind(), v1::CHANNELS_STORE);
  EXPECT_EQ(s2.status(), v1::OPEN);
  EXPECT_EQ(s2.merchant_id(), "m1");
}

TEST(R1OpenStore, RejectsUsedIdAndAnotherSubject) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  EXPECT_TRUE(Rejected(l.OpenStore(kEarly, "s1", "m9", "MINI_STORE"), "R1",
                       v1::ALREADY_EXISTS, "store s1 already exists"));
  EXPECT_TRUE(Rejected(
      l.OpenStore(kEarly, "s2", "m1", "MINI_STORE", "INDIVIDUAL_BUSINESS"),
      "R1", v1::FAILED_PRECONDITION,
      "openStore.subject must be merchant m1's subject ENTERPRISE, got "
      "INDIVIDUAL_BUSINESS"));
}

TEST(R1OpenStore, WeChatStoreOpensFromLaunch) {
  MemoryLedger l;
  EXPECT_TRUE(
      Rejected(l.OpenStore(Shift(kLaunch, -1), "w0", "m1", "WECHAT_STORE"),
               "R1", v1::FAILED_PRECONDITION, "WECHAT_STORE_LAUNCH"));
  EXPECT_TRUE(Accepted(l.OpenStore(kLaunch, "w1", "m1", "WECHAT_STORE")));
  EXPECT_TRUE(
      Accepted(l.OpenStore(Shift(kLaunch, 1), "w2", "m1", "WECHAT_STORE")));
  // Legacy kinds open before launch.
  EXPECT_TRUE(
      Accepted(l.OpenStore(Shift(kLaunch, -1), "s1", "m2", "MINI_STORE")));
}

TEST(R1OpenStore, PersonalWeChatStoreNeedsThePolicyFlag) {
  MemoryLedger l;
  EXPECT_TRUE(
      Rejected(l.OpenStore(kOct22, "w1", "m1", "WECHAT_STORE", "PERSONAL"),
               "R1", v1::FAILED_PRECONDITION, "individual business"));
  Policy open = DefaultPolicy();
  open.set_personal_wechat_store(true);
  MemoryLedger later(open);
  EXPECT_TRUE(Accepted(
      later.OpenStore(kOct22, "w1", "m1", "WECHAT_STORE", "PERSONAL")));
}

// ------------------------------------------------------------------ R2

TEST(R2AddProduct, AddsDraftOnceInAnOpenStore) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p1", "E_VOUCHER",
                                    "THIRD_PARTY", "tickets", 2500)));
  const ProductRecord p = l.Product("s1", "p1");
  EXPECT_EQ(p.status(), v1::DRAFT);
  EXPECT_EQ(p.kind(), v1::E_VOUCHER);
  EXPECT_EQ(p.origin(), v1::THIRD_PARTY);
  EXPECT_EQ(p.category_id(), "tickets");
  EXPECT_EQ(p.price_fen(), 2500);
  EXPECT_TRUE(Rejected(l.AddProduct(kEarly, "s1", "p1"), "R2",
                       v1::ALREADY_EXISTS,
                       "product p1 already exists in store s1"));
  EXPECT_TRUE(Rejected(l.AddProduct(kEarly, "nope", "p1"), "R2", v1::NOT_FOUND,
                       "store nope not found"));
  // Product ids are per store.
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m1", "MINI_STORE")));
  EXPECT_TRUE(Accepted(l.AddProduct(kEarly, "s2", "p1")));
}

TEST(R2AddProduct, MiniStoreAddsNothingFromEvoucherCutoff) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  EXPECT_TRUE(
      Accepted(l.AddProduct(Shift(kMiniEvoucherCutoff, -1), "s1", "p1")));
  EXPECT_TRUE(Rejected(l.AddProduct(kMiniEvoucherCutoff, "s1", "p2"), "R2",
                       v1::FAILED_PRECONDITION, "MINI_EVOUCHER_CUTOFF"));
  EXPECT_TRUE(Rejected(
      l.AddProduct(Shift(kMiniEvoucherCutoff, 1), "s1", "p3", "E_VOUCHER"),
      "R2", v1::FAILED_PRECONDITION, "MINI_EVOUCHER_CUTOFF"));
}

TEST(R2AddProduct, ChannelsStoreAddsNothingFromNoNewProducts) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m1", "CHANNELS_STORE")));
  EXPECT_TRUE(
      Accepted(l.AddProduct(Shift(kChannelsNoNewProducts, -1), "c1", "p1")));
  EXPECT_TRUE(Rejected(l.AddProduct(kChannelsNoNewProducts, "c1", "p2"), "R2",
                       v1::FAILED_PRECONDITION, "CHANNELS_NO_NEW_PRODUCTS"));
  EXPECT_TRUE(
      Rejected(l.AddProduct(Shift(kChannelsNoNewProducts, 1), "c1", "p3"), "R2",
               v1::FAILED_PRECONDITION, "CHANNELS_NO_NEW_PRODUCTS"));
  // A WeChat Store is not bound by either cutoff.
  ASSERT_TRUE(Accepted(
      l.OpenStore(kChannelsNoNewProducts, "w1", "m1", "WECHAT_STORE")));
  EXPECT_TRUE(Accepted(l.AddProduct(kMiniPhysicalCutoff, "w1", "p1")));
}

TEST(R2AddProduct, UpgradedStoreAddsNothing) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m1", "CHANNELS_STORE")));
  ASSERT_TRUE(Accepted(l.Upgrade(kLaunch, "c1", "w1")));
  EXPECT_TRUE(Rejected(l.AddProduct(kLaunch, "c1", "p1"), "R2",
                       v1::FAILED_PRECONDITION, "store c1 was upgraded to w1"));
}

// ------------------------------------------------------------------ R3

TEST(R3ListProduct, ListsDraftOrDelistedOnly) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p1")));
  const Decision listed = l.ListProduct(kEarly, "s1", "p1", /*live_room=*/true);
  ASSERT_TRUE(Accepted(listed));
  EXPECT_EQ(l.Product("s1", "p1").status(), v1::LISTED);
  EXPECT_TRUE(l.Product("s1", "p1").live_room());
  EXPECT_TRUE(Rejected(l.ListProduct(kEarly, "s1", "p1"), "R3",
                       v1::FAILED_PRECONDITION, "is LISTED"));
  ASSERT_TRUE(Accepted(l.StoreProduct("delistProduct", kEarly, "s1", "p1")));
  EXPECT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "p1")));
  EXPECT_TRUE(Rejected(l.ListProduct(kEarly, "s1", "nope"), "R3", v1::NOT_FOUND,
                       "product nope not found in store s1"));
}

TEST(R3ListProduct, MiniStoreCutoffs) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  for (const char* id : {"e1", "e2", "e3"}) {
    ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", id, "E_VOUCHER")));
  }
  for (const char* id : {"p1", "p2", "p3", "p4"}) {
    ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", id, "PHYSICAL")));
  }
  // E-vouchers: until the e-voucher cutoff.
  EXPECT_TRUE(
      Accepted(l.ListProduct(Shift(kMiniEvoucherCutoff, -1), "s1", "e1")));
  EXPECT_TRUE(Rejected(l.ListProduct(kMiniEvoucherCutoff, "s1", "e2"), "R3",
                       v1::FAILED_PRECONDITION,
                       "no E_VOUCHER product from MINI_EVOUCHER_CUTOFF"));
  EXPECT_TRUE(Rejected(l.ListProduct(Shift(kMiniEvoucherCutoff, 1), "s1", "e3"),
                       "R3", v1::FAILED_PRECONDITION, "MINI_EVOUCHER_CUTOFF"));
  // Physical products: until the physical cutoff.
  EXPECT_TRUE(
      Accepted(l.ListProduct(Shift(kMiniEvoucherCutoff, 1), "s1", "p1")));
  EXPECT_TRUE(
      Accepted(l.ListProduct(Shift(kMiniPhysicalCutoff, -1), "s1", "p2")));
  EXPECT_TRUE(Rejected(l.ListProduct(kMiniPhysicalCutoff, "s1", "p3"), "R3",
                       v1::FAILED_PRECONDITION, "MINI_PHYSICAL_CUTOFF"));
  EXPECT_TRUE(Rejected(l.ListProduct(Shift(kMiniPhysicalCutoff, 1), "s1", "p4"),
                       "R3", v1::FAILED_PRECONDITION, "MINI_PHYSICAL_CUTOFF"));
}

TEST(R3ListProduct, ChannelsStoreLiveRoomClosed) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m1", "CHANNELS_STORE")));
  for (const char* id : {"p1", "p2", "p3", "p4"}) {
    ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "c1", id)));
  }
  EXPECT_TRUE(Accepted(
      l.ListProduct(Shift(kChannelsLiveRoomClosed, -1), "c1", "p1", true)));
  EXPECT_TRUE(Rejected(l.ListProduct(kChannelsLiveRoomClosed, "c1", "p2", true),
                       "R3", v1::FAILED_PRECONDITION,
                       "CHANNELS_LIVE_ROOM_CLOSED"));
  EXPECT_TRUE(Rejected(
      l.ListProduct(Shift(kChannelsLiveRoomClosed, 1), "c1", "p3", true), "R3",
      v1::FAILED_PRECONDITION, "live rooms"));
  // Outside live rooms, listing goes on.
  EXPECT_TRUE(
      Accepted(l.ListProduct(Shift(kChannelsLiveRoomClosed, 1), "c1", "p4")));
}

TEST(R3ListProduct, WeChatStoreNeedsQualificationAndFullDeposit) {
  Policy policy = DefaultPolicy();
  v1::CategoryDeposit* jewels = policy.add_category_deposits();
  jewels->set_category_id("jewels");
  jewels->set_amount_fen(200000);
  MemoryLedger l(policy);
  ASSERT_TRUE(Accepted(l.OpenStore(kOct22, "w1", "m1", "WECHAT_STORE")));
  ASSERT_TRUE(
      Accepted(l.AddProduct(kOct22, "w1", "p1", "PHYSICAL", "OWN", "food")));
  ASSERT_TRUE(
      Accepted(l.AddProduct(kOct22, "w1", "j1", "PHYSICAL", "OWN", "jewels")));
  EXPECT_TRUE(
      Rejected(l.ListProduct(kOct22, "w1", "p1"), "R3", v1::FAILED_PRECONDITION,
               "category food of product p1 is not qualified in store w1"));
  ASSERT_TRUE(Accepted(l.Grant(kOct22, "w1", "food")));
  EXPECT_TRUE(Rejected(l.ListProduct(kOct22, "w1", "p1"), "R3",
                       v1::FAILED_PRECONDITION,
                       "deposit for category food in store w1 is 0 fen; the "
                       "policy requires 50000 fen"));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "food", 49999)));
  EXPECT_TRUE(Rejected(l.ListProduct(kOct22, "w1", "p1"), "R3",
                       v1::FAILED_PRECONDITION, "is 49999 fen"));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "food", 1)));
  EXPECT_TRUE(Accepted(l.ListProduct(kOct22, "w1", "p1")));
  // A per-category deposit in the policy overrides the default.
  ASSERT_TRUE(Accepted(l.Grant(kOct22, "w1", "jewels")));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "jewels", 50000)));
  EXPECT_TRUE(Rejected(l.ListProduct(kOct22, "w1", "j1"), "R3",
                       v1::FAILED_PRECONDITION, "requires 200000 fen"));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "jewels", 150000)));
  EXPECT_TRUE(Accepted(l.ListProduct(kOct22, "w1", "j1")));
}

TEST(R3ListProduct, UpgradedStoreListsNothing) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p1")));
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  EXPECT_TRUE(Rejected(l.ListProduct(kOct22, "s1", "p1"), "R3",
                       v1::FAILED_PRECONDITION, "was upgraded to w1"));
}

// ------------------------------------------------------------------ R4, R5

TEST(R4DelistProduct, ListedOnlyAndAlsoInUpgradedStores) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p2")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "p2")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "draft")));
  EXPECT_TRUE(Rejected(l.StoreProduct("delistProduct", kEarly, "s1", "draft"),
                       "R4", v1::FAILED_PRECONDITION,
                       "product draft in store s1 is DRAFT, not LISTED"));
  const Decision d = l.StoreProduct("delistProduct", kEarly, "s1", "p1");
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.events[0].event.product_delisted().reason(), v1::MERCHANT);
  EXPECT_FALSE(d.events[0].event.product_delisted().has_effective_at());
  EXPECT_EQ(l.Product("s1", "p1").status(), v1::DELISTED);
  EXPECT_EQ(l.Product("s1", "p1").delist_reason(), v1::MERCHANT);
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  EXPECT_TRUE(Accepted(l.StoreProduct("delistProduct", kOct22, "s1", "p2")));
  EXPECT_TRUE(Rejected(l.StoreProduct("delistProduct", kOct22, "s1", "gone"),
                       "R4", v1::NOT_FOUND));
}

TEST(R5DeleteProduct, NotListedAndTerminal) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  EXPECT_TRUE(Rejected(l.StoreProduct("deleteProduct", kEarly, "s1", "p1"),
                       "R5", v1::FAILED_PRECONDITION,
                       "is LISTED; delist it before deleting"));
  ASSERT_TRUE(Accepted(l.StoreProduct("delistProduct", kEarly, "s1", "p1")));
  ASSERT_TRUE(Accepted(l.StoreProduct("deleteProduct", kEarly, "s1", "p1")));
  EXPECT_EQ(l.Product("s1", "p1").status(), v1::DELETED);
  EXPECT_TRUE(Rejected(l.StoreProduct("deleteProduct", kEarly, "s1", "p1"),
                       "R5", v1::FAILED_PRECONDITION, "already DELETED"));
  EXPECT_TRUE(Rejected(l.ListProduct(kEarly, "s1", "p1"), "R3",
                       v1::FAILED_PRECONDITION, "is DELETED"));
  // A draft is deleted directly; so is a product the policy took off the shelf.
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "d1")));
  EXPECT_TRUE(Accepted(l.StoreProduct("deleteProduct", kEarly, "s1", "d1")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p2")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "p2")));
  EXPECT_TRUE(Accepted(
      l.StoreProduct("deleteProduct", kMiniPhysicalCutoff, "s1", "p2")));
}

// ------------------------------------------------------------------ R6

TEST(R6EffectiveStatus, CutoffBoundaries) {
  const Policy& policy = DefaultPolicy();
  ProductRecord voucher;
  voucher.set_kind(v1::E_VOUCHER);
  voucher.set_status(v1::LISTED);
  ProductRecord physical;
  physical.set_kind(v1::PHYSICAL);
  physical.set_status(v1::LISTED);
  auto at = [](const std::string& t) { return ParseTime(t); };
  const std::string ev = kMiniEvoucherCutoff;
  const std::string ph = kMiniPhysicalCutoff;

  EXPECT_EQ(EffectiveStatus(voucher, v1::MINI_STORE, at(Shift(ev, -1)), policy),
            v1::LISTED);
  EXPECT_EQ(EffectiveStatus(voucher, v1::MINI_STORE, at(ev), policy),
            v1::DELISTED);
  EXPECT_EQ(EffectiveStatus(voucher, v1::MINI_STORE, at(Shift(ev, 1)), policy),
            v1::DELISTED);
  EXPECT_EQ(EffectiveStatus(physical, v1::MINI_STORE, at(ev), policy),
            v1::LISTED);
  EXPECT_EQ(
      EffectiveStatus(physical, v1::MINI_STORE, at(Shift(ph, -1)), policy),
      v1::LISTED);
  EXPECT_EQ(EffectiveStatus(physical, v1::MINI_STORE, at(ph), policy),
            v1::DELISTED);
  EXPECT_EQ(EffectiveStatus(physical, v1::MINI_STORE, at(Shift(ph, 1)), policy),
            v1::DELISTED);

  // DRAFT is past the cutoff too; DELETED and DELISTED stay what they are.
  ProductRecord draft = physical;
  draft.set_status(v1::DRAFT);
  EXPECT_EQ(EffectiveStatus(draft, v1::MINI_STORE, at(Shift(ph, -1)), policy),
            v1::DRAFT);
  EXPECT_EQ(EffectiveStatus(draft, v1::MINI_STORE, at(ph), policy),
            v1::DELISTED);
  ProductRecord deleted = voucher;
  deleted.set_status(v1::DELETED);
  EXPECT_EQ(EffectiveStatus(deleted, v1::MINI_STORE, at(ph), policy),
            v1::DELETED);
  // Other kinds of store are not cut off.
  EXPECT_EQ(EffectiveStatus(voucher, v1::CHANNELS_STORE, at(ph), policy),
            v1::LISTED);
  EXPECT_EQ(EffectiveStatus(voucher, v1::WECHAT_STORE, at(ph), policy),
            v1::LISTED);
}

TEST(R6ApplyPolicy, DelistsAtEachCutoffOnceAndOnlyListedProducts) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m2", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m3", "CHANNELS_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "ev", "E_VOUCHER")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "ph", "PHYSICAL")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "draft", "E_VOUCHER")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s2", "ph", "PHYSICAL")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "c1", "ev", "E_VOUCHER")));
  for (auto [store, product] :
       {std::pair{"s1", "ev"}, {"s1", "ph"}, {"s2", "ph"}, {"c1", "ev"}}) {
    ASSERT_TRUE(Accepted(l.ListProduct(kEarly, store, product)));
  }

  const Decision before = l.ApplyPolicy(Shift(kMiniEvoucherCutoff, -1));
  ASSERT_TRUE(Accepted(before));
  EXPECT_TRUE(before.events.empty());

  const Decision at_ev = l.ApplyPolicy(kMiniEvoucherCutoff);
  ASSERT_TRUE(Accepted(at_ev));
  ASSERT_EQ(at_ev.events.size(), 1u);
  EXPECT_EQ(at_ev.events[0].stream_id, "store-s1");
  const v1::ProductDelisted& ev = at_ev.events[0].event.product_delisted();
  EXPECT_EQ(ev.product_id(), "ev");
  EXPECT_EQ(ev.reason(), v1::POLICY_EVOUCHER_CUTOFF);
  EXPECT_EQ(ToTime(ev.effective_at()), ParseTime(kMiniEvoucherCutoff));
  EXPECT_EQ(l.Product("s1", "ev").status(), v1::DELISTED);
  EXPECT_EQ(l.Product("s1", "ev").delist_reason(), v1::POLICY_EVOUCHER_CUTOFF);
  // The draft is not delisted by an event, but it is effectively delisted.
  EXPECT_EQ(l.Product("s1", "draft").status(), v1::DRAFT);
  EXPECT_EQ(EffectiveStatus(l.Product("s1", "draft"), v1::MINI_STORE,
                            ParseTime(kMiniEvoucherCutoff), l.policy()),
            v1::DELISTED);

  const Decision again = l.ApplyPolicy(Shift(kMiniEvoucherCutoff, 1));
  ASSERT_TRUE(Accepted(again));
  EXPECT_TRUE(again.events.empty());
  EXPECT_TRUE(l.ApplyPolicy(Shift(kMiniPhysicalCutoff, -1)).events.empty());

  const Decision at_ph = l.ApplyPolicy(kMiniPhysicalCutoff);
  ASSERT_TRUE(Accepted(at_ph));
  ASSERT_EQ(at_ph.events.size(), 2u);
  EXPECT_EQ(at_ph.events[0].stream_id, "store-s1");
  EXPECT_EQ(at_ph.events[1].stream_id, "store-s2");
  for (const DecidedEvent& e : at_ph.events) {
    EXPECT_EQ(e.event.product_delisted().product_id(), "ph");
    EXPECT_EQ(e.event.product_delisted().reason(), v1::POLICY_PHYSICAL_CUTOFF);
    EXPECT_EQ(ToTime(e.event.product_delisted().effective_at()),
              ParseTime(kMiniPhysicalCutoff));
  }
  EXPECT_TRUE(l.ApplyPolicy(kMiniPhysicalCutoff).events.empty());
  EXPECT_TRUE(l.ApplyPolicy(Shift(kMiniPhysicalCutoff, 1)).events.empty());
  // The Channels store is untouched.
  EXPECT_EQ(l.Product("c1", "ev").status(), v1::LISTED);
}

TEST(R6ApplyPolicy, LateFirstRunUsesEachProductsOwnCutoff) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "ev", "E_VOUCHER")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "ph", "PHYSICAL")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "ev")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "ph")));
  const Decision d = l.ApplyPolicy("2024-12-01T00:00:00+08:00");
  ASSERT_TRUE(Accepted(d));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].event.product_delisted().reason(),
            v1::POLICY_EVOUCHER_CUTOFF);
  EXPECT_EQ(ToTime(d.events[0].event.product_delisted().effective_at()),
            ParseTime(kMiniEvoucherCutoff));
  EXPECT_EQ(d.events[1].event.product_delisted().reason(),
            v1::POLICY_PHYSICAL_CUTOFF);
  EXPECT_TRUE(d.store_ids.empty());
}

// ------------------------------------------------------------------ R7

TEST(R7IndividualBusiness, PersonalOnly) {
  MemoryLedger l;
  ASSERT_TRUE(
      Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE", "PERSONAL")));
  ASSERT_TRUE(
      Accepted(l.OpenStore(kEarly, "s2", "m2", "MINI_STORE", "ENTERPRISE")));
  auto reg = [&](const char* merchant, const char* license) {
    return l.Run(
        kOct22,
        absl::StrCat(R"("registerIndividualBusiness":{"merchantId":")",
                     merchant, R"(","licenseNumber":")", license, R"("})"));
  };
  EXPECT_TRUE(
      Rejected(reg("m1", ""), "R0", v1::INVALID_ARGUMENT,
               "registerIndividualBusiness.licenseNumber must not be empty"));
  EXPECT_TRUE(
      Rejected(reg("m9", "L1"), "R7", v1::NOT_FOUND, "merchant m9 not found"));
  EXPECT_TRUE(Rejected(reg("m2", "L2"), "R7", v1::FAILED_PRECONDITION,
                       "merchant m2 is ENTERPRISE"));
  const Decision d = reg("m1", "92440300MA5XXXXXX1");
  ASSERT_TRUE(Accepted(d));
  ASSERT_EQ(d.events.size(), 1u);
  EXPECT_EQ(d.events[0].stream_id, "merchant-m1");
  EXPECT_EQ(
      d.events[0].event.individual_business_registered().previous_subject(),
      v1::PERSONAL);
  EXPECT_EQ(l.Merchant("m1").subject(), v1::INDIVIDUAL_BUSINESS);
  EXPECT_EQ(l.Merchant("m1").license_number(), "92440300MA5XXXXXX1");
  EXPECT_TRUE(Rejected(reg("m1", "L3"), "R7", v1::FAILED_PRECONDITION,
                       "is INDIVIDUAL_BUSINESS"));
  // Later stores state the new subject (R1).
  EXPECT_TRUE(
      Rejected(l.OpenStore(kOct22, "s3", "m1", "MINI_STORE", "PERSONAL"), "R1",
               v1::FAILED_PRECONDITION, "INDIVIDUAL_BUSINESS"));
  EXPECT_TRUE(Accepted(
      l.OpenStore(kOct22, "s3", "m1", "MINI_STORE", "INDIVIDUAL_BUSINESS")));
}

// ------------------------------------------------------------------ R8

TEST(R8Upgrade, MiniStoreFromUpgradeOpen) {
  MemoryLedger l;
  for (const char* s : {"s1", "s2", "s3"}) {
    ASSERT_TRUE(Accepted(l.OpenStore(kEarly, s, "m1", "MINI_STORE")));
  }
  EXPECT_TRUE(Rejected(l.Upgrade(Shift(kMiniUpgradeOpen, -1), "s1", "w1"), "R8",
                       v1::FAILED_PRECONDITION, "MINI_UPGRADE_OPEN"));
  EXPECT_TRUE(Accepted(l.Upgrade(kMiniUpgradeOpen, "s1", "w1")));
  EXPECT_TRUE(Accepted(l.Upgrade(Shift(kMiniUpgradeOpen, 1), "s2", "w2")));
}

TEST(R8Upgrade, ChannelsStoreFromWeChatLaunch) {
  MemoryLedger l;
  for (const char* s : {"c1", "c2", "c3"}) {
    ASSERT_TRUE(Accepted(l.OpenStore(kEarly, s, "m1", "CHANNELS_STORE")));
  }
  EXPECT_TRUE(Rejected(l.Upgrade(Shift(kLaunch, -1), "c1", "w1"), "R8",
                       v1::FAILED_PRECONDITION, "WECHAT_STORE_LAUNCH"));
  EXPECT_TRUE(Accepted(l.Upgrade(kLaunch, "c1", "w1")));
  EXPECT_TRUE(Accepted(l.Upgrade(Shift(kLaunch, 1), "c2", "w2")));
}

TEST(R8Upgrade, AppendsToBothStreamsAndMovesNoMoney) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 2, 500)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 1000)));
  const Decision d = l.Upgrade(kOct22, "s1", "w1");
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.store_ids, (std::vector<std::string>{"s1", "w1"}));
  ASSERT_EQ(d.events.size(), 2u);
  EXPECT_EQ(d.events[0].stream_id, "store-s1");
  EXPECT_EQ(d.events[0].event.store_upgraded().target_store_id(), "w1");
  EXPECT_EQ(d.events[1].stream_id, "store-w1");
  const v1::StoreOpened& opened = d.events[1].event.store_opened();
  EXPECT_EQ(opened.kind(), v1::WECHAT_STORE);
  EXPECT_EQ(opened.upgraded_from(), "s1");
  EXPECT_EQ(opened.subject(), v1::ENTERPRISE);
  EXPECT_EQ(opened.merchant_id(), "m1");

  const StoreRecord source = l.Store("s1");
  EXPECT_EQ(source.status(), v1::UPGRADED);
  EXPECT_EQ(source.upgraded_to(), "w1");
  EXPECT_EQ(source.balances().pending_fen(), 1000);
  const StoreRecord target = l.Store("w1");
  EXPECT_EQ(target.upgraded_from(), "s1");
  EXPECT_EQ(target.balances().pending_fen(), 0);
  EXPECT_EQ(l.Order("o1").store_id(), "s1");

  EXPECT_TRUE(Rejected(l.Upgrade(kOct22, "s1", "w9"), "R8",
                       v1::FAILED_PRECONDITION,
                       "store s1 was already upgraded to w1"));
  EXPECT_TRUE(Rejected(l.Upgrade(kOct22, "w1", "w9"), "R8",
                       v1::FAILED_PRECONDITION,
                       "only MINI_STORE and CHANNELS_STORE"));
  EXPECT_TRUE(Rejected(l.Upgrade(kOct22, "nope", "w9"), "R8", v1::NOT_FOUND,
                       "store nope not found"));
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m1", "MINI_STORE")));
  EXPECT_TRUE(Rejected(l.Upgrade(kOct22, "s2", "w1"), "R8", v1::ALREADY_EXISTS,
                       "store w1 already exists"));
}

TEST(R8Upgrade, PersonalMerchantMustRegisterAsIndividualBusinessFirst) {
  MemoryLedger l;
  ASSERT_TRUE(
      Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE", "PERSONAL")));
  const Decision refused = l.Upgrade(kOct22, "s1", "w1");
  EXPECT_TRUE(Rejected(refused, "R8", v1::FAILED_PRECONDITION,
                       "register as an individual business first"));
  ASSERT_TRUE(Accepted(l.Run(
      kOct22,
      R"("registerIndividualBusiness":{"merchantId":"m1","licenseNumber":"L-77"})")));
  const Decision d = l.Upgrade(kOct22, "s1", "w1");
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(l.Store("w1").subject(), v1::INDIVIDUAL_BUSINESS);
  EXPECT_EQ(l.Store("w1").license_number(), "L-77");
  EXPECT_EQ(l.Merchant("m1").store_ids().size(), 2);
}

// ------------------------------------------------------------------ R9

TEST(R9Sync, CopiesOwnDraftOrListedAndSaysWhyOthersAreSkipped) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(
      l.AddProduct(kEarly, "s1", "a-listed", "PHYSICAL", "OWN", "food", 700)));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "b-draft")));
  ASSERT_TRUE(Accepted(
      l.AddProduct(kEarly, "s1", "c-third", "PHYSICAL", "THIRD_PARTY")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "d-delisted")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "e-deleted")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "f-voucher", "E_VOUCHER")));
  for (const char* p : {"a-listed", "c-third", "d-delisted", "f-voucher"}) {
    ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", p)));
  }
  ASSERT_TRUE(
      Accepted(l.StoreProduct("delistProduct", kEarly, "s1", "d-delisted")));
  ASSERT_TRUE(
      Accepted(l.StoreProduct("deleteProduct", kEarly, "s1", "e-deleted")));

  EXPECT_TRUE(Rejected(l.Sync(kOct22, "s1", "w1"), "R9", v1::NOT_FOUND,
                       "store w1 not found"));
  ASSERT_TRUE(Accepted(l.OpenStore(kOct22, "w0", "m1", "WECHAT_STORE")));
  EXPECT_TRUE(
      Rejected(l.Sync(kOct22, "s1", "w0"), "R9", v1::FAILED_PRECONDITION,
               "store s1 was not upgraded into w0 (it is not upgraded)"));
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  EXPECT_TRUE(Rejected(l.Sync(kOct22, "s1", "w0"), "R9",
                       v1::FAILED_PRECONDITION, "(it upgraded into w1)"));

  // After the e-voucher cutoff: the listed e-voucher is delisted by policy,
  // though no event said so.
  const char* kSyncAt = "2024-11-05T10:00:00+08:00";
  const Decision d = l.Sync(kSyncAt, "s1", "w1");
  ASSERT_TRUE(Accepted(d));
  EXPECT_EQ(d.synced_product_ids,
            (std::vector<std::string>{"a-listed", "b-draft"}));
  std::vector<std::pair<std::string, std::string>> skipped;
  for (const v1::SyncSkip& s : d.skipped)
    skipped.push_back({s.product_id(), s.reason()});
  EXPECT_EQ(skipped, (std::vector<std::pair<std::string, std::string>>{
                         {"c-third", "third-party product"},
                         {"d-delisted", "delisted"},
                         {"e-deleted", "deleted"},
                         {"f-voucher", "delisted by policy"}}));
  // The two copies, then the outcome on the target's stream (R9 amended).
  ASSERT_EQ(d.events.size(), 3u);
  for (const DecidedEvent& e : d.events) EXPECT_EQ(e.stream_id, "store-w1");
  EXPECT_EQ(d.events[0].event.product_added().synced_from(), "s1");
  EXPECT_EQ(d.events[1].event.product_added().synced_from(), "s1");
  const v1::ProductsSynced& outcome = d.events[2].event.products_synced();
  EXPECT_EQ(outcome.source_store_id(), "s1");
  EXPECT_EQ(std::vector<std::string>(outcome.copied_product_ids().begin(),
                                     outcome.copied_product_ids().end()),
            d.synced_product_ids);
  ASSERT_EQ(outcome.skipped_size(), 4);
  EXPECT_EQ(outcome.skipped(3).product_id(), "f-voucher");
  EXPECT_EQ(outcome.skipped(3).reason(), "delisted by policy");
  const ProductRecord copy = l.Product("w1", "a-listed");
  EXPECT_EQ(copy.status(), v1::DRAFT);  // never listed automatically
  EXPECT_EQ(copy.synced_from(), "s1");
  EXPECT_EQ(copy.price_fen(), 700);
  EXPECT_EQ(copy.origin(), v1::OWN);
  EXPECT_EQ(copy.category_id(), "food");
  // The source keeps its products.
  EXPECT_EQ(l.Product("s1", "a-listed").status(), v1::LISTED);

  const Decision rerun = l.Sync(kSyncAt, "s1", "w1");
  ASSERT_TRUE(Accepted(rerun));
  // Copying nothing still records its outcome.
  ASSERT_EQ(rerun.events.size(), 1u);
  EXPECT_EQ(rerun.events[0].event.products_synced().skipped_size(), 6);
  EXPECT_EQ(rerun.events[0].event.products_synced().copied_product_ids_size(),
            0);
  EXPECT_TRUE(rerun.synced_product_ids.empty());
  ASSERT_EQ(rerun.skipped.size(), 6u);
  EXPECT_EQ(rerun.skipped[0].product_id(), "a-listed");
  EXPECT_EQ(rerun.skipped[0].reason(), "already synced");
  EXPECT_EQ(rerun.skipped[1].reason(), "already synced");
}

TEST(R9Sync, PhysicalCutoffDelistsByPolicyAtTheBoundary) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "p1")));
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  const Decision at = l.Sync(kMiniPhysicalCutoff, "s1", "w1");
  ASSERT_TRUE(Accepted(at));
  EXPECT_TRUE(at.synced_product_ids.empty());
  ASSERT_EQ(at.skipped.size(), 1u);
  EXPECT_EQ(at.skipped[0].reason(), "delisted by policy");

  MemoryLedger before;
  ASSERT_TRUE(Accepted(before.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(before.AddProduct(kEarly, "s1", "p1")));
  ASSERT_TRUE(Accepted(before.Upgrade(kOct22, "s1", "w1")));
  EXPECT_EQ(before.Sync(Shift(kMiniPhysicalCutoff, -1), "s1", "w1")
                .synced_product_ids,
            std::vector<std::string>{"p1"});
}

TEST(R9Sync, ChannelsStoreCopies) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m1", "CHANNELS_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "c1", "p1", "E_VOUCHER")));
  ASSERT_TRUE(Accepted(l.Upgrade(kLaunch, "c1", "w1")));
  // A product of the same id made in the target first is not overwritten.
  ASSERT_TRUE(Accepted(l.AddProduct(kLaunch, "w1", "p1")));
  const Decision d = l.Sync(kMiniPhysicalCutoff, "c1", "w1");
  ASSERT_TRUE(Accepted(d));
  ASSERT_EQ(d.skipped.size(), 1u);
  EXPECT_EQ(d.skipped[0].reason(),
            "product id already used in the target store");
}

// ------------------------------------------------------------------ R10

TEST(R10PlaceOrder, EveryLineEffectivelyListedInTheSameStore) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "draft")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s1", "ev", "E_VOUCHER")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s1", "ev")));
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m2", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "s2", "only-in-s2")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "s2", "only-in-s2")));

  EXPECT_TRUE(Rejected(
      l.PlaceOrder(kEarly, "s1", "o1", "draft"), "R10", v1::FAILED_PRECONDITION,
      "placeOrder.lines[0].productId: product draft in store s1 is DRAFT"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s1", "o1", "only-in-s2"), "R10",
                       v1::NOT_FOUND,
                       "product only-in-s2 not found in store s1"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "nope", "o1", "p1"), "R10",
                       v1::NOT_FOUND, "store nope not found"));
  const Decision placed = l.PlaceOrder(kEarly, "s1", "o1", "p1", 3, 250);
  ASSERT_TRUE(Accepted(placed));
  EXPECT_EQ(placed.events[0].event.order_placed().total_fen(), 750);
  const OrderRecord o1 = l.Order("o1");
  EXPECT_EQ(o1.status(), v1::PLACED);
  EXPECT_EQ(o1.total_fen(), 750);
  EXPECT_EQ(o1.store_id(), "s1");
  // Order ids are unique ledger-wide.
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s1", "o1", "p1"), "R10",
                       v1::ALREADY_EXISTS, "order o1 already exists"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kEarly, "s2", "o1", "only-in-s2"), "R10",
                       v1::ALREADY_EXISTS, "(in store s1)"));
  // Past the e-voucher cutoff the e-voucher is effectively delisted (R6),
  // although ApplyPolicy has not run.
  EXPECT_TRUE(
      Accepted(l.PlaceOrder(Shift(kMiniEvoucherCutoff, -1), "s1", "o2", "ev")));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kMiniEvoucherCutoff, "s1", "o3", "ev"),
                       "R10", v1::FAILED_PRECONDITION,
                       "is DELISTED (policy cutoff)"));
  EXPECT_TRUE(Accepted(l.PlaceOrder(kMiniEvoucherCutoff, "s1", "o4", "p1")));
}

TEST(R10PlaceOrder, UpgradedStoreStillTakesOrdersOnListedProducts) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  ASSERT_TRUE(Accepted(l.PlaceOrder(kOct22, "s1", "o1", "p1")));
  EXPECT_EQ(l.Order("o1").store_id(), "s1");
}

TEST(R10PlaceOrder, OfficialAccountOnlyInWeChatStoreFromOfficialAccountSales) {
  MemoryLedger l;
  WeChatStoreWithListedProduct(l, kLaunch);
  EXPECT_TRUE(Rejected(l.PlaceOrder(Shift(kOfficialAccountSales, -1), "w1",
                                    "o1", "p1", 1, 1000, "OFFICIAL_ACCOUNT"),
                       "R10", v1::FAILED_PRECONDITION,
                       "OFFICIAL_ACCOUNT_SALES"));
  EXPECT_TRUE(Accepted(l.PlaceOrder(kOfficialAccountSales, "w1", "o2", "p1", 1,
                                    1000, "OFFICIAL_ACCOUNT")));
  EXPECT_TRUE(Accepted(l.PlaceOrder(Shift(kOfficialAccountSales, 1), "w1", "o3",
                                    "p1", 1, 1000, "OFFICIAL_ACCOUNT")));
  MiniStoreWithListedProduct(l);
  EXPECT_TRUE(Rejected(
      l.PlaceOrder(kOct22, "s1", "o4", "p1", 1, 1000, "OFFICIAL_ACCOUNT"),
      "R10", v1::FAILED_PRECONDITION,
      "only by a WECHAT_STORE; store s1 is a MINI_STORE"));
}

TEST(R10PlaceOrder, NoLiveRoomOrdersInChannelsStoresFromLiveRoomClosed) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "c1", "m1", "CHANNELS_STORE")));
  ASSERT_TRUE(Accepted(l.AddProduct(kEarly, "c1", "p1")));
  ASSERT_TRUE(Accepted(l.ListProduct(kEarly, "c1", "p1", true)));
  EXPECT_TRUE(Accepted(l.PlaceOrder(Shift(kChannelsLiveRoomClosed, -1), "c1",
                                    "o1", "p1", 1, 1000, "LIVE_ROOM")));
  EXPECT_TRUE(Rejected(l.PlaceOrder(kChannelsLiveRoomClosed, "c1", "o2", "p1",
                                    1, 1000, "LIVE_ROOM"),
                       "R10", v1::FAILED_PRECONDITION,
                       "CHANNELS_LIVE_ROOM_CLOSED"));
  EXPECT_TRUE(Rejected(l.PlaceOrder(Shift(kChannelsLiveRoomClosed, 1), "c1",
                                    "o3", "p1", 1, 1000, "LIVE_ROOM"),
                       "R10", v1::FAILED_PRECONDITION, "no LIVE_ROOM orders"));
  EXPECT_TRUE(Accepted(
      l.PlaceOrder(Shift(kChannelsLiveRoomClosed, 1), "c1", "o4", "p1")));
  // Live-room orders go on elsewhere.
  WeChatStoreWithListedProduct(l, kChannelsLiveRoomClosed);
  EXPECT_TRUE(Accepted(l.PlaceOrder(kChannelsLiveRoomClosed, "w1", "o5", "p1",
                                    1, 1000, "LIVE_ROOM")));
}

// ------------------------------------------------------------------ R11

TEST(R11PayAndCancel, PlacedOnlyAndExactAmount) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 2, 500)));
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o2", "p1", 1, 500)));
  EXPECT_TRUE(Rejected(
      l.OrderMoney("payOrder", kEarly, "s1", "o1", 999), "R11",
      v1::FAILED_PRECONDITION,
      "payOrder.amountFen must equal the total 1000 fen of order o1, got 999"));
  EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", kEarly, "s1", "o9", 1000),
                       "R11", v1::NOT_FOUND, "order o9 not found"));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 1000)));
  EXPECT_EQ(l.Order("o1").status(), v1::PAID);
  EXPECT_EQ(l.Order("o1").paid_fen(), 1000);
  EXPECT_EQ(l.Store("s1").balances().pending_fen(), 1000);
  EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", kEarly, "s1", "o1", 1000),
                       "R11", v1::FAILED_PRECONDITION,
                       "order o1 is PAID; only a PLACED order is paid"));
  EXPECT_TRUE(Rejected(l.OrderVerb("cancelOrder", kEarly, "s1", "o1"), "R11",
                       v1::FAILED_PRECONDITION,
                       "only a PLACED order is cancelled"));
  ASSERT_TRUE(Accepted(l.OrderVerb("cancelOrder", kEarly, "s1", "o2")));
  EXPECT_EQ(l.Order("o2").status(), v1::CANCELLED);
  EXPECT_EQ(l.Store("s1").balances().pending_fen(), 1000);
  EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", kEarly, "s1", "o2", 500), "R11",
                       v1::FAILED_PRECONDITION, "is CANCELLED"));
}

// ------------------------------------------------------------------ R12

TEST(R12ShipSettleRefund, SettleMovesPendingToAvailable) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 10000)));
  EXPECT_TRUE(Rejected(l.OrderVerb("shipOrder", kEarly, "s1", "o1"), "R12",
                       v1::FAILED_PRECONDITION,
                       "order o1 is PLACED; only a PAID order is shipped"));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 10000)));
  EXPECT_TRUE(Rejected(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 0),
                       "R12", v1::FAILED_PRECONDITION,
                       "only a SHIPPED order is settled"));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  EXPECT_EQ(l.Order("o1").status(), v1::SHIPPED);
  // A partial refund before settlement comes out of pending.
  const Decision refund = l.OrderMoney("refundOrder", kEarly, "s1", "o1", 2000);
  ASSERT_TRUE(Accepted(refund));
  EXPECT_EQ(refund.events[0].event.order_refunded().source(), v1::FROM_PENDING);
  EXPECT_FALSE(refund.events[0].event.order_refunded().fully_refunded());
  EXPECT_EQ(l.Store("s1").balances().pending_fen(), 8000);
  EXPECT_EQ(l.Order("o1").status(), v1::SHIPPED);

  EXPECT_TRUE(Rejected(
      l.OrderMoney("settleOrder", kEarly, "s1", "o1", 8001), "R12",
      v1::FAILED_PRECONDITION,
      "settleOrder.commissionFen must be <= 8000 (paid 10000 - refunded 2000"));
  const Decision settled = l.OrderMoney("settleOrder", kEarly, "s1", "o1", 300);
  ASSERT_TRUE(Accepted(settled));
  const v1::OrderSettled& s = settled.events[0].event.order_settled();
  EXPECT_EQ(s.gross_fen(), 8000);
  EXPECT_EQ(s.commission_fen(), 300);
  EXPECT_EQ(s.net_fen(), 7700);
  const StoreRecord store = l.Store("s1");
  EXPECT_EQ(store.balances().pending_fen(), 0);
  EXPECT_EQ(store.balances().available_fen(), 7700);
  EXPECT_EQ(l.Order("o1").status(), v1::SETTLED);
  EXPECT_EQ(l.Order("o1").commission_fen(), 300);
}

TEST(R12ShipSettleRefund, ZeroCommissionIsAllowed) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 100)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 100)));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 0)));
  EXPECT_EQ(l.Store("s1").balances().available_fen(), 100);
}

TEST(R12ShipSettleRefund, RefundAfterSettlementNeedsAvailable) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 10000)));
  EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 1),
                       "R12", v1::FAILED_PRECONDITION,
                       "only a PAID or SHIPPED or SETTLED order is refunded"));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 10000)));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 1000)));
  ASSERT_EQ(l.Store("s1").balances().available_fen(), 9000);
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd1", 8500)));
  // 500 available; the order could refund 10000.
  EXPECT_TRUE(
      Rejected(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 501), "R12",
               v1::INSUFFICIENT_FUNDS,
               "refundOrder.amountFen 501 exceeds the available balance 500"));
  EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 10001),
                       "R12", v1::FAILED_PRECONDITION,
                       "refundOrder.amountFen must be <= 10000"));
  const Decision refund = l.OrderMoney("refundOrder", kEarly, "s1", "o1", 500);
  ASSERT_TRUE(Accepted(refund));
  EXPECT_EQ(refund.events[0].event.order_refunded().source(),
            v1::FROM_AVAILABLE);
  EXPECT_EQ(l.Store("s1").balances().available_fen(), 0);
  EXPECT_EQ(l.Order("o1").refunded_fen(), 500);
  EXPECT_EQ(l.Order("o1").status(), v1::SETTLED);
}

TEST(R12ShipSettleRefund, FullRefundEndsRefunded) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 1000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 1000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 400)));
  const Decision rest = l.OrderMoney("refundOrder", kEarly, "s1", "o1", 600);
  ASSERT_TRUE(Accepted(rest));
  EXPECT_TRUE(rest.events[0].event.order_refunded().fully_refunded());
  EXPECT_EQ(l.Order("o1").status(), v1::REFUNDED);
  EXPECT_EQ(l.Order("o1").refunded_fen(), 1000);
  EXPECT_EQ(l.Store("s1").balances().pending_fen(), 0);
  EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", kEarly, "s1", "o1", 1),
                       "R12", v1::FAILED_PRECONDITION, "is REFUNDED"));
  EXPECT_TRUE(Rejected(l.OrderVerb("shipOrder", kEarly, "s1", "o1"), "R12",
                       v1::FAILED_PRECONDITION, "is REFUNDED"));
}

// ------------------------------------------------------------------ R13

TEST(R13FundsNeverMix, OrdersAndWithdrawalsUnderAnotherStoreAreRejected) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s2", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 1000)));
  EXPECT_TRUE(Rejected(l.OrderMoney("payOrder", kEarly, "s2", "o1", 1000),
                       "R13", v1::FAILED_PRECONDITION,
                       "order o1 belongs to store s1, not s2"));
  EXPECT_TRUE(Rejected(l.OrderVerb("cancelOrder", kEarly, "s2", "o1"), "R13",
                       v1::FAILED_PRECONDITION, "belongs to store s1"));
  // Even naming a store that does not exist.
  EXPECT_TRUE(Rejected(l.OrderVerb("shipOrder", kEarly, "ghost", "o1"), "R13",
                       v1::FAILED_PRECONDITION, "not ghost"));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 1000)));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  EXPECT_TRUE(Rejected(l.OrderMoney("settleOrder", kEarly, "s2", "o1", 0),
                       "R13", v1::FAILED_PRECONDITION));
  EXPECT_TRUE(Rejected(l.OrderMoney("refundOrder", kEarly, "s2", "o1", 5),
                       "R13", v1::FAILED_PRECONDITION));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 0)));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd1", 100)));
  EXPECT_TRUE(Rejected(
      l.WithdrawalVerb("completeWithdrawal", kEarly, "s2", "wd1"), "R13",
      v1::FAILED_PRECONDITION, "withdrawal wd1 belongs to store s1, not s2"));
  EXPECT_TRUE(Rejected(l.WithdrawalVerb("failWithdrawal", kEarly, "s2", "wd1"),
                       "R13", v1::FAILED_PRECONDITION));
  // Upgrade: the legacy store's money stays there; its orders and
  // withdrawals keep running.
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  EXPECT_TRUE(
      Rejected(l.WithdrawalVerb("completeWithdrawal", kOct22, "w1", "wd1"),
               "R13", v1::FAILED_PRECONDITION, "not w1"));
  EXPECT_TRUE(
      Accepted(l.WithdrawalVerb("completeWithdrawal", kOct22, "s1", "wd1")));
  EXPECT_TRUE(Accepted(l.RequestWithdrawal(kOct22, "s1", "wd2", 900)));
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kOct22, "w1", "wd3", 1), "R14",
                       v1::INSUFFICIENT_FUNDS));
}

// ------------------------------------------------------------------ R14

TEST(R14Withdrawal, RequestCompleteFail) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 5000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 5000)));
  // Pending money is not withdrawable.
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kEarly, "s1", "wd1", 1), "R14",
                       v1::INSUFFICIENT_FUNDS,
                       "requestWithdrawal.amountFen 1 exceeds the available "
                       "balance 0 of store s1"));
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kEarly, "s1", "o1")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kEarly, "s1", "o1", 0)));
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kEarly, "s1", "wd1", 5001), "R14",
                       v1::INSUFFICIENT_FUNDS));
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kEarly, "nope", "wd1", 1), "R14",
                       v1::NOT_FOUND));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd1", 3000)));
  EXPECT_EQ(l.Withdrawal("wd1").status(), v1::WITHDRAWING);
  EXPECT_EQ(l.Store("s1").balances().available_fen(), 2000);
  EXPECT_EQ(l.Store("s1").balances().withdrawing_fen(), 3000);
  EXPECT_TRUE(Rejected(l.RequestWithdrawal(kEarly, "s1", "wd1", 1), "R14",
                       v1::ALREADY_EXISTS, "withdrawal wd1 already exists"));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kEarly, "s1", "wd2", 2000)));
  EXPECT_EQ(l.Store("s1").balances().available_fen(), 0);

  const Decision done =
      l.WithdrawalVerb("completeWithdrawal", kEarly, "s1", "wd1");
  ASSERT_TRUE(Accepted(done));
  EXPECT_EQ(done.events[0].event.withdrawal_completed().amount_fen(), 3000);
  EXPECT_EQ(l.Withdrawal("wd1").status(), v1::PAID_OUT);
  EXPECT_TRUE(Rejected(
      l.WithdrawalVerb("completeWithdrawal", kEarly, "s1", "wd1"), "R14",
      v1::FAILED_PRECONDITION, "withdrawal wd1 is PAID_OUT, not WITHDRAWING"));
  EXPECT_TRUE(Rejected(l.WithdrawalVerb("failWithdrawal", kEarly, "s1", "wd1"),
                       "R14", v1::FAILED_PRECONDITION, "PAID_OUT"));
  ASSERT_TRUE(
      Accepted(l.WithdrawalVerb("failWithdrawal", kEarly, "s1", "wd2")));
  EXPECT_EQ(l.Withdrawal("wd2").status(), v1::WITHDRAWAL_FAILED);
  EXPECT_TRUE(Rejected(l.WithdrawalVerb("failWithdrawal", kEarly, "s1", "wd9"),
                       "R14", v1::NOT_FOUND, "withdrawal wd9 not found"));
  const v1::Balances b = l.Store("s1").balances();
  EXPECT_EQ(b.available_fen(), 2000);
  EXPECT_EQ(b.withdrawing_fen(), 0);
  EXPECT_EQ(b.paid_out_fen(), 3000);
  EXPECT_EQ(b.pending_fen(), 0);
}

TEST(R14Withdrawal, LegacyStoreWithdrawsAfterUpgrade) {
  MemoryLedger l;
  MiniStoreWithListedProduct(l);
  ASSERT_TRUE(Accepted(l.PlaceOrder(kEarly, "s1", "o1", "p1", 1, 5000)));
  ASSERT_TRUE(Accepted(l.OrderMoney("payOrder", kEarly, "s1", "o1", 5000)));
  ASSERT_TRUE(Accepted(l.Upgrade(kOct22, "s1", "w1")));
  // An open order of the legacy store runs to settlement there.
  ASSERT_TRUE(Accepted(l.OrderVerb("shipOrder", kOct22, "s1", "o1")));
  ASSERT_TRUE(Accepted(l.OrderMoney("settleOrder", kOct22, "s1", "o1", 50)));
  ASSERT_TRUE(Accepted(l.RequestWithdrawal(kOct22, "s1", "wd1", 4950)));
  ASSERT_TRUE(
      Accepted(l.WithdrawalVerb("completeWithdrawal", kOct22, "s1", "wd1")));
  EXPECT_EQ(l.Store("s1").balances().paid_out_fen(), 4950);
  EXPECT_EQ(l.Store("w1").balances().paid_out_fen(), 0);
}

// ------------------------------------------------------------------ R15

TEST(R15Categories, WeChatStoreOnly) {
  MemoryLedger l;
  ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "s1", "m1", "MINI_STORE")));
  ASSERT_TRUE(Accepted(l.OpenStore(kOct22, "w1", "m1", "WECHAT_STORE")));
  EXPECT_TRUE(Rejected(l.Grant(kOct22, "s1", "food"), "R15",
                       v1::FAILED_PRECONDITION,
                       "store s1 is a MINI_STORE; categories are qualified "
                       "only in a WECHAT_STORE"));
  EXPECT_TRUE(Rejected(l.PayDeposit(kOct22, "s1", "food", 100), "R15",
                       v1::FAILED_PRECONDITION,
                       "deposits are paid only in a WECHAT_STORE"));
  EXPECT_TRUE(Rejected(l.Grant(kOct22, "w9", "food"), "R15", v1::NOT_FOUND));
  ASSERT_TRUE(Accepted(l.Grant(kOct22, "w1", "toys")));
  ASSERT_TRUE(Accepted(l.Grant(kOct22, "w1", "food")));
  EXPECT_TRUE(Rejected(l.Grant(kOct22, "w1", "food"), "R15", v1::ALREADY_EXISTS,
                       "category food is already qualified in store w1"));
  const StoreRecord w1 = l.Store("w1");
  ASSERT_EQ(w1.qualified_categories_size(), 2);
  EXPECT_EQ(w1.qualified_categories(0), "food");
  EXPECT_EQ(w1.qualified_categories(1), "toys");

  EXPECT_TRUE(Rejected(l.PayDeposit(kOct22, "w1", "food", 0), "R0",
                       v1::INVALID_ARGUMENT,
                       "payDeposit.amountFen must be > 0"));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "food", 30000)));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "food", 20000)));
  ASSERT_TRUE(Accepted(l.PayDeposit(kOct22, "w1", "toys", 5)));
  const StoreRecord paid = l.Store("w1");
  EXPECT_EQ(paid.balances().deposit_fen(), 50005);
  EXPECT_EQ(paid.deposit_fen_by_category().at("food"), 50000);
  EXPECT_EQ(paid.deposit_fen_by_category().at("toys"), 5);
}

}  // namespace
}  // namespace storeledger

namespace storeledger {
namespace {

// A state whose store "big" holds `count` products, without deciding them
// one by one.
class BigStoreState : public StateOverlay {
 public:
  BigStoreState(const StateReader* base, size_t count)
      : StateOverlay(base), count_(count) {}
  // The store record counts its products (R2 reads the count, not the list).
  absl::StatusOr<RecordRef<StoreRecord>> Store(
      absl::string_view store_id) const override {
    ASSIGN_OR_RETURN(RecordRef<StoreRecord> store,
                     StateOverlay::Store(store_id));
    if (store && store_id == "big") {
      auto counted = std::make_shared<StoreRecord>(*store);
      counted->set_product_count(static_cast<int64_t>(count_));
      return RecordRef<StoreRecord>(std::move(counted));
    }
    return store;
  }
  absl::StatusOr<std::vector<ProductRecord>> Products(
      absl::string_view store_id) const override {
    if (store_id != "big") return StateOverlay::Products(store_id);
    std::vector<ProductRecord> products(count_);
    for (size_t i = 0; i < count_; ++i) {
      products[i].set_store_id("big");
      products[i].set_product_id(absl::StrCat("p", i));
      products[i].set_status(v1::DRAFT);
    }
    return products;
  }

 private:
  size_t count_;
};

TEST(Limits, ProductsPerStore) {
  for (size_t count : {kProductsPerStoreMax - 1, kProductsPerStoreMax}) {
    MemoryLedger l;
    ASSERT_TRUE(Accepted(l.OpenStore(kEarly, "big", "m1", "CHANNELS_STORE")));
    BigStoreState state(&l.state(), count);
    const Decision d = *Decide(
        ParseCommand(
            kEarly,
            R"("addProduct":{"storeId":"big","productId":"new","kind":"PHYSICAL","origin":"OWN","categoryId":"food","priceFen":"1"})"),
        state, l.policy());
    if (count < kProductsPerStoreMax) {
      EXPECT_TRUE(Accepted(d));
    } else {
      EXPECT_TRUE(
          Rejected(d, "R2", v1::FAILED_PRECONDITION,
                   "already holds 50000 products, the maximum is 50000"));
    }
  }
}

TEST(Messages, NameTheInstantsInChinaTime) {
  MemoryLedger l;
  const Decision d =
      l.OpenStore(Shift(kLaunch, -1), "w0", "m1", "WECHAT_STORE");
  EXPECT_EQ(d.message,
            "WECHAT_STORE stores open from WECHAT_STORE_LAUNCH "
            "(2024-08-25T00:00:00+08:00); occurredAt is "
            "2024-08-24T23:59:59+08:00");
}

}  // namespace
}  // namespace storeledger
