// The investigation verbs end to end through the CLI on a real RocksDB:
// history filters, explain, diff, rebuild [--shadow] (healthy, damaged,
// wiped) and tail [--follow] with a concurrent writer, in-process and as a
// separate process stopped by SIGTERM.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/simulate.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "replay/projection_store.h"
#include "replay/rebuild.h"
#include "replay/snapshots.h"
#include "rocksdb/db.h"
#include "storage/event_log.h"
#include "tests/support/cli_json.h"
#include "tests/support/test_support.h"

extern char** environ;

namespace storeledger {
namespace {

using ::storeledger::testing::CliRun;
using ::storeledger::testing::Cmd;
using ::storeledger::testing::FromJson;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A legacy mini store through its upgrade and the cutoffs, with refused
// attempts after them. Expected outcomes are checked in SetUp.
const std::vector<std::pair<std::string, const char*>>& Scenario() {
  static const auto* lines = new std::vector<
      std::pair<std::string, const char*>>{
      {Cmd("c1", "2024-06-01T09:00:00+08:00",
           R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"),
       "ACCEPTED"},
      {Cmd("c2", "2024-06-01T10:00:00+08:00",
           R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":1000})"),
       "ACCEPTED"},
      {Cmd("c3", "2024-06-01T10:01:00+08:00",
           R"("addProduct":{"storeId":"s1","productId":"p2","kind":"E_VOUCHER","origin":"OWN","categoryId":"cat-2","priceFen":500})"),
       "ACCEPTED"},
      {Cmd("c4", "2024-06-01T11:00:00+08:00",
           R"("listProduct":{"storeId":"s1","productId":"p1"})"),
       "ACCEPTED"},
      {Cmd("c5", "2024-06-01T11:01:00+08:00",
           R"("listProduct":{"storeId":"s1","productId":"p2"})"),
       "ACCEPTED"},
      {Cmd("c6", "2024-06-02T09:00:00+08:00",
           R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":2,"unitPriceFen":1000}]})"),
       "ACCEPTED"},
      {Cmd("c7", "2024-06-02T09:05:00+08:00",
           R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":2000})"),
       "ACCEPTED"},
      {Cmd("c8", "2024-06-03T09:00:00+08:00",
           R"("shipOrder":{"storeId":"s1","orderId":"o1"})"),
       "ACCEPTED"},
      {Cmd("c9", "2024-06-05T09:00:00+08:00",
           R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":200})"),
       "ACCEPTED"},
      {Cmd("c10", "2024-06-06T09:00:00+08:00",
           R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":1000})"),
       "ACCEPTED"},
      {Cmd("c11", "2024-10-22T10:00:00+08:00",
           R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"s1-wx"})"),
       "ACCEPTED"},
      {Cmd("c12", "2024-10-23T10:00:00+08:00",
           R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"w1"})"),
       "ACCEPTED"},
      {Cmd("c13", "2024-11-05T10:00:00+08:00",
           R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p2","quantity":1,"unitPriceFen":500}]})"),
       "REJECTED"},
      {Cmd("c14", "2024-11-05T10:01:00+08:00",
           R"("listProduct":{"storeId":"s1","productId":"p2"})"),
       "REJECTED"},
      {Cmd("c15", "2024-11-06T10:00:00+08:00",
           R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w2","amountFen":5000})"),
       "REJECTED"},
      {Cmd("c16", "2024-11-06T10:05:00+08:00",
           R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w3","amountFen":800})"),
       "ACCEPTED"},
      {Cmd("c17", "2024-11-07T10:00:00+08:00",
           R"("delistProduct":{"storeId":"s1","productId":"p2"})"),
       "ACCEPTED"},
      {Cmd("c18", "2024-11-08T10:00:00+08:00",
           R"("deleteProduct":{"storeId":"s1","productId":"p2"})"),
       "ACCEPTED"},
  };
  return *lines;
}

class InvestigateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::string> lines;
    for (const auto& [line, expected] : Scenario()) lines.push_back(line);
    CliRun run = RunStoreledger({"--db", db_, "apply", "-"},
                                absl::StrJoin(lines, "\n") + "\n");
    ASSERT_EQ(run.exit_code, 0) << run.err;
    ASSERT_EQ(run.lines().size(), Scenario().size());
    for (size_t i = 0; i < Scenario().size(); ++i) {
      v1::CommandResult result = FromJson<v1::CommandResult>(run.lines()[i]);
      ASSERT_EQ(v1::OutcomeStatus_Name(result.status()), Scenario()[i].second)
          << run.lines()[i];
      results_.push_back(result);
    }
  }

  CliRun Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--db", db_});
    return RunStoreledger(args);
  }

  std::vector<v1::Envelope> Envelopes(const CliRun& run) {
    std::vector<v1::Envelope> out;
    for (const std::string& line : run.lines()) {
      out.push_back(FromJson<v1::Envelope>(line));
    }
    return out;
  }

  std::vector<std::string> Types(const CliRun& run) {
    std::vector<std::string> types;
    for (const v1::Envelope& e : Envelopes(run))
      types.push_back(e.event_type());
    return types;
  }

  uint64_t Head() {
    CliRun run = Run({"digest"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::Digest>(run.out).position();
  }

  TempDir dir_;
  std::string db_ = dir_.Sub("db");
  std::vector<v1::CommandResult> results_;
};

// ------------------------------------------------------------------ history

TEST_F(InvestigateTest, HistoryFiltersByOrderProductWithdrawalTypeAndTime) {
  EXPECT_THAT(
      Types(Run({"history", "--store", "s1", "--order", "o1"})),
      ElementsAre("OrderPlaced", "OrderPaid", "OrderShipped", "OrderSettled"));
  EXPECT_THAT(Types(Run({"history", "--store", "s1", "--product", "p2"})),
              ElementsAre("ProductAdded", "ProductListed", "ProductDelisted",
                          "ProductDeleted"));
  EXPECT_THAT(Types(Run({"history", "--store", "s1", "--withdrawal", "w1"})),
              ElementsAre("WithdrawalRequested", "WithdrawalCompleted"));
  EXPECT_THAT(
      Types(Run({"history", "--store", "s1", "--type", "WithdrawalRequested"})),
      ElementsAre("WithdrawalRequested", "WithdrawalRequested"));
  EXPECT_THAT(Types(Run({"history", "--store", "s1", "--type",
                         "OrderPaid,OrderSettled"})),
              ElementsAre("OrderPaid", "OrderSettled"));
  EXPECT_THAT(Types(Run({"history", "--store", "s1", "--from",
                         "2024-10-01T00:00:00+08:00", "--to",
                         "2024-10-31T23:59:59+08:00"})),
              ElementsAre("StoreUpgraded", "WithdrawalCompleted"));
  CliRun limited = Run({"history", "--store", "s1", "--limit", "3"});
  EXPECT_THAT(Types(limited),
              ElementsAre("StoreOpened", "ProductAdded", "ProductAdded"));
  // --from-position: strictly after it.
  const uint64_t after = Envelopes(limited)[1].position();
  std::vector<v1::Envelope> rest = Envelopes(Run(
      {"history", "--store", "s1", "--from-position", absl::StrCat(after)}));
  ASSERT_FALSE(rest.empty());
  EXPECT_GT(rest.front().position(), after);

  // Refusals sit next to the facts, in position order, with rule and message.
  std::vector<v1::Envelope> product = Envelopes(Run(
      {"history", "--store", "s1", "--product", "p2", "--include-rejections"}));
  std::vector<std::string> rules;
  for (size_t i = 0; i < product.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(product[i].position(), product[i - 1].position());
    }
    if (product[i].payload().has_command_rejected()) {
      rules.push_back(product[i].payload().command_rejected().rule());
      EXPECT_FALSE(product[i].payload().command_rejected().message().empty());
    }
  }
  EXPECT_THAT(rules, ElementsAre("R10", "R3"));  // order o2, relisting p2
  std::vector<v1::Envelope> w2 =
      Envelopes(Run({"history", "--store", "s1", "--withdrawal", "w2",
                     "--include-rejections"}));
  ASSERT_EQ(w2.size(), 1u);
  EXPECT_EQ(w2[0].payload().command_rejected().rule(), "R14");
  // --type selects facts; refusals asked for are still shown.
  EXPECT_THAT(Types(Run({"history", "--store", "s1", "--type",
                         "WithdrawalRequested", "--include-rejections",
                         "--from", "2024-11-01T00:00:00+08:00"})),
              ElementsAre("CommandRejected", "CommandRejected",
                          "CommandRejected", "WithdrawalRequested"));
}

