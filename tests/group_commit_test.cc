// Group commit (ledger/group_commit.cc) is a fast path; these tests check
// that it is still the same ledger:
// - 64 writer threads sending random commands at once: every acknowledged
//   command is in the log exactly once, positions are contiguous, the chain
//   verifies, and applying the same commands one at a time, in the order the
//   log recorded them, to a fresh ledger gives the same log (same head hash)
//   and the same projections;
// - ExecuteBatch answers exactly as Execute one at a time, including a
//   command id used twice in one group, with the same or another body;
// - a command whose append fails its checks fails alone.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/streams.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ledger/ledger.h"
#include "replay/projection_store.h"
#include "replay/store_view.h"
#include "tests/support/test_support.h"

namespace storeledger {
namespace {

using ::storeledger::testing::China;
using ::storeledger::testing::FixedClock;
using ::storeledger::testing::SeedFromEnvironment;
using ::storeledger::testing::TempDir;

constexpr int kStores = 16;
constexpr int kProductsPerStore = 4;
constexpr int64_t kPriceFen = 1000;

std::string StoreId(int i) { return absl::StrCat("s", i); }
std::string ProductId(int i) { return absl::StrCat("p", i); }

v1::Command At(const std::string& id, absl::Time at) {
  v1::Command command;
  command.set_command_id(id);
  *command.mutable_occurred_at() = ToProto(at);
  return command;
}

// Stores opened and products listed: what the random commands act on.
std::vector<v1::Command> SetUpCommands() {
  std::vector<v1::Command> commands;
  for (int s = 0; s < kStores; ++s) {
    // Business time goes forward within each store's stream (R0).
    int minute = 0;
    auto next = [&] { return China(6, 1, 1, ++minute); };
    v1::Command open = At(absl::StrCat("open-", s), next());
    v1::OpenStore* body = open.mutable_open_store();
    body->set_store_id(StoreId(s));
    body->set_merchant_id(absl::StrCat("m", s));
    body->set_kind(s % 2 == 0 ? v1::MINI_STORE : v1::CHANNELS_STORE);
    body->set_subject(v1::ENTERPRISE);
    commands.push_back(open);
    for (int p = 0; p < kProductsPerStore; ++p) {
      v1::Command add = At(absl::StrCat("add-", s, "-", p), next());
      v1::AddProduct* a = add.mutable_add_product();
      a->set_store_id(StoreId(s));
      a->set_product_id(ProductId(p));
      a->set_kind(v1::PHYSICAL);
      a->set_origin(v1::OWN);
      a->set_category_id("cat-1");
      a->set_price_fen(kPriceFen);
      commands.push_back(add);
      v1::Command list = At(absl::StrCat("list-", s, "-", p), next());
      v1::ListProduct* l = list.mutable_list_product();
      l->set_store_id(StoreId(s));
      l->set_product_id(ProductId(p));
      commands.push_back(list);
    }
  }
  return commands;
}

// Random commands on the set-up stores: orders through their life (some
// wrong), withdrawals, retries of earlier commands (same id and body),
// reuses of an id with another body, and commands without occurredAt.
//
// Commands of `shared` (same id, two bodies) are sent by several threads at
// once, as a client retrying on another connection would: their copies meet
// in one group, in consecutive groups, or in the log.
class CommandMaker {
 public:
  using Shared = std::vector<std::pair<v1::Command, v1::Command>>;

  CommandMaker(std::string prefix, uint64_t seed,
               std::atomic<int64_t>* business_seconds,
               const Shared* shared = nullptr)
      : prefix_(std::move(prefix)),
        rng_(seed),
        clock_(business_seconds),
        shared_(shared) {}

