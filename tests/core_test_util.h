// Test helpers for the pure core: a ledger in memory (StateOverlay over
// EmptyState), commands written as JSON bodies, accepted decisions folded in
// with Evolve, and assertions on decisions.
#ifndef STORELEDGER_TESTS_CORE_TEST_UTIL_H_
#define STORELEDGER_TESTS_CORE_TEST_UTIL_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/policy.h"
#include "core/state.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace storeledger::testing_core {

// One event as it would have been appended.
struct AppliedEvent {
  std::string stream_id;
  uint64_t stream_version;
  absl::Time occurred_at;
  v1::Event event;
};

// Policy instants of the default calendar (China time).
inline constexpr char kLaunch[] = "2024-08-25T00:00:00+08:00";
inline constexpr char kChannelsNoNewProducts[] = "2024-09-25T00:00:00+08:00";
inline constexpr char kOfficialAccountSales[] = "2024-09-27T00:00:00+08:00";
inline constexpr char kMiniUpgradeOpen[] = "2024-10-21T00:00:00+08:00";
inline constexpr char kChannelsLiveRoomClosed[] = "2024-10-25T00:00:00+08:00";
inline constexpr char kMiniEvoucherCutoff[] = "2024-11-04T00:00:00+08:00";
inline constexpr char kMiniPhysicalCutoff[] = "2024-11-18T00:00:00+08:00";
inline constexpr char kEarly[] = "2024-08-01T09:00:00+08:00";

inline absl::Time ParseTime(absl::string_view rfc3339) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &error))
      << rfc3339 << ": " << error;
  return t;
}

// `rfc3339` moved by `seconds`, in China time.
inline std::string Shift(absl::string_view rfc3339, int64_t seconds) {
  return absl::FormatTime(absl::RFC3339_sec,
                          ParseTime(rfc3339) + absl::Seconds(seconds),
                          absl::FixedTimeZone(8 * 60 * 60));
}

inline v1::Command ParseCommand(absl::string_view at, absl::string_view body) {
  static int next_id = 0;
  const std::string json =
      absl::StrCat(R"({"commandId":"c-)", ++next_id, R"(","occurredAt":")", at,
                   R"(",)", body, "}");
  v1::Command command;
  auto status = google::protobuf::util::JsonStringToMessage(json, &command);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return command;
}

class MemoryLedger {
 public:
  explicit MemoryLedger(Policy policy = DefaultPolicy())
      : policy_(std::move(policy)) {}

  // Decides `body` (a JSON command body such as `"applyPolicy":{}`) at `at`;
  // folds the events in when accepted.
  Decision Run(absl::string_view at, absl::string_view body) {
    return RunCommand(ParseCommand(at, body));
  }

  Decision RunCommand(const v1::Command& command) {
    absl::StatusOr<Decision> decision = Decide(command, state_, policy_);
    EXPECT_TRUE(decision.ok()) << decision.status();
    if (!decision.ok()) return Decision();
    if (decision->accepted) {
      const absl::Time at = ToTime(command.occurred_at());
      for (const DecidedEvent& e : decision->events) {
        absl::StatusOr<RecordRef<StreamHead>> head = state_.Head(e.stream_id);
        EXPECT_TRUE(head.ok());
        const uint64_t version =
            (head.ok() && *head) ? (*head)->version() + 1 : 1;
        absl::Status status =
            Evolve(e.stream_id, version, at, e.event, &state_);
        EXPECT_TRUE(status.ok())
            << status << " evolving " << e.event.ShortDebugString();
        log_.push_back({e.stream_id, version, at, e.event});
      }
    }
    return *std::move(decision);
  }

