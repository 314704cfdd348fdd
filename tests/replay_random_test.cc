// Seeded randomized replay: for random positions and business times, a
// store's state folded from its snapshots equals the fold from its first
// event (snapshots deleted), and equals the inline projection at the head;
// and the bitemporal property: the same business time as known at two
// positions differs exactly by the events recorded in between.
//
// The seed is printed; re-run one with STORELEDGER_SEED=<seed>.
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cli/simulate.h"
#include "core/evolve.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "json/json.h"
#include "ledger/ledger.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"
#include "replay/store_view.h"
#include "rocksdb/db.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::ChinaText;
using ::storeledger::testing::CommandFromJson;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::RunSimulatedPlan;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

// A busy WeChat Store with a small, bounded state and a long history: random
// list/delist toggles, deposits and whole order lives. Rejections happen
// (listing a listed product) and are part of the log too.
void RunBusyStore(Ledger& ledger, std::mt19937_64& rng, int commands) {
  absl::Time at = China(9, 1);
  int n = 0;
  auto run = [&](const std::string& body) {
    at += absl::Minutes(std::uniform_int_distribution<int>(0, 30)(rng));
    v1::Command command = CommandFromJson(
        absl::StrCat(R"({"commandId":"busy-)", ++n, R"(","occurredAt":")",
                     ChinaText(at), R"(",)", body, "}"));
    absl::StatusOr<v1::CommandResult> result = ledger.Execute(command);
    ASSERT_TRUE(result.ok()) << result.status();
  };
  run(R"("openStore":{"storeId":"busy","merchantId":"mb","kind":"WECHAT_STORE","subject":"ENTERPRISE"})");
  run(R"("grantCategoryQualification":{"storeId":"busy","categoryId":"cat-1"})");
  run(R"("payDeposit":{"storeId":"busy","categoryId":"cat-1","amountFen":"50000"})");
  for (int p = 1; p <= 3; ++p) {
    run(absl::StrCat(
        R"("addProduct":{"storeId":"busy","productId":"p)", p,
        R"(","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":"1000"})"));
  }
  int orders = 0;
  for (int i = 0; i < commands; ++i) {
    const int p = std::uniform_int_distribution<int>(1, 3)(rng);
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0:
        run(absl::StrCat(R"("listProduct":{"storeId":"busy","productId":"p)", p,
                         R"("})"));
        break;
      case 1:
        run(absl::StrCat(R"("delistProduct":{"storeId":"busy","productId":"p)",
                         p, R"("})"));
        break;
      case 2:
        run(R"("payDeposit":{"storeId":"busy","categoryId":"cat-1","amountFen":"100"})");
        break;
      default: {
        const std::string order = absl::StrCat("bo-", ++orders);
        run(absl::StrCat(R"("listProduct":{"storeId":"busy","productId":"p)", p,
                         R"("})"));
        run(absl::StrCat(R"("placeOrder":{"storeId":"busy","orderId":")", order,
                         R"(","lines":[{"productId":"p)", p,
                         R"(","quantity":"2","unitPriceFen":"1000"}]})"));
        run(absl::StrCat(R"("payOrder":{"storeId":"busy","orderId":")", order,
                         R"(","amountFen":"2000"})"));
        break;
      }
    }
  }
}

// Comparable text of a result: its deterministic bytes in hex (JSON would
// print map entries in no fixed order), or its error.
std::string Text(const absl::StatusOr<v1::StoreState>& state) {
  if (!state.ok()) return absl::StrCat("error: ", state.status().ToString());
  return absl::BytesToHexString(SerializeDeterministic(*state));
}

class ReplayRandomTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = SeedFromEnvironment();
    std::cout << "replay_random_test seed: " << seed_
              << " (re-run with STORELEDGER_SEED=" << seed_ << ")\n";
    rng_.seed(seed_);
    snapshot_every_ = std::uniform_int_distribution<uint64_t>(2, 12)(rng_);
    std::cout << "snapshot every " << snapshot_every_ << " events\n";
    LedgerOptions options;
    options.sync = false;
    options.clock = &clock_;
    options.snapshot_every_events = snapshot_every_;
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        Ledger::Open(dir_.Sub("db"), options);
    ASSERT_TRUE(ledger.ok()) << ledger.status();
    ledger_ = *std::move(ledger);
    const int stores = std::uniform_int_distribution<int>(6, 14)(rng_);
    ASSERT_NO_FATAL_FAILURE(
        RunSimulatedPlan(*ledger_, PlanMigration(stores, seed_ % 1000 + 1)));
    ASSERT_NO_FATAL_FAILURE(RunBusyStore(*ledger_, rng_, 400));
    for (v1::StoreKind kind :
         {v1::MINI_STORE, v1::CHANNELS_STORE, v1::WECHAT_STORE}) {
      absl::StatusOr<std::vector<std::string>> ids =
          ProjectionReader(&ledger_->log()).StoreIds(kind);
      ASSERT_TRUE(ids.ok()) << ids.status();
      store_ids_.insert(store_ids_.end(), ids->begin(), ids->end());
    }
    ASSERT_FALSE(store_ids_.empty());
    // The earliest and latest business times in the log bound the queries.
    ASSERT_TRUE(ledger_->log()
                    .Scan(0,
                          [&](const v1::Envelope& e, absl::string_view) {
                            const absl::Time t = ToTime(e.occurred_at());
                            earliest_ = std::min(earliest_, t);
                            latest_ = std::max(latest_, t);
                            return true;
                          })
                    .ok());
  }

  uint64_t Head() const { return ledger_->log().head().position; }

  // A random query: a store (sometimes one that does not exist), a business
  // time around the log's, a position in 0..head (each sometimes absent).
  struct Query {
    std::string store_id;
    AsOf as_of;
  };
  Query RandomQuery() {
    Query q;
    const bool unknown = std::uniform_int_distribution<int>(0, 49)(rng_) == 0;
    q.store_id = unknown ? "no-such-store"
                         : store_ids_[std::uniform_int_distribution<size_t>(
                               0, store_ids_.size() - 1)(rng_)];
    const int which = std::uniform_int_distribution<int>(0, 2)(rng_);
    if (which != 1) {
      const int64_t span = absl::ToInt64Minutes(latest_ - earliest_) + 60 * 24;
      q.as_of.business_time =
          earliest_ - absl::Hours(12) +
          absl::Minutes(std::uniform_int_distribution<int64_t>(0, span)(rng_));
    }
    if (which != 0) {
      q.as_of.position =
          std::uniform_int_distribution<uint64_t>(0, Head())(rng_);
    }
    return q;
  }

  absl::StatusOr<v1::StoreState> Fold(const Query& q) {
    return FoldStoreState(ledger_->log(), q.store_id, q.as_of, now_,
                          ledger_->policy());
  }

  uint64_t SnapshotCount() {
    uint64_t count = 0;
    EXPECT_TRUE(ledger_->log()
                    .ScanProjections(kSnapshotPrefix,
                                     [&](absl::string_view, absl::string_view) {
                                       ++count;
                                       return true;
                                     })
                    .ok());
    return count;
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  uint64_t snapshot_every_ = 0;
  TempDir dir_;
  FixedClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  const absl::Time now_ = China(12, 31);
  std::unique_ptr<Ledger> ledger_;
  std::vector<std::string> store_ids_;
  absl::Time earliest_ = absl::InfiniteFuture();
  absl::Time latest_ = absl::InfinitePast();
};

