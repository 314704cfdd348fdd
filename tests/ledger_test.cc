// Ledger::Execute against a real RocksDB: idempotency, atomic upgrades,
// rejections recorded, and a reopen that preserves log, chain and projections.
#include "ledger/ledger.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replay/projection_store.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::ChinaText;
using ::storeledger::testing::CommandFromJson;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    ledger_.reset();
    LedgerOptions options;
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(dir_.Sub("db"), options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
  }
  v1::CommandResult Run(const std::string& id, absl::Time at,
                        const std::string& body) {
    v1::Command command = CommandFromJson(
        absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":")",
                     ChinaText(at), R"(",)", body, "}"));
    absl::StatusOr<v1::CommandResult> result = ledger_->Execute(command);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : v1::CommandResult();
  }
  void OpenMiniStore(const std::string& store, const std::string& merchant) {
    v1::CommandResult r =
        Run("open-" + store, China(6, 1),
            absl::StrCat(R"("openStore":{"storeId":")", store,
                         R"(","merchantId":")", merchant,
                         R"(","kind":"MINI_STORE","subject":"ENTERPRISE"})"));
    ASSERT_EQ(r.status(), v1::ACCEPTED) << r.message();
  }

  TempDir dir_;
  FixedClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  std::unique_ptr<Ledger> ledger_;
};

TEST_F(LedgerTest, RetryReplaysTheOutcomeAndWritesNothing) {
  OpenMiniStore("s1", "m1");
  const uint64_t head = ledger_->log().head().position;
  v1::CommandResult again = Run(
      "open-s1", China(6, 1),
      R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})");
  EXPECT_EQ(again.status(), v1::ACCEPTED);
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(again.first_position(), 1u);
  EXPECT_EQ(ledger_->log().head().position, head);
}

TEST_F(LedgerTest, SameIdDifferentBodyIsAnIdempotencyConflict) {
  OpenMiniStore("s1", "m1");
  const uint64_t head = ledger_->log().head().position;
  v1::CommandResult conflict = Run(
      "open-s1", China(6, 1),
      R"("openStore":{"storeId":"s2","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})");
  EXPECT_EQ(conflict.status(), v1::REJECTED);
  EXPECT_EQ(conflict.code(), v1::IDEMPOTENCY_CONFLICT);
  EXPECT_FALSE(conflict.replayed());
  EXPECT_EQ(ledger_->log().head().position, head);
  // The original outcome is untouched.
  absl::StatusOr<std::optional<v1::StoredOutcome>> stored =
      ledger_->log().GetOutcome("open-s1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->result().status(), v1::ACCEPTED);
}

TEST_F(LedgerTest, RejectionIsRecordedAndReplayedToo) {
  v1::CommandResult r =
      Run("pay", China(6, 1),
          R"("payOrder":{"storeId":"s9","orderId":"o1","amountFen":100})");
  EXPECT_EQ(r.status(), v1::REJECTED);
  EXPECT_EQ(r.code(), v1::NOT_FOUND);
  ASSERT_EQ(r.first_position(), 1u);
  absl::StatusOr<v1::Envelope> envelope = ledger_->log().Read(1);
  ASSERT_TRUE(envelope.ok()) << envelope.status();
  EXPECT_EQ(envelope->stream_id(), kRejectionsStream);
  EXPECT_EQ(envelope->payload().command_rejected().rule(), r.rule());
  v1::CommandResult again =
      Run("pay", China(6, 1),
          R"("payOrder":{"storeId":"s9","orderId":"o1","amountFen":100})");
  EXPECT_TRUE(again.replayed());
  EXPECT_EQ(ledger_->log().head().position, 1u);
}

TEST_F(LedgerTest, UpgradeIsBothStreamsOrNeither) {
  OpenMiniStore("s1", "m1");
  OpenMiniStore("taken", "m2");
  // Refused (target id in use): neither stream changes.
  const uint64_t head = ledger_->log().head().position;
  v1::CommandResult refused =
      Run("up-1", China(10, 22),
          R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"taken"})");
  EXPECT_EQ(refused.status(), v1::REJECTED);
  EXPECT_EQ(refused.rule(), "R8");
  EXPECT_EQ(ledger_->log().head().position, head + 1);  // the rejection only
  absl::StatusOr<std::optional<StreamHead>> source =
      ledger_->log().GetStreamHead(StoreStream("s1"));
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->version(), 1u);

  v1::CommandResult upgraded =
      Run("up-2", China(10, 22),
          R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"w1"})");
  ASSERT_EQ(upgraded.status(), v1::ACCEPTED) << upgraded.message();
  EXPECT_EQ(upgraded.last_position(), upgraded.first_position() + 1);
  absl::StatusOr<v1::Envelope> first =
      ledger_->log().Read(upgraded.first_position());
  absl::StatusOr<v1::Envelope> second =
      ledger_->log().Read(upgraded.last_position());
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->stream_id(), StoreStream("s1"));
  EXPECT_EQ(first->event_type(), "StoreUpgraded");
  EXPECT_EQ(second->stream_id(), StoreStream("w1"));
  EXPECT_EQ(second->event_type(), "StoreOpened");
  EXPECT_EQ(first->command_id(), second->command_id());
}