  // Commands for the shared pool: orders with a second body (another
  // amount) under the same id.
  static Shared MakeShared(int n) {
    Shared shared;
    for (int i = 0; i < n; ++i) {
      v1::Command command = At(absl::StrCat("shared-", i), China(6, 2));
      v1::PlaceOrder* place = command.mutable_place_order();
      place->set_store_id(StoreId(i % kStores));
      place->set_order_id(absl::StrCat("o-shared-", i));
      place->set_channel(v1::STORE_PAGE);
      v1::OrderLine* line = place->add_lines();
      line->set_product_id(ProductId(0));
      line->set_quantity(1);
      line->set_unit_price_fen(kPriceFen);
      v1::Command other = command;
      other.mutable_place_order()->mutable_lines(0)->set_quantity(2);
      shared.emplace_back(command, other);
    }
    return shared;
  }

  v1::Command Next() {
    const int roll = Int(0, 99);
    ++calls_;
    if (shared_ != nullptr && calls_ % 20 == 10) {
      // Every thread sends the same command at about the same moment (the
      // threads move roughly in step); one in five with the other body.
      const auto& pair = (*shared_)[(calls_ / 20) % shared_->size()];
      return roll < 20 ? pair.second : pair.first;
    }
    if (roll < 6 && !sent_.empty()) return sent_[Int(0, sent_.size() - 1)];
    if (roll < 9 && !sent_.empty()) {  // same id, another body
      v1::Command other = sent_[Int(0, sent_.size() - 1)];
      *other.mutable_occurred_at() = ToProto(Now());
      return other;
    }
    v1::Command command = At(absl::StrCat(prefix_, "-", ++count_), Now());
    if (roll < 11) {  // INVALID: no occurredAt
      command.clear_occurred_at();
      command.mutable_ship_order()->set_store_id(StoreId(0));
      command.mutable_ship_order()->set_order_id("none");
      return command;
    }
    const int store = Int(0, kStores - 1);
    if (roll < 45 || orders_.empty()) {
      const std::string order = absl::StrCat("o-", prefix_, "-", count_);
      v1::PlaceOrder* place = command.mutable_place_order();
      place->set_store_id(StoreId(store));
      place->set_order_id(order);
      place->set_channel(v1::STORE_PAGE);
      v1::OrderLine* line = place->add_lines();
      line->set_product_id(ProductId(Int(0, kProductsPerStore - 1)));
      const int quantity = Int(1, 3);
      line->set_quantity(quantity);
      line->set_unit_price_fen(kPriceFen);
      orders_.push_back({StoreId(store), order, quantity * kPriceFen});
    } else if (roll < 85) {
      const Order& order = orders_[Int(0, orders_.size() - 1)];
      const int step = Int(0, 3);
      if (step == 0) {
        v1::PayOrder* pay = command.mutable_pay_order();
        pay->set_store_id(order.store);
        pay->set_order_id(order.id);
        pay->set_amount_fen(Int(0, 9) == 0 ? order.total + 1 : order.total);
      } else if (step == 1) {
        command.mutable_ship_order()->set_store_id(order.store);
        command.mutable_ship_order()->set_order_id(order.id);
      } else if (step == 2) {
        v1::SettleOrder* settle = command.mutable_settle_order();
        settle->set_store_id(order.store);
        settle->set_order_id(order.id);
        settle->set_commission_fen(order.total / 20);
      } else {
        v1::RefundOrder* refund = command.mutable_refund_order();
        refund->set_store_id(order.store);
        refund->set_order_id(order.id);
        refund->set_amount_fen(order.total / 2);
      }
    } else if (roll < 95 || withdrawals_.empty()) {
      v1::RequestWithdrawal* request = command.mutable_request_withdrawal();
      request->set_store_id(StoreId(store));
      request->set_withdrawal_id(absl::StrCat("w-", prefix_, "-", count_));
      request->set_amount_fen(Int(1, 3) * 100);
      withdrawals_.push_back({StoreId(store), request->withdrawal_id(), 0});
    } else {
      const Order& withdrawal = withdrawals_[Int(0, withdrawals_.size() - 1)];
      v1::CompleteWithdrawal* complete = command.mutable_complete_withdrawal();
      complete->set_store_id(withdrawal.store);
      complete->set_withdrawal_id(withdrawal.id);
    }
    sent_.push_back(command);
    return command;
  }

