// Finance through the CLI, on a real RocksDB: postings summed by the test
// equal `balances` for every store of a `simulate` run; balances as of a
// time or position agree with `state` and with the projections; statements
// chain across period boundaries (upgrades included) with opening +
// movements = closing; `export` round-trips and its hash chain re-verifies
// with OpenSSL directly, not through the storage code.
#include "replay/finance.h"

#include <openssl/evp.h>

#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "storage/event_log.h"
#include "storage/format.h"
#include "storeledger/v1/ledger.pb.h"
#include "tests/support/cli_json.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::ChinaText;
using ::storeledger::testing::CliRun;
using ::storeledger::testing::FromJson;
using ::storeledger::testing::RunStoreledger;
using ::storeledger::testing::TempDir;
using ::testing::HasSubstr;

constexpr int kSimulatedStores = 60;

// One CSV record (RFC 4180, no line breaks inside fields).
std::vector<std::string> CsvFields(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

int64_t Int(const std::string& text) {
  int64_t value = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &value)) << "'" << text << "'";
  return value;
}

// The Balances of DESIGN.md §5 from account sums, derived here without the
// library's helpers: pending = S/pending, ..., deposit = sum of S/deposit/*.
v1::Balances BalancesOf(const std::string& store,
                        const std::map<std::string, int64_t>& accounts) {
  v1::Balances b;
  for (const auto& [account, fen] : accounts) {
    if (account == store + "/pending") {
      b.set_pending_fen(b.pending_fen() + fen);
    } else if (account == store + "/available") {
      b.set_available_fen(b.available_fen() + fen);
    } else if (account == store + "/withdrawing") {
      b.set_withdrawing_fen(b.withdrawing_fen() + fen);
    } else if (account == "payouts/" + store) {
      b.set_paid_out_fen(b.paid_out_fen() + fen);
    } else if (account.rfind(store + "/deposit/", 0) == 0) {
      b.set_deposit_fen(b.deposit_fen() + fen);
    }
  }
  return b;
}

std::string Text(const v1::Balances& b) { return b.ShortDebugString(); }

std::map<std::string, int64_t> AsMap(
    const google::protobuf::RepeatedPtrField<v1::AccountBalance>& rows) {
  std::map<std::string, int64_t> out;
  for (const v1::AccountBalance& row : rows)
    out[row.account()] = row.balance_fen();
  return out;
}

// ---------------------------------------------------------------- simulate

class SimulatedFinanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    db_ = new std::string(dir_->Sub("db"));
    CliRun run =
        RunStoreledger({"--db", *db_, "simulate", "--stores",
                        absl::StrCat(kSimulatedStores), "--seed", "1"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
  }
  static void TearDownTestSuite() {
    delete db_;
    delete dir_;
  }

  static CliRun Cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--db", *db_});
    return RunStoreledger(args);
  }

  static v1::BalancesReport Balances(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"balances"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = Cli(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::BalancesReport>(run.out);
  }

  static uint64_t Head() {
    CliRun run = Cli({"digest"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::Digest>(run.out).position();
  }

  // Every posting, from `postings --format jsonl`.
  static std::vector<v1::PostingLine> Postings(
      std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"postings", "--format", "jsonl"};
    args.insert(args.end(), extra.begin(), extra.end());
    CliRun run = Cli(args);
    EXPECT_EQ(run.exit_code, 0) << run.err;
    std::vector<v1::PostingLine> out;
    for (const std::string& line : run.lines()) {
      out.push_back(FromJson<v1::PostingLine>(line));
    }
    return out;
  }

  static TempDir* dir_;
  static std::string* db_;
};

TempDir* SimulatedFinanceTest::dir_ = nullptr;
std::string* SimulatedFinanceTest::db_ = nullptr;

TEST_F(SimulatedFinanceTest, PostingsCsvSummedEqualBalancesForEveryStore) {
  CliRun run = Cli({"postings"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> lines = run.lines();
  ASSERT_GT(lines.size(), 100u);
  EXPECT_EQ(lines[0].rfind("# storeledger postings as of position ", 0), 0u)
      << lines[0];
  EXPECT_EQ(lines[1],
            "position,event_id,event_type,occurred_at,store_id,store_kind,"
            "account,debit_fen,credit_fen,order_id,withdrawal_id");
  // Sum per (store, account) exactly as a spreadsheet would.
  std::map<std::string, std::map<std::string, int64_t>> sums;
  int64_t grand_total = 0;
  uint64_t last_position = 0;
  for (size_t i = 2; i < lines.size(); ++i) {
    std::vector<std::string> f = CsvFields(lines[i]);
    ASSERT_EQ(f.size(), 11u) << lines[i];
    const uint64_t position = static_cast<uint64_t>(Int(f[0]));
    EXPECT_GE(position, last_position) << "postings are in log order";
    last_position = position;
    google::protobuf::Timestamp occurred_at;
    EXPECT_TRUE(
        google::protobuf::util::TimeUtil::FromString(f[3], &occurred_at))
        << f[3];
    EXPECT_TRUE(absl::EndsWith(f[3], "+08:00"))
        << "occurred_at is Beijing time";
    const int64_t net = Int(f[7]) - Int(f[8]);
    sums[f[4]][f[6]] += net;
    grand_total += net;
  }
  EXPECT_EQ(grand_total, 0) << "double entry: all postings sum to zero";

  v1::BalancesReport report = Balances();
  EXPECT_EQ(report.source(), "projections");
  ASSERT_GE(report.stores_size(), kSimulatedStores);
  int with_money = 0;
  for (const v1::StoreBalances& store : report.stores()) {
    const v1::Balances from_postings =
        BalancesOf(store.store_id(), sums[store.store_id()]);
    EXPECT_EQ(Text(from_postings), Text(store.balances()))
        << "store " << store.store_id();
    if (store.balances().paid_out_fen() > 0) ++with_money;
    sums.erase(store.store_id());
  }
  EXPECT_GT(with_money, 10) << "the simulation moves money";
  EXPECT_TRUE(sums.empty())
      << "postings of stores balances does not list: " << sums.begin()->first;
}

TEST_F(SimulatedFinanceTest, JsonlAndCsvCarryTheSamePostings) {
  CliRun csv = Cli({"postings"});
  ASSERT_EQ(csv.exit_code, 0);
  std::vector<std::string> lines = csv.lines();
  std::vector<v1::PostingLine> json = Postings();
  ASSERT_EQ(lines.size(), json.size() + 2);  // the as-of line, the header
  for (size_t i = 0; i < json.size(); ++i) {
    std::vector<std::string> f = CsvFields(lines[i + 2]);
    const v1::PostingLine& p = json[i];
    EXPECT_EQ(f[0], absl::StrCat(p.position()));
    EXPECT_EQ(f[1], p.event_id());
    EXPECT_EQ(f[2], p.event_type());
    google::protobuf::Timestamp occurred_at;
    ASSERT_TRUE(
        google::protobuf::util::TimeUtil::FromString(f[3], &occurred_at));
    EXPECT_EQ(occurred_at.seconds(), p.occurred_at().seconds());
    EXPECT_EQ(f[4], p.store_id());
    EXPECT_EQ(f[5], v1::StoreKind_Name(p.store_kind()));
    EXPECT_NE(p.store_kind(), v1::STORE_KIND_UNSPECIFIED);
    EXPECT_EQ(f[6], p.account());
    EXPECT_EQ(Int(f[7]), p.debit_fen());
    EXPECT_EQ(Int(f[8]), p.credit_fen());
    EXPECT_EQ(f[9], p.order_id());
    EXPECT_EQ(f[10], p.withdrawal_id());
  }
}

TEST_F(SimulatedFinanceTest, FiltersSplitThePostingsWithoutLoss) {
  const std::vector<v1::PostingLine> all = Postings();
  const std::string store = all.front().store_id();
  const std::string cut = ChinaText(China(10, 21));
  std::vector<v1::PostingLine> of_store = Postings({"--store", store});
  std::vector<v1::PostingLine> before =
      Postings({"--store", store, "--to", cut});
  std::vector<v1::PostingLine> after =
      Postings({"--store", store, "--from", cut});
  EXPECT_FALSE(of_store.empty());
  EXPECT_EQ(before.size() + after.size(), of_store.size());
  size_t expected = 0;
  for (const v1::PostingLine& p : all) {
    if (p.store_id() == store) ++expected;
  }
  EXPECT_EQ(of_store.size(), expected);
  const absl::Time cut_time = China(10, 21);
  for (const v1::PostingLine& p : before) {
    EXPECT_LT(ToTime(p.occurred_at()), cut_time);
  }
  for (const v1::PostingLine& p : after) {
    EXPECT_GE(ToTime(p.occurred_at()), cut_time);
  }
}

TEST_F(SimulatedFinanceTest, BalancesFoldedFromPostingsAtHeadEqualProjections) {
  v1::BalancesReport live = Balances();
  v1::BalancesReport folded = Balances({"--position", absl::StrCat(Head())});
  EXPECT_EQ(folded.source(), "postings");
  folded.set_source(live.source());
  EXPECT_EQ(folded.SerializeAsString(), live.SerializeAsString())
      << folded.ShortDebugString() << "\nvs\n"
      << live.ShortDebugString();
}

TEST_F(SimulatedFinanceTest, BalancesAsOfAgreeWithStateAsOfAndWithPostings) {
  const std::vector<v1::PostingLine> postings = Postings();
  for (absl::Time t : {China(9, 1), China(10, 25), China(11, 20)}) {
    SCOPED_TRACE(ChinaText(t));
    v1::BalancesReport report = Balances({"--as-of", ChinaText(t)});
    ASSERT_GT(report.stores_size(), 0);
    std::map<std::string, std::map<std::string, int64_t>> sums;
    for (const v1::PostingLine& p : postings) {
      if (ToTime(p.occurred_at()) <= t) {
        sums[p.store_id()][p.account()] += p.debit_fen() - p.credit_fen();
      }
    }
    for (const v1::StoreBalances& store : report.stores()) {
      EXPECT_EQ(Text(BalancesOf(store.store_id(), sums[store.store_id()])),
                Text(store.balances()))
          << store.store_id();
      CliRun state =
          Cli({"state", "--store", store.store_id(), "--as-of", ChinaText(t)});
      ASSERT_EQ(state.exit_code, 0) << state.err;
      EXPECT_EQ(Text(FromJson<v1::StoreState>(state.out).balances()),
                Text(store.balances()))
          << store.store_id();
    }
  }
}

TEST_F(SimulatedFinanceTest, BalancesAtAPositionIgnoreLaterEvents) {
  const uint64_t half = Head() / 2;
  v1::BalancesReport report = Balances({"--position", absl::StrCat(half)});
  EXPECT_EQ(report.position(), half);
  std::map<std::string, std::map<std::string, int64_t>> sums;
  for (const v1::PostingLine& p :
       Postings({"--position", absl::StrCat(half)})) {
    EXPECT_LE(p.position(), half);
    sums[p.store_id()][p.account()] += p.debit_fen() - p.credit_fen();
  }
  for (const v1::StoreBalances& store : report.stores()) {
    EXPECT_EQ(Text(BalancesOf(store.store_id(), sums[store.store_id()])),
              Text(store.balances()))
        << store.store_id();
  }
}

// A partitioned cluster's balances (MergePartitionBalances): one ledger's
// report dealt out to three "partitions" and merged back is the same
// report, totals included, but for the position (per partition).
TEST_F(SimulatedFinanceTest, PartitionBalancesMergeBackIntoOneReport) {
  const v1::BalancesReport whole = Balances();
  ASSERT_GT(whole.stores_size(), 3);
  std::vector<v1::BalancesReport> parts(3);
  for (size_t p = 0; p < parts.size(); ++p) {
    parts[p].set_source(whole.source());
    parts[p].set_position(whole.position() + p);
  }
  // Dealt from the end, so that no part is sorted as the whole is.
  for (int i = whole.stores_size() - 1; i >= 0; --i) {
    *parts[i % parts.size()].add_stores() = whole.stores(i);
  }
  absl::StatusOr<v1::BalancesReport> merged = MergePartitionBalances(parts);
  ASSERT_TRUE(merged.ok()) << merged.status();
  v1::BalancesReport want = whole;
  want.clear_position();
  EXPECT_EQ(merged->SerializeAsString(), want.SerializeAsString())
      << merged->ShortDebugString();

  absl::StatusOr<v1::BalancesReport> none = MergePartitionBalances({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->stores_size(), 0);

  // A store in two partitions (store ids are unique in a cluster).
  std::vector<v1::BalancesReport> twice = parts;
  *twice[1].add_stores() = twice[0].stores(0);
  absl::StatusOr<v1::BalancesReport> duplicate = MergePartitionBalances(twice);
  EXPECT_TRUE(absl::IsInvalidArgument(duplicate.status()))
      << duplicate.status();
  EXPECT_THAT(duplicate.status().message(),
              HasSubstr(twice[0].stores(0).store_id()));

  // Projections and postings are not summed together.
  std::vector<v1::BalancesReport> mixed = parts;
  mixed[2].set_source("postings");
  EXPECT_TRUE(absl::IsInvalidArgument(MergePartitionBalances(mixed).status()));

  // Totals that would overflow are an error, not a wrapped figure.
  std::vector<v1::BalancesReport> huge(2);
  for (size_t p = 0; p < huge.size(); ++p) {
    huge[p].set_source(whole.source());
    v1::StoreBalances* store = huge[p].add_stores();
    store->set_store_id(absl::StrCat("huge-", p));
    store->set_kind(v1::MINI_STORE);
    store->mutable_balances()->set_available_fen(
        std::numeric_limits<int64_t>::max());
  }
  EXPECT_TRUE(absl::IsDataLoss(MergePartitionBalances(huge).status()));
}

TEST_F(SimulatedFinanceTest, TotalsKeepLegacyAndWeChatStoreMoneyApart) {
  v1::BalancesReport report = Balances();
  ASSERT_EQ(report.totals_size(), 3);
  EXPECT_EQ(report.totals(0).kind(), v1::MINI_STORE);
  EXPECT_TRUE(report.totals(0).legacy());
  EXPECT_EQ(report.totals(1).kind(), v1::CHANNELS_STORE);
  EXPECT_TRUE(report.totals(1).legacy());
  EXPECT_EQ(report.totals(2).kind(), v1::WECHAT_STORE);
  EXPECT_FALSE(report.totals(2).legacy());
  for (const v1::KindTotals& totals : report.totals()) {
    v1::Balances sum;
    uint64_t stores = 0;
    for (const v1::StoreBalances& store : report.stores()) {
      if (store.kind() != totals.kind()) continue;
      ++stores;
      sum.set_pending_fen(sum.pending_fen() + store.balances().pending_fen());
      sum.set_available_fen(sum.available_fen() +
                            store.balances().available_fen());
      sum.set_withdrawing_fen(sum.withdrawing_fen() +
                              store.balances().withdrawing_fen());
      sum.set_paid_out_fen(sum.paid_out_fen() +
                           store.balances().paid_out_fen());
      sum.set_deposit_fen(sum.deposit_fen() + store.balances().deposit_fen());
    }
    EXPECT_EQ(totals.stores(), stores);
    EXPECT_GT(stores, 0u);
    EXPECT_EQ(Text(totals.balances()), Text(sum))
        << v1::StoreKind_Name(totals.kind());
  }

  // The CSV: store rows, then one total row per kind, labelled legacy or new.
  CliRun csv = Cli({"balances", "--format", "csv"});
  ASSERT_EQ(csv.exit_code, 0);
  std::vector<std::string> lines = csv.lines();
  ASSERT_EQ(lines.size(), 2u + report.stores_size() + 3u);
  EXPECT_THAT(lines[0], ::testing::HasSubstr("amounts in fen"));
  EXPECT_EQ(lines[1],
            "row,store_id,kind,status,upgraded_from,upgraded_to,pending_fen,"
            "available_fen,withdrawing_fen,paid_out_fen,deposit_fen");
  std::vector<std::string> last = CsvFields(lines.back());
  EXPECT_EQ(last[0], "total_new");
  EXPECT_EQ(last[2], "WECHAT_STORE");
  EXPECT_EQ(Int(last[9]), report.totals(2).balances().paid_out_fen());
  EXPECT_EQ(CsvFields(lines[lines.size() - 3])[0], "total_legacy");
}

// The store's stream, read through the log directly.
std::vector<v1::Envelope> StoreEvents(const std::string& db,
                                      const std::string& store) {
  EventLogOptions options;
  options.read_only = true;
  options.create_if_missing = false;
  absl::StatusOr<std::unique_ptr<EventLog>> log = EventLog::Open(db, options);
  EXPECT_TRUE(log.ok()) << log.status();
  std::vector<v1::Envelope> out;
  if (!log.ok()) return out;
  EXPECT_TRUE((*log)
                  ->ScanStream(StoreStream(store), 0,
                               [&](const v1::Envelope& e) {
                                 out.push_back(e);
                                 return true;
                               })
                  .ok());
  return out;
}

// Statements over consecutive periods: each opens where the previous
// closed; opening + movements = closing; the lines sum to the movements and
// end at the closing balances; the last closing equals `balances`.
void CheckStatementChain(const std::string& db, const std::string& store,
                         const std::vector<absl::Time>& boundaries,
                         const v1::Balances& final_balances) {
  std::map<std::string, int64_t> previous_closing;
  for (size_t i = 0; i + 1 < boundaries.size(); ++i) {
    SCOPED_TRACE(absl::StrCat(store, " [", ChinaText(boundaries[i]), ", ",
                              ChinaText(boundaries[i + 1]), ")"));
    CliRun run =
        RunStoreledger({"--db", db, "statement", "--store", store, "--from",
                        ChinaText(boundaries[i]), "--to",
                        ChinaText(boundaries[i + 1]), "--format", "json"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    const v1::Statement statement = FromJson<v1::Statement>(run.out);
    const auto opening = AsMap(statement.opening());
    const auto movements = AsMap(statement.movements());
    const auto closing = AsMap(statement.closing());
    // Accounts first seen in this period open at zero.
    for (const auto& [account, fen] : opening) {
      const auto it = previous_closing.find(account);
      EXPECT_EQ(fen, it == previous_closing.end() ? 0 : it->second) << account;
    }
    for (const auto& [account, fen] : previous_closing) {
      EXPECT_EQ(opening.count(account), 1u) << account;
    }
    std::map<std::string, int64_t> from_lines, last_balance;
    for (const v1::StatementLine& line : statement.lines()) {
      const v1::PostingLine& p = line.posting();
      EXPECT_GE(ToTime(p.occurred_at()), boundaries[i]);
      EXPECT_LT(ToTime(p.occurred_at()), boundaries[i + 1]);
      from_lines[p.account()] += p.debit_fen() - p.credit_fen();
      last_balance[p.account()] = line.balance_after_fen();
    }
    int64_t closing_total = 0;
    for (const auto& [account, fen] : closing) {
      const int64_t open = opening.count(account) ? opening.at(account) : 0;
      const int64_t moved =
          movements.count(account) ? movements.at(account) : 0;
      EXPECT_EQ(open + moved, fen) << account;
      EXPECT_EQ(from_lines[account], moved) << account;
      if (last_balance.count(account)) {
        EXPECT_EQ(last_balance[account], fen) << account;
      }
      closing_total += fen;
    }
    EXPECT_EQ(closing_total, 0) << "a store's postings balance to zero";
    previous_closing = closing;
  }
  EXPECT_EQ(Text(BalancesOf(store, previous_closing)), Text(final_balances));
}

TEST_F(SimulatedFinanceTest, StatementsChainAcrossPeriodsStraddlingUpgrades) {
  v1::BalancesReport report = Balances();
  std::map<std::string, v1::Balances> final_balances;
  for (const v1::StoreBalances& store : report.stores()) {
    final_balances[store.store_id()] = store.balances();
  }
  int upgraded = 0;
  for (const v1::StoreBalances& store : report.stores()) {
    if (store.status() != v1::UPGRADED || upgraded >= 6) continue;
    ++upgraded;
    absl::Time upgraded_at = absl::InfiniteFuture();
    for (const v1::Envelope& e : StoreEvents(*db_, store.store_id())) {
      if (e.payload().has_store_upgraded())
        upgraded_at = ToTime(e.occurred_at());
    }
    ASSERT_NE(upgraded_at, absl::InfiniteFuture()) << store.store_id();
    // The middle period straddles the upgrade by an hour on either side.
    const std::vector<absl::Time> boundaries = {
        absl::FromCivil(absl::CivilDay(2023, 1, 1), absl::UTCTimeZone()),
        upgraded_at - absl::Hours(24 * 7),
        upgraded_at - absl::Hours(1),
        upgraded_at + absl::Hours(1),
        China(11, 18),
        absl::FromCivil(absl::CivilDay(2026, 1, 1), absl::UTCTimeZone())};
    CheckStatementChain(*db_, store.store_id(), boundaries,
                        final_balances[store.store_id()]);
    CheckStatementChain(*db_, store.upgraded_to(), boundaries,
                        final_balances[store.upgraded_to()]);
  }
  EXPECT_GT(upgraded, 0);
}

TEST_F(SimulatedFinanceTest, StatementCsvHasOneTableWithSections) {
  const std::vector<v1::PostingLine> postings = Postings();
  const v1::PostingLine& middle = postings[postings.size() / 2];
  const absl::Time at = ToTime(middle.occurred_at());
  CliRun run = Cli({"statement", "--store", middle.store_id(), "--from",
                    ChinaText(at - absl::Hours(24 * 10)), "--to",
                    ChinaText(at + absl::Hours(1))});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> lines = run.lines();
  ASSERT_GT(lines.size(), 1u);
  EXPECT_THAT(lines[1], ::testing::HasSubstr("# period ["));
  EXPECT_EQ(lines[2],
            "section,account,position,event_id,event_type,occurred_at,"
            "debit_fen,credit_fen,balance_fen,order_id,withdrawal_id");
  std::map<std::string, int> sections;
  std::string previous = "opening";
  const std::vector<std::string> order = {"opening", "posting", "movement",
                                          "closing"};
  for (size_t i = 3; i < lines.size(); ++i) {
    std::vector<std::string> f = CsvFields(lines[i]);
    ASSERT_EQ(f.size(), 11u) << lines[i];
    ++sections[f[0]];
    // Sections come in order.
    EXPECT_LE(std::find(order.begin(), order.end(), previous),
              std::find(order.begin(), order.end(), f[0]));
    previous = f[0];
  }
  EXPECT_EQ(sections["opening"], sections["closing"]);
  EXPECT_EQ(sections["movement"], sections["closing"]);
  EXPECT_GT(sections["posting"], 0);
}

TEST_F(SimulatedFinanceTest, BadFlagsAreUsageErrorsAndUnknownStoreIsNotFound) {
  EXPECT_EQ(Cli({"statement", "--store", "s00001"}).exit_code, 2);
  EXPECT_EQ(Cli({"statement", "--store", "s00001", "--from",
                 ChinaText(China(11, 1)), "--to", ChinaText(China(10, 1))})
                .exit_code,
            2);
  CliRun unknown =
      Cli({"statement", "--store", "nope", "--from", ChinaText(China(10, 1)),
           "--to", ChinaText(China(11, 1))});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("nope"));
  EXPECT_EQ(Cli({"postings", "--format", "xml"}).exit_code, 2);
  EXPECT_EQ(Cli({"balances", "--format", "xml"}).exit_code, 2);
  EXPECT_EQ(Cli({"balances", "--as-of", "yesterday"}).exit_code, 2);
  EXPECT_EQ(Cli({"postings", "--store"}).exit_code, 2);
}

// ---------------------------------------------------------------- export

std::string Sha256Of(const std::string& a, const std::string& b) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EXPECT_EQ(EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr), 1);
  EXPECT_EQ(EVP_DigestUpdate(ctx, a.data(), a.size()), 1);
  EXPECT_EQ(EVP_DigestUpdate(ctx, b.data(), b.size()), 1);
  EXPECT_EQ(EVP_DigestFinal_ex(ctx, digest, &size), 1);
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(digest), size);
}

std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  message.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

struct Exported {
  v1::Envelope envelope;
  std::string raw;
};

std::vector<Exported> DecodeDelimited(const std::string& bytes) {
  std::vector<Exported> out;
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(bytes.data()),
      static_cast<int>(bytes.size()));
  in.SetTotalBytesLimit(1 << 30);
  uint32_t size = 0;
  while (in.ReadVarint32(&size)) {
    Exported& e = out.emplace_back();
    EXPECT_TRUE(in.ReadString(&e.raw, static_cast<int>(size)));
    EXPECT_TRUE(e.envelope.ParseFromString(e.raw));
  }
  EXPECT_EQ(in.CurrentPosition(), static_cast<int>(bytes.size()))
      << "trailing bytes after the last envelope";
  return out;
}

// Re-hashes the chain from `prev_hash`: every envelope's hash is SHA-256 of
// prev_hash || its deterministic bytes without the hash, and links on.
void RehashChain(const std::vector<Exported>& envelopes, uint64_t first,
                 std::string prev_hash) {
  uint64_t expected = first;
  for (const Exported& e : envelopes) {
    ASSERT_EQ(e.envelope.position(), expected);
    ASSERT_EQ(e.envelope.prev_hash(), prev_hash) << "at " << expected;
    v1::Envelope without = e.envelope;
    without.clear_hash();
    const std::string bytes = DeterministicBytes(without);
    ASSERT_EQ(Sha256Of(prev_hash, bytes), e.envelope.hash())
        << "at " << expected;
    // The stored bytes are exactly that serialization plus the hash field.
    ASSERT_EQ(e.raw.substr(0, bytes.size()), bytes) << "at " << expected;
    prev_hash = e.envelope.hash();
    ++expected;
  }
}

TEST_F(SimulatedFinanceTest, ExportRoundTripsAndItsChainRehashes) {
  CliRun exported = Cli({"export", "--format", "delimited"});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;
  const std::vector<Exported> envelopes = DecodeDelimited(exported.out);
  CliRun digest = Cli({"digest"});
  const v1::Digest head = FromJson<v1::Digest>(digest.out);
  ASSERT_EQ(envelopes.size(), head.position());
  ASSERT_NO_FATAL_FAILURE(
      RehashChain(envelopes, 1, std::string(format::kHashBytes, '\0')));
  // The last hash is the digest finance writes down.
  std::string hex;
  for (unsigned char c : envelopes.back().envelope.hash()) {
    absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
  }
  EXPECT_EQ(hex, head.hash());

  // From a position on: the first exported envelope links to the one before.
  const uint64_t from = head.position() / 3;
  CliRun tail = Cli({"export", "--from-position", absl::StrCat(from)});
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  const std::vector<Exported> rest = DecodeDelimited(tail.out);
  ASSERT_EQ(rest.size(), head.position() - from);
  ASSERT_NO_FATAL_FAILURE(
      RehashChain(rest, from + 1, envelopes[from - 1].envelope.hash()));

  // jsonl carries the same envelopes.
  CliRun jsonl = Cli({"export", "--format", "jsonl"});
  ASSERT_EQ(jsonl.exit_code, 0);
  std::vector<std::string> lines = jsonl.lines();
  ASSERT_EQ(lines.size(), envelopes.size());
  for (size_t i = 0; i < lines.size(); i += 97) {
    EXPECT_EQ(FromJson<v1::Envelope>(lines[i]).SerializeAsString(),
              envelopes[i].envelope.SerializeAsString());
  }
}

// ---------------------------------------------------------------- by hand

// One legacy mini store through its upgrade, with figures worked out by
// hand: money stays in the legacy store after the upgrade (R13).
class HandFinanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::vector<std::pair<absl::Time, std::string>> commands = {
        {China(10, 1, 10),
         R"("openStore":{"storeId":"s1","merchantId":"m1","kind":"MINI_STORE","subject":"ENTERPRISE"})"},
        {China(10, 1, 11),
         R"("addProduct":{"storeId":"s1","productId":"p1","kind":"PHYSICAL","origin":"OWN","categoryId":"cat-1","priceFen":"10000"})"},
        {China(10, 1, 12),
         R"("listProduct":{"storeId":"s1","productId":"p1"})"},
        {China(10, 2, 10),
         R"("placeOrder":{"storeId":"s1","orderId":"o1","lines":[{"productId":"p1","quantity":"2","unitPriceFen":"10000"}]})"},
        {China(10, 2, 11),
         R"("payOrder":{"storeId":"s1","orderId":"o1","amountFen":"20000"})"},
        {China(10, 3, 10), R"("shipOrder":{"storeId":"s1","orderId":"o1"})"},
        {China(10, 10, 10),
         R"("settleOrder":{"storeId":"s1","orderId":"o1","commissionFen":"1000"})"},
        {China(10, 11, 10),
         R"("placeOrder":{"storeId":"s1","orderId":"o2","lines":[{"productId":"p1","quantity":"1","unitPriceFen":"10000"}]})"},
        {China(10, 11, 11),
         R"("payOrder":{"storeId":"s1","orderId":"o2","amountFen":"10000"})"},
        {China(10, 22, 10),
         R"("upgradeStore":{"sourceStoreId":"s1","targetStoreId":"s1-wx"})"},
        {China(10, 23, 10), R"("shipOrder":{"storeId":"s1","orderId":"o2"})"},
        {China(10, 23, 11),
         R"("grantCategoryQualification":{"storeId":"s1-wx","categoryId":"cat-1"})"},
        {China(10, 23, 12),
         R"("payDeposit":{"storeId":"s1-wx","categoryId":"cat-1","amountFen":"50000"})"},
        {China(10, 25, 10),
         R"("settleOrder":{"storeId":"s1","orderId":"o2","commissionFen":"500"})"},
        {China(10, 26, 10),
         R"("requestWithdrawal":{"storeId":"s1","withdrawalId":"w1","amountFen":"28500"})"},
        {China(10, 27, 10),
         R"("completeWithdrawal":{"storeId":"s1","withdrawalId":"w1"})"},
    };
    std::string input;
    int n = 0;
    for (const auto& [at, body] : commands) {
      absl::StrAppend(&input, R"({"commandId":"h-)", ++n, R"(","occurredAt":")",
                      ChinaText(at), R"(",)", body, "}\n");
    }
    CliRun run = RunStoreledger({"--db", db_, "apply", "-"}, input);
    ASSERT_EQ(run.exit_code, 0) << run.err;
    for (const std::string& line : run.lines()) {
      ASSERT_EQ(FromJson<v1::CommandResult>(line).status(), v1::ACCEPTED)
          << line;
    }
  }

  v1::Statement Statement(const std::string& store, absl::Time from,
                          absl::Time to) {
    CliRun run = RunStoreledger({"--db", db_, "statement", "--store", store,
                                 "--from", ChinaText(from), "--to",
                                 ChinaText(to), "--format", "json"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
    return FromJson<v1::Statement>(run.out);
  }

  TempDir dir_;
  std::string db_ = dir_.Sub("db");
};

using Accounts = std::map<std::string, int64_t>;

TEST_F(HandFinanceTest, StatementStraddlingTheUpgrade) {
  // [10-20, 10-26): the upgrade (10-22, no money) and o2's settlement.
  v1::Statement s = Statement("s1", China(10, 20), China(10, 26));
  EXPECT_EQ(s.kind(), v1::MINI_STORE);
  EXPECT_EQ(AsMap(s.opening()), (Accounts{{"buyers", -30000},
                                          {"platform/commission", 1000},
                                          {"s1/available", 19000},
                                          {"s1/pending", 10000}}));
  EXPECT_EQ(AsMap(s.movements()), (Accounts{{"buyers", 0},
                                            {"platform/commission", 500},
                                            {"s1/available", 9500},
                                            {"s1/pending", -10000}}));
  EXPECT_EQ(AsMap(s.closing()), (Accounts{{"buyers", -30000},
                                          {"platform/commission", 1500},
                                          {"s1/available", 28500},
                                          {"s1/pending", 0}}));
  ASSERT_EQ(s.lines_size(), 3);
  EXPECT_EQ(s.lines(0).posting().account(), "s1/pending");
  EXPECT_EQ(s.lines(0).posting().credit_fen(), 10000);
  EXPECT_EQ(s.lines(0).posting().order_id(), "o2");
  EXPECT_EQ(s.lines(0).balance_after_fen(), 0);
  EXPECT_EQ(s.lines(1).balance_after_fen(), 28500);  // s1/available

  // The period after: the withdrawal leaves through payouts/s1.
  v1::Statement after = Statement("s1", China(10, 26), China(11, 1));
  EXPECT_EQ(AsMap(after.closing()), (Accounts{{"buyers", -30000},
                                              {"payouts/s1", 28500},
                                              {"platform/commission", 1500},
                                              {"s1/available", 0},
                                              {"s1/pending", 0},
                                              {"s1/withdrawing", 0}}));
  EXPECT_EQ(after.lines(0).posting().withdrawal_id(), "w1");

  // The WeChat Store it became holds only its own deposit.
  v1::Statement target = Statement("s1-wx", China(10, 1), China(11, 1));
  EXPECT_EQ(target.kind(), v1::WECHAT_STORE);
  EXPECT_TRUE(
      target.opening().empty() ||
      AsMap(target.opening()) ==
          (Accounts{{"merchant_bank/s1-wx", 0}, {"s1-wx/deposit/cat-1", 0}}));
  EXPECT_EQ(AsMap(target.closing()),
            (Accounts{{"merchant_bank/s1-wx", -50000},
                      {"s1-wx/deposit/cat-1", 50000}}));

  // A period with no postings: opening = closing, no lines.
  v1::Statement quiet = Statement("s1", China(10, 15), China(10, 20));
  EXPECT_EQ(quiet.lines_size(), 0);
  EXPECT_EQ(AsMap(quiet.opening()), AsMap(quiet.closing()));
}

TEST_F(HandFinanceTest, BalancesAndTotals) {
  CliRun run = RunStoreledger({"--db", db_, "balances"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  v1::BalancesReport report = FromJson<v1::BalancesReport>(run.out);
  ASSERT_EQ(report.stores_size(), 2);
  EXPECT_EQ(report.stores(0).store_id(), "s1");
  EXPECT_EQ(report.stores(0).status(), v1::UPGRADED);
  EXPECT_EQ(report.stores(0).upgraded_to(), "s1-wx");
  EXPECT_EQ(report.stores(0).balances().paid_out_fen(), 28500);
  EXPECT_EQ(report.stores(0).balances().available_fen(), 0);
  EXPECT_EQ(report.stores(1).store_id(), "s1-wx");
  EXPECT_EQ(report.stores(1).balances().deposit_fen(), 50000);
  EXPECT_EQ(report.totals(0).balances().paid_out_fen(), 28500);  // mini
  EXPECT_EQ(report.totals(0).stores(), 1u);
  EXPECT_EQ(report.totals(1).stores(), 0u);                     // channels
  EXPECT_EQ(report.totals(2).balances().deposit_fen(), 50000);  // wechat
  EXPECT_EQ(report.totals(2).balances().paid_out_fen(), 0);

  // As of the day before the upgrade: o2 paid, not settled.
  CliRun before = RunStoreledger(
      {"--db", db_, "balances", "--as-of", ChinaText(China(10, 21))});
  ASSERT_EQ(before.exit_code, 0) << before.err;
  v1::BalancesReport then = FromJson<v1::BalancesReport>(before.out);
  ASSERT_EQ(then.stores_size(), 1) << "s1-wx did not exist yet";
  EXPECT_EQ(then.stores(0).status(), v1::OPEN);
  EXPECT_EQ(then.stores(0).balances().pending_fen(), 10000);
  EXPECT_EQ(then.stores(0).balances().available_fen(), 19000);
}

TEST_F(HandFinanceTest, AuditPassesAndDigestSurvivesLaterAppends) {
  CliRun audit = RunStoreledger({"--db", db_, "audit"});
  EXPECT_EQ(audit.exit_code, 0) << audit.out << audit.err;
  const v1::Digest digest =
      FromJson<v1::Digest>(RunStoreledger({"--db", db_, "digest"}).out);
  CliRun more = RunStoreledger(
      {"--db", db_, "apply", "-"},
      absl::StrCat(
          R"({"commandId":"h-later","occurredAt":")", ChinaText(China(11, 2)),
          R"(","placeOrder":{"storeId":"s1","orderId":"o3","lines":[{"productId":"p1","quantity":"1","unitPriceFen":"10000"}]}})",
          "\n"));
  ASSERT_EQ(more.exit_code, 0) << more.err;
  CliRun verify =
      RunStoreledger({"--db", db_, "verify", "--digest",
                      absl::StrCat(digest.position(), ":", digest.hash())});
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
}

}  // namespace
}  // namespace storeledger