  // Common commands.
  Decision OpenStore(absl::string_view at, absl::string_view store,
                     absl::string_view merchant, absl::string_view kind,
                     absl::string_view subject = "ENTERPRISE") {
    return Run(
        at, absl::StrCat(R"("openStore":{"storeId":")", store,
                         R"(","merchantId":")", merchant, R"(","kind":")", kind,
                         R"(","subject":")", subject, R"("})"));
  }
  Decision AddProduct(absl::string_view at, absl::string_view store,
                      absl::string_view product,
                      absl::string_view kind = "PHYSICAL",
                      absl::string_view origin = "OWN",
                      absl::string_view category = "food",
                      int64_t price_fen = 1000) {
    return Run(
        at, absl::StrCat(R"("addProduct":{"storeId":")", store,
                         R"(","productId":")", product, R"(","kind":")", kind,
                         R"(","origin":")", origin, R"(","categoryId":")",
                         category, R"(","priceFen":")", price_fen, R"("})"));
  }
  Decision ListProduct(absl::string_view at, absl::string_view store,
                       absl::string_view product, bool live_room = false) {
    return Run(at,
               absl::StrCat(R"("listProduct":{"storeId":")", store,
                            R"(","productId":")", product, R"(","liveRoom":)",
                            live_room ? "true" : "false", "}"));
  }
  Decision StoreProduct(absl::string_view verb, absl::string_view at,
                        absl::string_view store, absl::string_view product) {
    return Run(at, absl::StrCat(R"(")", verb, R"(":{"storeId":")", store,
                                R"(","productId":")", product, R"("})"));
  }
  Decision PlaceOrder(absl::string_view at, absl::string_view store,
                      absl::string_view order, absl::string_view product,
                      int64_t quantity = 1, int64_t unit_price_fen = 1000,
                      absl::string_view channel = "STORE_PAGE") {
    return Run(
        at, absl::StrCat(R"("placeOrder":{"storeId":")", store,
                         R"(","orderId":")", order, R"(","channel":")", channel,
                         R"(","lines":[{"productId":")", product,
                         R"(","quantity":")", quantity, R"(","unitPriceFen":")",
                         unit_price_fen, R"("}]})"));
  }
  // cancelOrder / shipOrder: no amount.
  Decision OrderVerb(absl::string_view verb, absl::string_view at,
                     absl::string_view store, absl::string_view order) {
    return Run(at, absl::StrCat(R"(")", verb, R"(":{"storeId":")", store,
                                R"(","orderId":")", order, R"("})"));
  }
  // payOrder / refundOrder (amountFen), settleOrder (commissionFen).
  Decision OrderMoney(absl::string_view verb, absl::string_view at,
                      absl::string_view store, absl::string_view order,
                      int64_t fen) {
    const absl::string_view field =
        verb == "settleOrder" ? "commissionFen" : "amountFen";
    return Run(at, absl::StrCat(R"(")", verb, R"(":{"storeId":")", store,
                                R"(","orderId":")", order, R"(",")", field,
                                R"(":")", fen, R"("})"));
  }
  Decision RequestWithdrawal(absl::string_view at, absl::string_view store,
                             absl::string_view id, int64_t fen) {
    return Run(at, absl::StrCat(R"("requestWithdrawal":{"storeId":")", store,
                                R"(","withdrawalId":")", id,
                                R"(","amountFen":")", fen, R"("})"));
  }
  Decision WithdrawalVerb(absl::string_view verb, absl::string_view at,
                          absl::string_view store, absl::string_view id) {
    return Run(at, absl::StrCat(R"(")", verb, R"(":{"storeId":")", store,
                                R"(","withdrawalId":")", id, R"("})"));
  }
  Decision Upgrade(absl::string_view at, absl::string_view source,
                   absl::string_view target) {
    return Run(at, absl::StrCat(R"("upgradeStore":{"sourceStoreId":")", source,
                                R"(","targetStoreId":")", target, R"("})"));
  }
  Decision Sync(absl::string_view at, absl::string_view source,
                absl::string_view target) {
    return Run(at, absl::StrCat(R"("syncProducts":{"sourceStoreId":")", source,
                                R"(","targetStoreId":")", target, R"("})"));
  }
  Decision Grant(absl::string_view at, absl::string_view store,
                 absl::string_view category) {
    return Run(
        at, absl::StrCat(R"("grantCategoryQualification":{"storeId":")", store,
                         R"(","categoryId":")", category, R"("})"));
  }
  Decision PayDeposit(absl::string_view at, absl::string_view store,
                      absl::string_view category, int64_t fen) {
    return Run(at, absl::StrCat(R"("payDeposit":{"storeId":")", store,
                                R"(","categoryId":")", category,
                                R"(","amountFen":")", fen, R"("})"));
  }
  Decision ApplyPolicy(absl::string_view at) {
    return Run(at, R"("applyPolicy":{})");
  }

  // Records; a missing one fails the test and returns an empty record.
  StoreRecord Store(absl::string_view id) const {
    auto r = state_.Store(id);
    EXPECT_TRUE(r.ok() && *r != nullptr) << "store " << id;
    return (r.ok() && *r) ? **r : StoreRecord();
  }
  ProductRecord Product(absl::string_view store, absl::string_view id) const {
    auto r = state_.Product(store, id);
    EXPECT_TRUE(r.ok() && *r != nullptr) << "product " << store << "/" << id;
    return (r.ok() && *r) ? **r : ProductRecord();
  }
  OrderRecord Order(absl::string_view id) const {
    auto r = state_.Order(id);
    EXPECT_TRUE(r.ok() && *r != nullptr) << "order " << id;
    return (r.ok() && *r) ? **r : OrderRecord();
  }
  WithdrawalRecord Withdrawal(absl::string_view id) const {
    auto r = state_.Withdrawal(id);
    EXPECT_TRUE(r.ok() && *r != nullptr) << "withdrawal " << id;
    return (r.ok() && *r) ? **r : WithdrawalRecord();
  }
  MerchantRecord Merchant(absl::string_view id) const {
    auto r = state_.Merchant(id);
    EXPECT_TRUE(r.ok() && *r != nullptr) << "merchant " << id;
    return (r.ok() && *r) ? **r : MerchantRecord();
  }

  StateOverlay& state() { return state_; }
  const Policy& policy() const { return policy_; }
  const std::vector<AppliedEvent>& log() const { return log_; }

 private:
  Policy policy_;
  StateOverlay state_{&EmptyState()};
  std::vector<AppliedEvent> log_;
};

inline ::testing::AssertionResult Accepted(const Decision& d) {
  if (d.accepted) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "rejected " << d.rule << " " << v1::RejectionCode_Name(d.code)
         << ": " << d.message;
}

// Rejected by `rule` with `code`, the message containing `fragment`.
inline ::testing::AssertionResult Rejected(const Decision& d,
                                           absl::string_view rule,
                                           v1::RejectionCode code,
                                           absl::string_view fragment = "") {
  if (d.accepted) {
    return ::testing::AssertionFailure()
           << "accepted with " << d.events.size() << " events, expected "
           << rule << " " << v1::RejectionCode_Name(code);
  }
  if (d.rule != rule || d.code != code ||
      d.message.find(std::string(fragment)) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "rejected " << d.rule << " " << v1::RejectionCode_Name(d.code)
           << ": \"" << d.message << "\"; expected " << rule << " "
           << v1::RejectionCode_Name(code) << " with \"" << fragment << "\"";
  }
  if (!d.events.empty()) {
    return ::testing::AssertionFailure() << "a rejection carries events";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace storeledger::testing_core

#endif  // STORELEDGER_TESTS_CORE_TEST_UTIL_H_