TEST_F(LedgerTest, ReopenPreservesLogChainAndProjections) {
  OpenMiniStore("s1", "m1");
  Run("add", China(6, 2),
      R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"c","priceFen":100})");
  Run("list", China(6, 2, 1),
      R"("listProduct":{"storeId":"s1","productId":"p1"})");
  Run("order", China(6, 3),
      R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":2,"unitPriceFen":100}]})");
  Run("pay", China(6, 3, 1),
      R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":200})");
  const Head before = ledger_->log().head();
  absl::StatusOr<v1::StoreState> state_before = ledger_->State("s1");
  ASSERT_TRUE(state_before.ok()) << state_before.status();
  EXPECT_EQ(state_before->balances().pending_fen(), 200);

  Reopen();
  const Head after = ledger_->log().head();
  EXPECT_EQ(after.position, before.position);
  EXPECT_EQ(after.hash, before.hash);
  absl::StatusOr<v1::StoreState> state_after = ledger_->State("s1");
  ASSERT_TRUE(state_after.ok());
  EXPECT_EQ(state_after->SerializeAsString(),
            state_before->SerializeAsString());
  // The chain still links, and appends continue after the head.
  EXPECT_TRUE(
      ledger_->log()
          .Scan(0, [](const v1::Envelope&, absl::string_view) { return true; })
          .ok());
  v1::CommandResult ship = Run(
      "ship", China(6, 4), R"("shipOrder":{"storeId":"s1","orderId":"o1"})");
  EXPECT_EQ(ship.first_position(), before.position + 1);
}

TEST_F(LedgerTest, FoldedStateEqualsProjectionAtHead) {
  OpenMiniStore("s1", "m1");
  Run("add", China(6, 2),
      R"("addProduct":{"storeId":"s1","productId":"p1","kind":"E_VOUCHER","origin":"OWN","categoryId":"c","priceFen":100})");
  Run("list", China(6, 2, 1),
      R"("listProduct":{"storeId":"s1","productId":"p1"})");
  AsOf head;
  head.position = ledger_->log().head().position;
  absl::StatusOr<v1::StoreState> folded = ledger_->State("s1", head);
  absl::StatusOr<v1::StoreState> live = ledger_->State("s1");
  ASSERT_TRUE(folded.ok() && live.ok());
  EXPECT_EQ(folded->SerializeAsString(), live->SerializeAsString());
}

// A ProjectionReader reads the point it was made at: records and stream
// heads written after it (here a product and its listing) are not mixed into
// what it reads, so a store's state built from it is one moment's.
TEST_F(LedgerTest, AProjectionReaderReadsThePointItWasMadeAt) {
  OpenMiniStore("s1", "m1");
  const ProjectionReader before(&ledger_->log());
  Run("add", China(6, 2),
      R"("addProduct":{"storeId":"s1","productId":"p1","kind":"E_VOUCHER","origin":"OWN","categoryId":"c","priceFen":100})");
  Run("list", China(6, 2, 1),
      R"("listProduct":{"storeId":"s1","productId":"p1"})");

  EXPECT_EQ(before.Product("s1", "p1").value(), nullptr);
  EXPECT_TRUE(before.Products("s1").value().empty());
  EXPECT_EQ(before.Head(StoreStream("s1")).value()->version(), 1u);
  const ProjectionReader after(&ledger_->log());
  ASSERT_NE(after.Product("s1", "p1").value(), nullptr);
  EXPECT_EQ(after.Products("s1").value().size(), 1u);
  EXPECT_EQ(after.Head(StoreStream("s1")).value()->version(), 3u);
}

TEST_F(LedgerTest, CommandIdOverTheLimitIsInvalid) {
  v1::Command command = CommandFromJson(
      R"({"commandId":"x","occurredAt":"2024-06-01T00:00:00+08:00","applyPolicy":{}})");
  command.set_command_id(std::string(65, 'c'));
  absl::StatusOr<v1::CommandResult> result = ledger_->Execute(command);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status(), v1::INVALID);
  EXPECT_THAT(result->message(), HasSubstr("64"));
  command.set_command_id(std::string(64, 'c'));
  result = ledger_->Execute(command);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->status(), v1::ACCEPTED) << result->message();
  EXPECT_EQ(ledger_->log().head().position, 0u);  // nothing to delist
}

}  // namespace
}  // namespace storeledger