TEST_F(ReplayRandomTest, SnapshotsChangeNoAnswer) {
  ASSERT_GT(SnapshotCount(), 0u) << "the ledger wrote no snapshots";
  constexpr int kQueries = 400;
  std::vector<Query> queries;
  std::vector<std::string> with_snapshots;
  for (int i = 0; i < kQueries; ++i) {
    queries.push_back(RandomQuery());
    with_snapshots.push_back(Text(Fold(queries.back())));
  }
  // Every store at the head: fold (from snapshots) == inline projection.
  ProjectionReader reader(&ledger_->log());
  for (const std::string& store_id : store_ids_) {
    AsOf at_head;
    at_head.position = Head();
    EXPECT_EQ(Text(FoldStoreState(ledger_->log(), store_id, at_head, now_,
                                  ledger_->policy())),
              Text(BuildStoreState(reader, store_id, now_, ledger_->policy())))
        << "store " << store_id << ", seed " << seed_;
  }
  ASSERT_TRUE(VerifySnapshotSample(ledger_->log(), ledger_->policy(), 50).ok());

  absl::StatusOr<uint64_t> deleted = DeleteAllSnapshots(ledger_->mutable_log());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  ASSERT_EQ(SnapshotCount(), 0u);
  for (int i = 0; i < kQueries; ++i) {
    const Query& q = queries[i];
    EXPECT_EQ(Text(Fold(q)), with_snapshots[i])
        << "store " << q.store_id << " as of "
        << (q.as_of.business_time ? absl::FormatTime(*q.as_of.business_time)
                                  : "-")
        << " at position "
        << (q.as_of.position ? absl::StrCat(*q.as_of.position) : "-")
        << ", seed " << seed_;
  }
}

// The busy store has a long history with a bounded state: its latest
// snapshot is recent, so an as-of query at the head folds only a few events.
TEST_F(ReplayRandomTest, SnapshotsKeepFoldsShort) {
  absl::StatusOr<std::optional<StreamHead>> head =
      ledger_->log().GetStreamHead(StoreStream("busy"));
  ASSERT_TRUE(head.ok() && head->has_value());
  absl::StatusOr<std::optional<v1::StoreSnapshot>> snapshot =
      FindSnapshot(ledger_->log(), "busy", Head(), std::nullopt);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_TRUE(snapshot->has_value());
  // The next snapshot is due at the first multiple of K at least
  // max(K, R) events after the latest (each busy command appends one event).
  const uint64_t behind = (*head)->version() - (*snapshot)->meta().version();
  EXPECT_LT(behind, std::max<uint64_t>(snapshot_every_,
                                       (*snapshot)->meta().record_count()) +
                        snapshot_every_)
      << "seed " << seed_;
  EXPECT_GT((*head)->version(), 4 * behind) << "seed " << seed_;
}

// Bitemporal: the state as of business time T, as known at P1 and at P2 >
// P1, differs exactly by the store's events recorded in (P1, P2] that T
// admits: folding those onto the P1 state gives the P2 state, and with no
// such event the two are equal.
TEST_F(ReplayRandomTest, KnowledgeTimeDiffersByTheEventsRecordedBetween) {
  constexpr int kPairs = 200;
  int differing = 0;
  for (int i = 0; i < kPairs; ++i) {
    Query q = RandomQuery();
    if (q.store_id == "no-such-store") continue;
    if (!q.as_of.business_time) q.as_of.business_time = latest_;
    uint64_t p1 = std::uniform_int_distribution<uint64_t>(0, Head())(rng_);
    uint64_t p2 = std::uniform_int_distribution<uint64_t>(0, Head())(rng_);
    if (p1 > p2) std::swap(p1, p2);
    AsOf at_p1{q.as_of.business_time, p1}, at_p2{q.as_of.business_time, p2};
    const absl::StatusOr<v1::StoreState> s1 = FoldStoreState(
        ledger_->log(), q.store_id, at_p1, now_, ledger_->policy());
    const absl::StatusOr<v1::StoreState> s2 = FoldStoreState(
        ledger_->log(), q.store_id, at_p2, now_, ledger_->policy());

    // Independently: fold the stream's events up to P1 (T admitting), then
    // the ones recorded in (P1, P2] that T admits.
    StateOverlay state(&EmptyState());
    int between = 0;
    ASSERT_TRUE(ledger_->log()
                    .ScanStream(StoreStream(q.store_id), 0,
                                [&](const v1::Envelope& e) {
                                  if (e.position() > p2) return false;
                                  if (ToTime(e.occurred_at()) >
                                      *q.as_of.business_time) {
                                    return false;
                                  }
                                  if (e.position() > p1) ++between;
                                  EXPECT_TRUE(EvolveEnvelope(e, &state).ok());
                                  return true;
                                })
                    .ok());
    const absl::StatusOr<v1::StoreState> expected = BuildStoreState(
        state, q.store_id, *q.as_of.business_time, ledger_->policy());
    if (expected.ok()) {
      EXPECT_EQ(Text(s2), Text(expected)) << "seed " << seed_;
    } else {
      EXPECT_TRUE(absl::IsNotFound(expected.status())) << expected.status();
      EXPECT_TRUE(absl::IsNotFound(s2.status())) << "seed " << seed_;
    }
    if (between == 0) {
      EXPECT_EQ(Text(s1), Text(s2))
          << "no event between " << p1 << " and " << p2 << ", seed " << seed_;
    } else {
      ++differing;
      ASSERT_TRUE(s2.ok()) << s2.status();
      EXPECT_NE(Text(s1), Text(s2)) << between << " events between " << p1
                                    << " and " << p2 << ", seed " << seed_;
      if (s1.ok()) {
        EXPECT_EQ(s2->version() - s1->version(),
                  static_cast<uint64_t>(between));
      }
    }
  }
  EXPECT_GT(differing, 0) << "seed " << seed_;
}