 private:
  struct Order {
    std::string store, id;
    int64_t total;
  };
  int Int(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }
  // Business time moves forward for everyone together (some commands still
  // arrive late: R0 refuses them, which is part of the test).
  absl::Time Now() {
    return China(6, 2) + absl::Seconds(clock_->fetch_add(60));
  }

  std::string prefix_;
  std::mt19937_64 rng_;
  std::atomic<int64_t>* clock_;
  const Shared* shared_;
  int calls_ = 0;
  int count_ = 0;
  std::vector<v1::Command> sent_;
  std::vector<Order> orders_;
  std::vector<Order> withdrawals_;
};

// `sync` false for the reference ledgers, whose durability is not the
// point (it keeps the test fast on a slow disk).
// `write_behind_events_max` 0: the default distance (kWriteBehindEventsMax).
std::unique_ptr<Ledger> OpenLedger(const std::string& dir, const Clock* clock,
                                   size_t cache_entries, bool sync = true,
                                   uint64_t write_behind_events_max = 0) {
  LedgerOptions options;
  options.clock = clock;
  options.sync = sync;
  options.state_cache_entries = cache_entries;
  options.write_behind_events_max = write_behind_events_max;
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = Ledger::Open(dir, options);
  EXPECT_TRUE(ledger.ok()) << ledger.status();
  return ledger.ok() ? *std::move(ledger) : nullptr;
}

// Every projection entry but the snapshots (a cache whose cadence depends on
// how appends were grouped; replay/snapshots.h), by key.
std::map<std::string, std::string> Projections(const EventLog& log) {
  std::map<std::string, std::string> out;
  absl::Status s = log.ScanProjections(
      "", [&](absl::string_view key, absl::string_view value) {
        if (!absl::StartsWith(key, "snap")) out.emplace(key, value);
        return true;
      });
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

// The envelopes of the log in order, checked by Scan (hashes, chain,
// contiguity), with each command id's position range.
struct LogView {
  std::vector<std::string> command_order;  // first appearance
  std::map<std::string, std::pair<uint64_t, uint64_t>> ranges;
  std::set<std::string> streams;
  bool contiguous_per_command = true;
  uint64_t count = 0;
};

LogView ReadLog(const EventLog& log) {
  LogView view;
  absl::Status s =
      log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
        ++view.count;
        view.streams.insert(envelope.stream_id());
        auto [it, first] = view.ranges.try_emplace(
            envelope.command_id(), envelope.position(), envelope.position());
        if (first) {
          view.command_order.push_back(envelope.command_id());
        } else {
          // A command's events are one contiguous range: one append.
          if (it->second.second + 1 != envelope.position()) {
            view.contiguous_per_command = false;
          }
          it->second.second = envelope.position();
        }
        return true;
      });
  EXPECT_TRUE(s.ok()) << "the chain does not verify: " << s;
  return view;
}

TEST(GroupCommitTest, ConcurrentWritersEqualOneAtATimeInLogOrder) {
  const uint64_t seed = SeedFromEnvironment();
  std::cout << "seed " << seed << " (re-run with STORELEDGER_SEED=" << seed
            << ")" << std::endl;
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  constexpr int kThreads = 64;
  constexpr int kCommandsPerThread = 120;

  TempDir dir;
  FixedClock clock(absl::FromUnixSeconds(1'800'000'000));
  // A small cache, so that evictions happen under load too, and a short
  // write-behind distance, so that write-behinds (every ~256 events) come
  // between the groups of concurrent writers, beside the reads.
  std::unique_ptr<Ledger> ledger =
      OpenLedger(dir.Sub("grouped"), &clock, 64, /*sync=*/true,
                 /*write_behind_events_max=*/256);
  ASSERT_NE(ledger, nullptr);
  std::map<std::string, v1::Command> first_sent;
  for (const v1::Command& command : SetUpCommands()) {
    absl::StatusOr<v1::CommandResult> r = ledger->Execute(command);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->status(), v1::ACCEPTED) << r->message();
    first_sent.emplace(command.command_id(), command);
  }

  struct Sent {
    v1::Command command;
    v1::CommandResult result;
  };
  std::vector<std::vector<Sent>> sent(kThreads);
  std::atomic<int64_t> business_seconds{0};
  std::atomic<int> failures{0};
  const CommandMaker::Shared shared = CommandMaker::MakeShared(10);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      CommandMaker maker(absl::StrCat("t", t), seed + t, &business_seconds,
                         &shared);
      for (int i = 0; i < kCommandsPerThread; ++i) {
        v1::Command command = maker.Next();
        absl::StatusOr<v1::CommandResult> result = ledger->Execute(command);
        if (!result.ok()) {
          ++failures;
          continue;
        }
        sent[t].push_back({std::move(command), *std::move(result)});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(failures.load(), 0);

  const LogView view = ReadLog(ledger->log());
  EXPECT_EQ(view.count, ledger->log().head().position);
  EXPECT_TRUE(view.contiguous_per_command);

  // Every acknowledged command is in the log exactly once, where its answer
  // says; retries name the same positions; nothing else wrote.
  std::map<std::string, std::pair<uint64_t, uint64_t>> acknowledged;
  int accepted = 0, rejected = 0, replayed = 0, conflicts = 0, invalid = 0;
  for (const auto& per_thread : sent) {
    for (const Sent& s : per_thread) {
      const v1::CommandResult& r = s.result;
      const std::string& id = s.command.command_id();
      if (r.status() == v1::INVALID) {
        ++invalid;
        EXPECT_EQ(view.ranges.count(id), 0u) << id;
        continue;
      }
      if (r.code() == v1::IDEMPOTENCY_CONFLICT) {
        ++conflicts;
        EXPECT_EQ(r.first_position(), 0u);
        continue;
      }
      auto range = view.ranges.find(id);
      ASSERT_NE(range, view.ranges.end()) << id << " acknowledged, not in log";
      EXPECT_EQ(r.first_position(), range->second.first) << id;
      EXPECT_EQ(r.last_position(), range->second.second) << id;
      if (r.replayed()) {
        ++replayed;
      } else {
        auto [it, inserted] = acknowledged.emplace(
            id, std::make_pair(r.first_position(), r.last_position()));
        EXPECT_TRUE(inserted) << id << " acknowledged twice as new";
        first_sent.emplace(id, s.command);
        r.status() == v1::ACCEPTED ? ++accepted : ++rejected;
      }
    }
  }
  EXPECT_EQ(acknowledged.size() + SetUpCommands().size(), view.ranges.size())
      << "the log holds commands nobody was told about";
  std::cout << "accepted " << accepted << ", rejected " << rejected
            << ", replayed " << replayed << ", conflicts " << conflicts
            << ", invalid " << invalid << ", events " << view.count
            << std::endl;
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(replayed, 0);
  EXPECT_GT(conflicts, 0);
  const EventLog::WriteBehindStats behind = ledger->log().write_behind_stats();
  std::cout << behind.count << " write-behinds" << std::endl;
  EXPECT_GE(behind.count, 10u) << "the window never went to RocksDB";

  // The same commands one at a time, in log order, on a fresh ledger
  // without a cache.
  std::unique_ptr<Ledger> sequential = OpenLedger(dir.Sub("one"), &clock, 0,
                                                  /*sync=*/false);
  ASSERT_NE(sequential, nullptr);
  for (const std::string& id : view.command_order) {
    ASSERT_EQ(first_sent.count(id), 1u) << id;
    absl::StatusOr<v1::CommandResult> r = sequential->Execute(first_sent[id]);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->first_position(), view.ranges.at(id).first) << id;
    EXPECT_EQ(r->last_position(), view.ranges.at(id).second) << id;
  }
  // Same envelopes (recorded_at comes from the same fixed clock) ...
  EXPECT_EQ(sequential->log().head().position, ledger->log().head().position);
  EXPECT_EQ(ToHex(sequential->log().head().hash),
            ToHex(ledger->log().head().hash));
  // ... same records, same stream heads, same stores.
  EXPECT_EQ(Projections(sequential->log()), Projections(ledger->log()));
  for (const std::string& stream : view.streams) {
    absl::StatusOr<std::optional<StreamHead>> a =
        ledger->log().GetStreamHead(stream);
    absl::StatusOr<std::optional<StreamHead>> b =
        sequential->log().GetStreamHead(stream);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(a->has_value() && b->has_value()) << stream;
    EXPECT_EQ(SerializeDeterministic(**a), SerializeDeterministic(**b))
        << stream;
  }
  for (int s = 0; s < kStores; ++s) {
    absl::StatusOr<v1::StoreState> a = ledger->State(StoreId(s));
    absl::StatusOr<v1::StoreState> b = sequential->State(StoreId(s));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(SerializeDeterministic(*a), SerializeDeterministic(*b))
        << StoreId(s);
  }
}

TEST(GroupCommitTest, ExecuteBatchAnswersAsExecuteOneAtATime) {
  const uint64_t seed = SeedFromEnvironment();
  std::cout << "seed " << seed << " (re-run with STORELEDGER_SEED=" << seed
            << ")" << std::endl;
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  // More than kQueuedCommandsMax: the batch waits for room in the queue.
  const size_t kCommands = kQueuedCommandsMax + 1500;
  std::vector<v1::Command> commands = SetUpCommands();
  std::atomic<int64_t> business_seconds{0};
  CommandMaker maker("b", seed, &business_seconds);
  while (commands.size() < kCommands) commands.push_back(maker.Next());
  // A command id twice within one group, with the same and another body,
  // right after its first use: a recorded command (not an INVALID one, not
  // a repeat of an earlier id, which may be a conflict and not recorded).
  std::set<std::string> earlier;
  for (size_t i = 0; i < kGroupCommandsMax / 2; ++i) {
    earlier.insert(commands[i].command_id());
  }
  size_t at = kGroupCommandsMax / 2;
  while (!commands[at].has_occurred_at() ||
         !earlier.insert(commands[at].command_id()).second) {
    ++at;
  }
  const v1::Command same = commands[at];
  v1::Command other = commands[at];
  *other.mutable_occurred_at() = ToProto(China(6, 30));
  commands.insert(commands.begin() + at + 1, same);
  commands.insert(commands.begin() + at + 2, other);

  TempDir dir;
  FixedClock clock(absl::FromUnixSeconds(1'800'000'000));
  std::unique_ptr<Ledger> batched = OpenLedger(dir.Sub("batched"), &clock, 100);
  std::unique_ptr<Ledger> single =
      OpenLedger(dir.Sub("single"), &clock, 100, /*sync=*/false);
  ASSERT_NE(batched, nullptr);
  ASSERT_NE(single, nullptr);
  std::vector<absl::StatusOr<v1::CommandResult>> results =
      batched->ExecuteBatch(commands);
  ASSERT_EQ(results.size(), commands.size());
  int follows_same = 0, follows_other = 0;
  for (size_t i = 0; i < commands.size(); ++i) {
    absl::StatusOr<v1::CommandResult> expected = single->Execute(commands[i]);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    EXPECT_EQ(SerializeDeterministic(*results[i]),
              SerializeDeterministic(*expected))
        << "command " << i << " " << commands[i].command_id();
    if (i == at + 1) follows_same += results[i]->replayed();
    if (i == at + 2) {
      follows_other += results[i]->code() == v1::IDEMPOTENCY_CONFLICT;
    }
  }
  EXPECT_EQ(follows_same, 1);
  EXPECT_EQ(follows_other, 1);
  EXPECT_EQ(ToHex(batched->log().head().hash),
            ToHex(single->log().head().hash));
  EXPECT_EQ(Projections(batched->log()), Projections(single->log()));
}

// A command over kCommandBytesMax (whose refusal would have been an
// envelope of several MiB, over kEnvelopeBytesMax) is INVALID before it is
// decided: in a batch, the commands before and after it are executed as if
// it were not there; among concurrent callers, only it is INVALID, and
// nothing of it is stored. (Before kCommandBytesMax it failed its append's
// checks, kInvalidArgument, and cancelled the rest of its batch; an append
// that fails its checks now needs an accepted command whose events exceed
// kEnvelopeBytesMax.)
TEST(GroupCommitTest, AnOversizedCommandIsInvalidAndOnlyIt) {
  TempDir dir;
  FixedClock clock(absl::FromUnixSeconds(1'800'000'000));
  std::unique_ptr<Ledger> ledger = OpenLedger(dir.Sub("db"), &clock, 100);
  ASSERT_NE(ledger, nullptr);
  for (const v1::Command& command : SetUpCommands()) {
    ASSERT_TRUE(ledger->Execute(command).ok());
  }
  // Several MiB: it would be refused by R0 (too many lines), and the refusal
  // would record the whole command.
  v1::Command huge = At("huge", China(6, 3));
  v1::PlaceOrder* place = huge.mutable_place_order();
  place->set_store_id(StoreId(0));
  place->set_order_id("o-huge");
  place->set_channel(v1::STORE_PAGE);
  for (int i = 0; i < 100'000; ++i) {
    v1::OrderLine* line = place->add_lines();
    line->set_product_id(std::string(48, 'x'));
    line->set_quantity(1);
    line->set_unit_price_fen(kPriceFen);
  }
  std::atomic<int64_t> business_seconds{0};
  CommandMaker maker("h", 7, &business_seconds);

  const uint64_t head_before = ledger->log().head().position;
  std::vector<v1::Command> batch = {maker.Next(), huge, maker.Next()};
  std::vector<absl::StatusOr<v1::CommandResult>> results =
      ledger->ExecuteBatch(batch);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_GT(results[0]->first_position(), head_before);
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_EQ(results[1]->status(), v1::INVALID);
  EXPECT_THAT(results[1]->message(), ::testing::HasSubstr("kCommandBytesMax"));
  ASSERT_TRUE(results[2].ok()) << results[2].status();
  EXPECT_GT(results[2]->first_position(), results[0]->last_position());
  EXPECT_EQ(ledger->log().head().position, results[2]->last_position());

  // Concurrent callers, the huge command among them.
  constexpr int kThreads = 16;
  std::vector<v1::OutcomeStatus> outcomes(kThreads);
  std::vector<std::thread> threads;
  std::mutex mu;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      v1::Command command = huge;
      if (t != 0) {
        std::lock_guard<std::mutex> lock(mu);
        command = maker.Next();
        command.set_command_id(absl::StrCat("c-", t));
      }
      absl::StatusOr<v1::CommandResult> result = ledger->Execute(command);
      EXPECT_TRUE(result.ok()) << t << ": " << result.status();
      if (result.ok()) outcomes[t] = result->status();
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(outcomes[0], v1::INVALID);
  for (int t = 1; t < kThreads; ++t) {
    EXPECT_NE(outcomes[t], v1::INVALID) << t;
  }
  const LogView view = ReadLog(ledger->log());
  EXPECT_EQ(view.ranges.count("huge"), 0u);
  for (int t = 1; t < kThreads; ++t) {
    EXPECT_EQ(view.ranges.count(absl::StrCat("c-", t)), 1u) << t;
  }
}

}  // namespace
}  // namespace storeledger