TEST_F(InvestigateTest, HistoryRefusesBadFiltersAndUnknownStores) {
  CliRun bad_type = Run({"history", "--store", "s1", "--type", "OrderPayed"});
  EXPECT_EQ(bad_type.exit_code, 2);
  EXPECT_THAT(bad_type.err, HasSubstr("OrderPayed"));
  EXPECT_EQ(Run({"history", "--store", "s1", "--from", "yesterday"}).exit_code,
            2);
  EXPECT_EQ(
      Run({"history", "--store", "s1", "--from", "2024-11-02T00:00:00+08:00",
           "--to", "2024-11-01T00:00:00+08:00"})
          .exit_code,
      2);
  CliRun unknown = Run({"history", "--store", "nobody"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("nobody"));
}

// ------------------------------------------------------------------ explain

TEST_F(InvestigateTest, ExplainAcceptedCommandShowsEventsAndStateBefore) {
  CliRun run = Run({"explain", "--command-id", "c9"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  v1::Explanation e = FromJson<v1::Explanation>(run.out);
  EXPECT_EQ(e.outcome().status(), v1::ACCEPTED);
  ASSERT_EQ(e.events_size(), 1);
  EXPECT_EQ(e.events(0).event_type(), "OrderSettled");
  EXPECT_EQ(e.before_position(), e.outcome().first_position() - 1);
  ASSERT_EQ(e.stores_before_size(), 1);
  const v1::StoreState& before = e.stores_before(0);
  EXPECT_EQ(before.store_id(), "s1");
  ASSERT_EQ(before.orders_size(), 1);
  EXPECT_EQ(before.orders(0).status(), v1::SHIPPED);  // not yet settled
  EXPECT_EQ(before.balances().pending_fen(), 2000);
  EXPECT_EQ(before.balances().available_fen(), 0);
}

TEST_F(InvestigateTest, ExplainRejectionShowsRuleAndWhatTheRuleSaw) {
  CliRun run = Run({"explain", "--command-id", "c13"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  v1::Explanation e = FromJson<v1::Explanation>(run.out);
  EXPECT_EQ(e.outcome().status(), v1::REJECTED);
  EXPECT_EQ(e.outcome().rule(), "R10");
  ASSERT_EQ(e.events_size(), 1);
  ASSERT_TRUE(e.events(0).payload().has_command_rejected());
  EXPECT_EQ(e.events(0)
                .payload()
                .command_rejected()
                .command()
                .place_order()
                .order_id(),
            "o2");
  ASSERT_EQ(e.stores_before_size(), 1);
  // p2 was still LISTED in the records, but the e-voucher cutoff had passed
  // at the command's business time: that is what R10 judged.
  const v1::StoreState& before = e.stores_before(0);
  bool found = false;
  for (const v1::ProductView& p : before.products()) {
    if (p.product_id() != "p2") continue;
    found = true;
    EXPECT_EQ(p.status(), v1::LISTED);
    EXPECT_EQ(p.effective_status(), v1::DELISTED);
  }
  EXPECT_TRUE(found);
}

TEST_F(InvestigateTest, ExplainUpgradeNamesTheStoreItOpened) {
  v1::Explanation e =
      FromJson<v1::Explanation>(Run({"explain", "--command-id", "c11"}).out);
  EXPECT_EQ(e.events_size(), 2);
  ASSERT_EQ(e.stores_before_size(), 1);
  EXPECT_EQ(e.stores_before(0).store_id(), "s1");
  EXPECT_EQ(e.stores_before(0).status(), v1::OPEN);
  EXPECT_THAT(e.stores_not_yet_open(), ElementsAre("s1-wx"));

  CliRun unknown = Run({"explain", "--command-id", "c999"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("c999"));
  EXPECT_EQ(Run({"explain"}).exit_code, 2);
}

// --------------------------------------------------------------------- diff

TEST_F(InvestigateTest, DiffShowsProductsOrdersWithdrawalsAndBalances) {
  CliRun run =
      Run({"diff", "--store", "s1", "--from", "2024-06-01T12:00:00+08:00",
           "--to", "2024-11-30T00:00:00+08:00"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  v1::StoreDiff d = FromJson<v1::StoreDiff>(run.out);
  EXPECT_TRUE(d.store_existed_before());
  EXPECT_EQ(d.status_before(), v1::OPEN);
  EXPECT_EQ(d.status_after(), v1::UPGRADED);
  EXPECT_THAT(d.store_fields(),
              ::testing::IsSupersetOf({"status", "upgradedTo"}));
  std::map<std::string, v1::ProductChange> products;
  for (const auto& c : d.products()) products[c.product_id()] = c;
  ASSERT_EQ(products.size(), 2u);
  EXPECT_EQ(products["p2"].change(), v1::REMOVED);  // deleted on 11-08
  // p1 was never delisted by an event, but the physical cutoff (11-18) had
  // passed by T2: its effective status changed, its stored one did not.
  EXPECT_EQ(products["p1"].change(), v1::CHANGED);
  EXPECT_THAT(products["p1"].fields(), ElementsAre("effectiveStatus"));
  ASSERT_EQ(d.orders_size(), 1);
  EXPECT_EQ(d.orders(0).order_id(), "o1");
  EXPECT_EQ(d.orders(0).change(), v1::ADDED);
  EXPECT_EQ(d.orders(0).after().status(), v1::SETTLED);
  ASSERT_EQ(d.withdrawals_size(), 2);
  EXPECT_EQ(d.withdrawals(0).after().status(), v1::PAID_OUT);
  EXPECT_EQ(d.withdrawals(1).after().status(), v1::WITHDRAWING);
  EXPECT_EQ(d.balances().delta().paid_out_fen(), 1000);
  EXPECT_EQ(d.balances().delta().withdrawing_fen(), 800);
  EXPECT_EQ(d.balances().after().available_fen(), 0);  // 1800 - 1000 - 800

  // Between two times when nothing happened: an empty diff.
  v1::StoreDiff quiet = FromJson<v1::StoreDiff>(
      Run({"diff", "--store", "s1", "--from", "2024-07-01T00:00:00+08:00",
           "--to", "2024-08-01T00:00:00+08:00"})
          .out);
  EXPECT_EQ(quiet.products_size() + quiet.orders_size() +
                quiet.withdrawals_size() + quiet.store_fields_size(),
            0);
  EXPECT_EQ(quiet.from_version(), quiet.to_version());

  // Before the store existed: everything is added.
  v1::StoreDiff from_nothing = FromJson<v1::StoreDiff>(
      Run({"diff", "--store", "s1", "--from", "2024-05-01T00:00:00+08:00",
           "--to", "2024-06-01T10:30:00+08:00"})
          .out);
  EXPECT_FALSE(from_nothing.store_existed_before());
  EXPECT_EQ(from_nothing.products_size(), 2);
  EXPECT_EQ(from_nothing.products(0).change(), v1::ADDED);

  EXPECT_EQ(Run({"diff", "--store", "s1", "--from", "2024-11-30T00:00:00+08:00",
                 "--to", "2024-06-01T00:00:00+08:00"})
                .exit_code,
            2);
  EXPECT_EQ(
      Run({"diff", "--store", "s1", "--from", "2024-11-30T00:00:00+08:00"})
          .exit_code,
      2);
}

// ------------------------------------------------------------------ rebuild

// Live projection keys and values (record prefixes only).
std::map<std::string, std::string> LiveProjections(const EventLog& log) {
  std::map<std::string, std::string> out;
  EXPECT_TRUE(
      log.ScanProjections("",
                          [&](absl::string_view k, absl::string_view v) {
                            if (IsLiveProjectionKey(k)) out.emplace(k, v);
                            return true;
                          })
          .ok());
  return out;
}

std::unique_ptr<EventLog> OpenLog(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(dir);
  EXPECT_TRUE(log.ok()) << log.status();
  return log.ok() ? *std::move(log) : nullptr;
}

// A ledger in `db` of PlanMigration(stores, seed)'s commands as written,
// executed one at a time (sync off: these tests do not crash it).
void SimulateLedger(
    const std::string& db, int stores, uint64_t seed,
    uint64_t snapshot_every_events = kSnapshotEveryEventsDefault) {
  LedgerOptions options;
  options.sync = false;
  options.snapshot_every_events = snapshot_every_events;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  for (const SimulatedStep& step : PlanMigration(stores, seed)) {
    if (step.amount != SimulatedStep::Amount::kAsWritten) continue;
    ASSERT_TRUE((*ledger)->Execute(step.command).ok());
  }
}

TEST_F(InvestigateTest, RebuildShadowReportsNothingOnAHealthyLedger) {
  CliRun run = Run({"rebuild", "--shadow"});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  ASSERT_EQ(run.lines().size(), 1u) << run.out;
  v1::RebuildSummary summary = FromJson<v1::RebuildSummary>(run.lines()[0]);
  EXPECT_TRUE(summary.shadow());
  EXPECT_EQ(summary.differences(), 0u);
  EXPECT_EQ(summary.events_replayed(), Head());
  EXPECT_GT(summary.records_rebuilt(), 0u);
  // The shadow space is scratch: nothing of it is left behind.
  std::unique_ptr<EventLog> log = OpenLog(db_);
  int shadow_keys = 0;
  ASSERT_TRUE(log->ScanProjections(kShadowPrefix,
                                   [&](absl::string_view, absl::string_view) {
                                     ++shadow_keys;
                                     return true;
                                   })
                  .ok());
  EXPECT_EQ(shadow_keys, 0);
}

TEST_F(InvestigateTest, RebuildShadowListsDamageAndRebuildRepairsIt) {
  std::map<std::string, std::string> healthy;
  {
    std::unique_ptr<EventLog> log = OpenLog(db_);
    healthy = LiveProjections(*log);
    rocksdb::DB* db = log->db();
    rocksdb::ColumnFamilyHandle* cf = log->projections_cf();
    v1::OrderRecord order;
    ASSERT_TRUE(order.ParseFromString(healthy.at("o/o1")));
    order.set_paid_fen(order.paid_fen() + 500);
    ASSERT_TRUE(db->Put({}, cf, "o/o1", SerializeDeterministic(order)).ok());
    ASSERT_TRUE(db->Delete({}, cf, "s/s1-wx").ok());
    ASSERT_TRUE(db->Put({}, cf, "o/ghost", "junk").ok());
  }
  CliRun shadow = Run({"rebuild", "--shadow"});
  EXPECT_EQ(shadow.exit_code, 1) << shadow.out << shadow.err;
  std::vector<std::string> lines = shadow.lines();
  ASSERT_EQ(lines.size(), 4u) << shadow.out;  // 3 differences + summary
  std::map<std::string, v1::ProjectionDifference> by_key;
  for (size_t i = 0; i < 3; ++i) {
    v1::ProjectionDifference d = FromJson<v1::ProjectionDifference>(lines[i]);
    by_key[d.key()] = d;
  }
  EXPECT_EQ(by_key["o/o1"].problem(), "value differs");
  EXPECT_EQ(by_key["o/o1"].record(), "OrderRecord");
  EXPECT_THAT(by_key["o/o1"].detail(), HasSubstr("paid_fen: 2000 -> 2500"));
  EXPECT_EQ(by_key["s/s1-wx"].problem(), "missing from live");
  EXPECT_EQ(by_key["o/ghost"].problem(), "not derived from the log");
  EXPECT_EQ(FromJson<v1::RebuildSummary>(lines[3]).differences(), 3u);
  {
    // --shadow changed nothing live.
    std::unique_ptr<EventLog> log = OpenLog(db_);
    std::map<std::string, std::string> live = LiveProjections(*log);
    EXPECT_EQ(live.count("s/s1-wx"), 0u);
    EXPECT_EQ(live.count("o/ghost"), 1u);
  }

  CliRun repair = Run({"rebuild"});
  ASSERT_EQ(repair.exit_code, 0) << repair.err;
  v1::RebuildSummary summary =
      FromJson<v1::RebuildSummary>(repair.lines().back());
  EXPECT_EQ(summary.keys_written(), 2u);
  EXPECT_EQ(summary.keys_deleted(), 1u);
  EXPECT_EQ(Run({"rebuild", "--shadow"}).exit_code, 0);
  std::unique_ptr<EventLog> log = OpenLog(db_);
  EXPECT_EQ(LiveProjections(*log), healthy);
}

// Projections rebuilt from nothing are byte-identical to the inline ones,
// whatever the flush interval (a small one makes every record cross flushes
// and be read back from the shadow space). Snapshots are left alone.
TEST(RebuildTest, RebuildFromNothingIsByteIdenticalToInline) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  ASSERT_NO_FATAL_FAILURE(SimulateLedger(db, 8, 7, 4));
  std::map<std::string, std::string> inline_projections, snapshots_before;
  {
    std::unique_ptr<EventLog> log = OpenLog(db);
    inline_projections = LiveProjections(*log);
    ASSERT_GT(inline_projections.size(), 100u);
    ASSERT_TRUE(
        log->ScanProjections(kSnapshotPrefix,
                             [&](absl::string_view k, absl::string_view v) {
                               snapshots_before.emplace(k, v);
                               return true;
                             })
            .ok());
    ASSERT_FALSE(snapshots_before.empty());
    for (const auto& [key, value] : inline_projections) {
      ASSERT_TRUE(log->db()->Delete({}, log->projections_cf(), key).ok());
    }
  }
  for (const char* flush_every : {"3", "1000000"}) {
    CliRun shadow = RunStoreledger(
        {"--db", db, "rebuild", "--shadow", "--flush-every", flush_every});
    EXPECT_EQ(shadow.exit_code, 1);
    EXPECT_EQ(shadow.lines().size(), inline_projections.size() + 1);
  }
  CliRun run = RunStoreledger({"--db", db, "rebuild", "--flush-every", "3"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::unique_ptr<EventLog> log = OpenLog(db);
  EXPECT_EQ(LiveProjections(*log), inline_projections);
  std::map<std::string, std::string> snapshots_after;
  ASSERT_TRUE(
      log->ScanProjections(kSnapshotPrefix,
                           [&](absl::string_view k, absl::string_view v) {
                             snapshots_after.emplace(k, v);
                             return true;
                           })
          .ok());
  EXPECT_EQ(snapshots_after, snapshots_before);
}

// A key in the shadow space outside the live record prefixes (before the
// first, between two, after the last) is found by the comparison's gap
// check and stops the rebuild; a record there is counted, not refused.
TEST(RebuildTest, AStrayShadowKeyStopsTheRebuild) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  ASSERT_NO_FATAL_FAILURE(SimulateLedger(db, 4, 3));
  std::unique_ptr<EventLog> log = OpenLog(db);
  const std::map<std::string, std::string> healthy = LiveProjections(*log);
  for (const std::string& stray : {std::string("\x01"), std::string("a/x"),
                                   std::string("z"), std::string("k")}) {
    SCOPED_TRACE(absl::CEscape(stray));
    RebuildOptions options;
    // The last progress call comes after the last shadow write.
    options.progress = [&](uint64_t done, uint64_t total) {
      if (done != total) return;
      ASSERT_TRUE(log->db()
                      ->Put({}, log->projections_cf(),
                            absl::StrCat(kShadowPrefix, stray), "")
                      .ok());
    };
    absl::StatusOr<v1::RebuildSummary> summary = Rebuild(log.get(), options);
    ASSERT_FALSE(summary.ok());
    EXPECT_EQ(summary.status().code(), absl::StatusCode::kInternal);
    EXPECT_THAT(summary.status().message(),
                HasSubstr(absl::StrCat("unexpected shadow key ",
                                       absl::CEscape(kShadowPrefix),
                                       absl::CEscape(stray))));
  }
  EXPECT_EQ(LiveProjections(*log), healthy);
  RebuildOptions options;
  options.shadow_only = true;
  absl::StatusOr<v1::RebuildSummary> summary = Rebuild(log.get(), options);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->differences(), 0u);
  EXPECT_EQ(summary->records_rebuilt(), healthy.size());
}

// The two ways of replaying (the log verified on a second thread, or on the
// folding one) rebuild the same keys; a small flush interval makes records
// go cold, get written to the shadow space and be read back; a damaged
// envelope stops both with kDataLoss, naming its position, before anything
// live is touched.
TEST(RebuildTest, PipelinedAndOneThreadAgreeAndBothRefuseADamagedLog) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  ASSERT_NO_FATAL_FAILURE(SimulateLedger(db, 64, 11));
  std::unique_ptr<EventLog> log = OpenLog(db);
  const uint64_t head = log->head().position;
  ASSERT_GT(head, 3000u);  // several 1024-envelope batches
  const std::map<std::string, std::string> healthy = LiveProjections(*log);
  uint64_t records = 0;
  for (const bool second_thread : {true, false}) {
    // sst_keys_min 1: every eviction an ingested SST file (the default
    // sends a ledger this small through WriteBatches); every 100 events,
    // not 3, since an ingestion syncs files.
    for (const auto& [flush_every, sst_keys_min] :
         {std::pair<uint64_t, uint64_t>{3, kRebuildSstKeysMinDefault},
          {1'000'000, kRebuildSstKeysMinDefault},
          {100, 1},
          {1'000'000, 1}}) {
      SCOPED_TRACE(absl::StrCat("second thread ", second_thread,
                                ", flush every ", flush_every, ", SST from ",
                                sst_keys_min, " keys"));
      RebuildOptions options;
      options.shadow_only = true;
      options.verify_on_second_thread = second_thread;
      options.flush_every_events = flush_every;
      options.sst_keys_min = sst_keys_min;
      RebuildOptions::Stats stats;
      options.stats = &stats;
      absl::StatusOr<v1::RebuildSummary> summary = Rebuild(log.get(), options);
      ASSERT_TRUE(summary.ok()) << summary.status();
      EXPECT_EQ(summary->events_replayed(), head);
      EXPECT_EQ(summary->differences(), 0u);
      EXPECT_EQ(summary->records_rebuilt(), healthy.size());
      if (records == 0) records = summary->records_rebuilt();
      EXPECT_EQ(summary->records_rebuilt(), records);
      if (flush_every < 1'000'000) {
        // Stores are touched again long after they went cold.
        EXPECT_GT(stats.reads_back, 0u);
        EXPECT_GT(stats.shadow_keys_written, healthy.size());
      } else {
        // Everything stays in memory and is written once, at the end.
        EXPECT_EQ(stats.reads_back, 0u);
        EXPECT_EQ(stats.shadow_keys_written, healthy.size());
      }
    }
  }

  // Damage one envelope in the third batch.
  const uint64_t damaged = 2100;
  std::string raw;
  ASSERT_TRUE(
      log->db()->Get({}, log->events_cf(), PositionKey(damaged), &raw).ok());
  raw[raw.size() / 2] ^= 0x01;
  ASSERT_TRUE(
      log->db()->Put({}, log->events_cf(), PositionKey(damaged), raw).ok());
  std::vector<absl::Status> failures;
  for (const bool second_thread : {true, false}) {
    RebuildOptions options;  // a repairing rebuild: it must not get that far
    options.verify_on_second_thread = second_thread;
    absl::StatusOr<v1::RebuildSummary> summary = Rebuild(log.get(), options);
    ASSERT_FALSE(summary.ok());
    EXPECT_EQ(summary.status().code(), absl::StatusCode::kDataLoss)
        << summary.status();
    EXPECT_THAT(summary.status().message(),
                HasSubstr(absl::StrCat("position ", damaged)));
    failures.push_back(summary.status());
  }
  // The pipeline checks the hashes on its folding thread: the same error.
  EXPECT_EQ(failures[0], failures[1]);
  EXPECT_EQ(LiveProjections(*log), healthy);
}

// --------------------------------------------------------------------- tail

std::vector<uint64_t> Positions(const std::string& jsonl) {
  std::vector<uint64_t> out;
  for (absl::string_view line :
       absl::StrSplit(jsonl, '\n', absl::SkipEmpty())) {
    out.push_back(FromJson<v1::Envelope>(std::string(line)).position());
  }
  return out;
}

std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
  std::vector<uint64_t> out;
  for (uint64_t p = first; p <= last; ++p) out.push_back(p);
  return out;
}

TEST_F(InvestigateTest, TailPrintsEveryEventAfterAPositionInOrder) {
  const uint64_t head = Head();
  EXPECT_EQ(Positions(Run({"tail", "--from-position", "0"}).out),
            Range(1, head));
  EXPECT_EQ(
      Positions(Run({"tail", "--from-position", absl::StrCat(head - 3)}).out),
      Range(head - 2, head));
  EXPECT_EQ(
      Positions(Run({"tail", "--from-position", "5", "--max-events", "2"}).out),
      Range(6, 7));
  EXPECT_TRUE(Run({"tail", "--from-position", absl::StrCat(head)}).out.empty());
  EXPECT_EQ(Run({"tail"}).exit_code, 2);

  // Delimited: varint length, then the stored envelope bytes.
  CliRun delimited =
      Run({"tail", "--from-position", "0", "--format", "delimited"});
  ASSERT_EQ(delimited.exit_code, 0) << delimited.err;
  google::protobuf::io::ArrayInputStream raw(
      delimited.out.data(), static_cast<int>(delimited.out.size()));
  google::protobuf::io::CodedInputStream in(&raw);
  std::vector<uint64_t> positions;
  uint32_t size = 0;
  while (in.ReadVarint32(&size)) {
    std::string bytes;
    ASSERT_TRUE(in.ReadString(&bytes, static_cast<int>(size)));
    v1::Envelope envelope;
    ASSERT_TRUE(envelope.ParseFromString(bytes));
    positions.push_back(envelope.position());
  }
  EXPECT_EQ(positions, Range(1, head));
}

// A writer appending while `tail --follow` polls: the consumer sees exactly
// 1..head; stopped and restarted from the last position it printed, it
// misses nothing and repeats nothing. The writer holds its last commands
// back until the first consumer has stopped, so the restarted one always
// has events to follow that were appended after the stop, however slowly
// the consumer's process starts (a sanitizer build, a loaded machine).
TEST(TailFollowTest, ConcurrentWriterAndRestartingConsumerSeeOneToHead) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  std::vector<SimulatedStep> steps;
  for (const SimulatedStep& step : PlanMigration(4, 3)) {
    if (step.amount == SimulatedStep::Amount::kAsWritten) steps.push_back(step);
  }
  constexpr size_t kHeldBack = 10;
  ASSERT_GT(steps.size(), kHeldBack + 40);

  std::mutex mu;
  std::condition_variable cv;
  bool first_stopped = false;  // guarded by mu
  std::thread writer([&] {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (i == steps.size() - kHeldBack) {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, std::chrono::minutes(5),
                    [&] { return first_stopped; });
      }
      ASSERT_TRUE((*ledger)->Execute(steps[i].command).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  // First consumer: stops after 40 events, mid-stream.
  CliRun first =
      RunStoreledger({"--db", db, "tail", "--from-position", "0", "--follow",
                      "--poll-ms", "5", "--max-events", "40"});
  const uint64_t head_at_stop = (*ledger)->log().head().position;
  {
    std::lock_guard<std::mutex> lock(mu);
    first_stopped = true;
  }
  cv.notify_all();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::vector<uint64_t> seen = Positions(first.out);
  ASSERT_EQ(seen.size(), 40u);
  // Restarted from the last position it saw; exits once idle after the
  // writer is done.
  CliRun second = RunStoreledger({"--db", db, "tail", "--from-position",
                                  absl::StrCat(seen.back()), "--follow",
                                  "--poll-ms", "5", "--idle-exit-ms", "1500"});
  writer.join();
  ASSERT_EQ(second.exit_code, 0) << second.err;
  for (uint64_t p : Positions(second.out)) seen.push_back(p);
  const uint64_t head = (*ledger)->log().head().position;
  ASSERT_GT(head, 100u);
  // The held-back commands appended after the first consumer stopped.
  ASSERT_GT(head, head_at_stop);
  EXPECT_EQ(seen, Range(1, head));
}

// The real binary in its own process, fed by a writer in this one, stopped
// by SIGTERM: exit 0 and exactly 1..head printed.
TEST(TailFollowTest, SeparateProcessStopsCleanlyOnSigterm) {
  TempDir dir;
  const std::string db = dir.Sub("db");
  LedgerOptions options;
  options.sync = false;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(db, options);
  ASSERT_TRUE(ledger.ok()) << ledger.status();
  const std::vector<SimulatedStep> steps = PlanMigration(3, 5);
  // Something to read at the first poll.
  ASSERT_TRUE((*ledger)->Execute(steps.front().command).ok());

  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, out_pipe[0]);
  std::vector<std::string> args = {
      STORELEDGER_BIN, "--db",      db,  "tail", "--from-position", "0",
      "--follow",      "--poll-ms", "10"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, STORELEDGER_BIN, &actions, nullptr, argv.data(),
                        environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  close(out_pipe[1]);

  std::mutex mu;
  std::string output;  // guarded by mu
  std::thread reader([&] {
    char buffer[1 << 14];
    ssize_t n;
    while ((n = read(out_pipe[0], buffer, sizeof buffer)) > 0) {
      std::lock_guard<std::mutex> lock(mu);
      output.append(buffer, static_cast<size_t>(n));
    }
  });
  for (size_t i = 1; i < steps.size(); ++i) {
    if (steps[i].amount != SimulatedStep::Amount::kAsWritten) continue;
    ASSERT_TRUE((*ledger)->Execute(steps[i].command).ok());
  }
  const uint64_t head = (*ledger)->log().head().position;
  // Wait (up to 20 s) until the consumer has printed the head.
  const std::string head_marker = absl::StrCat("\"position\":\"", head, "\"");
  for (int i = 0; i < 2000; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (output.find(head_marker) != std::string::npos) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  reader.join();
  close(out_pipe[0]);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_THAT(output, HasSubstr(head_marker));
  EXPECT_EQ(Positions(output), Range(1, head));
}

}  // namespace
}  // namespace storeledger