// A snapshot whose records were tampered with is caught by the audit sample;
// one whose meta points at the wrong event is passed over by readers.
TEST_F(ReplayRandomTest, DamagedSnapshotsAreCaughtOrPassedOver) {
  std::vector<std::pair<std::string, std::string>> snapshots;
  ASSERT_TRUE(
      ledger_->log()
          .ScanProjections(kSnapshotPrefix,
                           [&](absl::string_view k, absl::string_view v) {
                             snapshots.emplace_back(k, v);
                             return true;
                           })
          .ok());
  ASSERT_FALSE(snapshots.empty());
  const auto& [key, value] = snapshots.back();
  v1::StoreSnapshot snapshot;
  ASSERT_TRUE(snapshot.ParseFromString(value));
  const std::string store_id = snapshot.store().store_id();
  AsOf at_head;
  at_head.position = Head();
  const std::string truth = Text(FoldStoreState(
      ledger_->log(), store_id, at_head, now_, ledger_->policy()));

  // Records changed: answers would be wrong, so the audit must say so.
  v1::StoreSnapshot tampered = snapshot;
  tampered.mutable_store()->mutable_balances()->set_available_fen(
      snapshot.store().balances().available_fen() + 1);
  // The damage is done to RocksDB itself: what the ledger holds in memory
  // (written behind the log) goes there first, or it would hide the damage.
  ASSERT_TRUE(ledger_->mutable_log()->WriteBehindNow().ok());
  rocksdb::DB* db = ledger_->log().db();
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), ledger_->log().projections_cf(),
                      key, SerializeDeterministic(tampered))
                  .ok());
  absl::Status audit = VerifySnapshotSample(ledger_->log(), ledger_->policy(),
                                            static_cast<int>(snapshots.size()));
  EXPECT_TRUE(absl::IsDataLoss(audit)) << audit;
  EXPECT_THAT(std::string(audit.message()), ::testing::HasSubstr(store_id));

  // Meta pointing at another position: readers pass it over.
  v1::StoreSnapshot misplaced = snapshot;
  misplaced.mutable_meta()->set_position(snapshot.meta().position() - 1);
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), ledger_->log().projections_cf(),
                      key, SerializeDeterministic(misplaced))
                  .ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), ledger_->log().projections_cf(),
                      SnapshotMetaKey(store_id, snapshot.meta().version()),
                      SerializeDeterministic(misplaced.meta()))
                  .ok());
  EXPECT_EQ(Text(FoldStoreState(ledger_->log(), store_id, at_head, now_,
                                ledger_->policy())),
            truth);
  EXPECT_FALSE(VerifySnapshotSample(ledger_->log(), ledger_->policy(),
                                    static_cast<int>(snapshots.size()))
                   .ok());
}

}  // namespace
}  // namespace storeledger
