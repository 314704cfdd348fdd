// The reference downstream consumer (replication/balances_feed.h).
//
// Exactly once, by this pattern: every message's effects and the stream
// sequence it carries are written in one SQLite transaction (synchronous
// FULL: durable at COMMIT), and the message is acknowledged with a double
// ack only after that COMMIT. A message delivered again -- the consumer
// died between COMMIT and ack, or its ack was lost -- is at or below the
// stored sequence and changes nothing. A message past the stored sequence
// + 1 (earlier ones were delivered to a consumer that died, and are not
// redelivered yet) is preceded by the missing ones, read from the stream by
// sequence: the stream keeps every message.
//
// Each message is checked as a follower checks it (replication/log_batch.h:
// partition, contiguous positions, hash chain, the chain's link to the last
// applied hash, stored in the same row as the sequence); the balances are
// folded with the ledger's own code (replay/finance.h FoldStoreBalances),
// so the tables equal `storeledger balances` at the same position.

#include "replication/balances_feed.h"

#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "replay/finance.h"
#include "replication/jetstream.h"
#include "replication/log_batch.h"
#include "storage/format.h"

namespace storeledger {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS feed_position (
  partition INTEGER PRIMARY KEY,
  stream_sequence INTEGER NOT NULL,
  position INTEGER NOT NULL,
  hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS store_balances (
  store_id TEXT PRIMARY KEY,
  partition INTEGER NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  upgraded_from TEXT NOT NULL,
  upgraded_to TEXT NOT NULL,
  pending_fen INTEGER NOT NULL,
  available_fen INTEGER NOT NULL,
  withdrawing_fen INTEGER NOT NULL,
  paid_out_fen INTEGER NOT NULL,
  deposit_fen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kind_balances (
  kind TEXT PRIMARY KEY,
  stores INTEGER NOT NULL,
  pending_fen INTEGER NOT NULL,
  available_fen INTEGER NOT NULL,
  withdrawing_fen INTEGER NOT NULL,
  paid_out_fen INTEGER NOT NULL,
  deposit_fen INTEGER NOT NULL);
)sql";

struct CloseDatabase {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct Finalize {
  void operator()(sqlite3_stmt* statement) const {
    sqlite3_finalize(statement);
  }
};
using Statement = std::unique_ptr<sqlite3_stmt, Finalize>;

v1::Balances FromColumns(sqlite3_stmt* row, int first) {
  v1::Balances b;
  b.set_pending_fen(sqlite3_column_int64(row, first));
  b.set_available_fen(sqlite3_column_int64(row, first + 1));
  b.set_withdrawing_fen(sqlite3_column_int64(row, first + 2));
  b.set_paid_out_fen(sqlite3_column_int64(row, first + 3));
  b.set_deposit_fen(sqlite3_column_int64(row, first + 4));
  return b;
}

void BindBalances(sqlite3_stmt* statement, int first, const v1::Balances& b) {
  sqlite3_bind_int64(statement, first, b.pending_fen());
  sqlite3_bind_int64(statement, first + 1, b.available_fen());
  sqlite3_bind_int64(statement, first + 2, b.withdrawing_fen());
  sqlite3_bind_int64(statement, first + 3, b.paid_out_fen());
  sqlite3_bind_int64(statement, first + 4, b.deposit_fen());
}

// -b, field by field (balances are far from INT64_MIN: kDataLoss if not).
absl::StatusOr<v1::Balances> Negated(const v1::Balances& b) {
  const int64_t fields[] = {b.pending_fen(), b.available_fen(),
                            b.withdrawing_fen(), b.paid_out_fen(),
                            b.deposit_fen()};
  for (int64_t f : fields) {
    if (f == INT64_MIN) return absl::DataLossError("a balance at INT64_MIN");
  }
  v1::Balances n;
  n.set_pending_fen(-b.pending_fen());
  n.set_available_fen(-b.available_fen());
  n.set_withdrawing_fen(-b.withdrawing_fen());
  n.set_paid_out_fen(-b.paid_out_fen());
  n.set_deposit_fen(-b.deposit_fen());
  return n;
}

// Where the feed stands: the last applied message and the log's head then.
struct FeedPosition {
  uint64_t sequence = 0;
  Head head{0, std::string(format::kHashBytes, '\0')};
};

// The SQLite side: one transaction at a time, stores read on first touch
// and written back at Commit.
class BalancesDb {
 public:
  static absl::StatusOr<BalancesDb> Open(const std::string& path,
                                         uint32_t partition) {
    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path.c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    BalancesDb db;
    db.db_.reset(raw);
    db.partition_ = partition;
    if (rc != SQLITE_OK) {
      return absl::UnavailableError(
          absl::StrCat("open ", path, ": ", sqlite3_errstr(rc)));
    }
    sqlite3_busy_timeout(raw, 10'000);
    RETURN_IF_ERROR(
        db.Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
    RETURN_IF_ERROR(db.Exec(kSchema));
    return db;
  }

  absl::Status Exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, &error) != SQLITE_OK) {
      absl::Status status = absl::UnavailableError(
          absl::StrCat("sqlite: ", error != nullptr ? error : "?", " in ",
                       absl::string_view(sql).substr(0, 40)));
      sqlite3_free(error);
      return status;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Statement> Prepare(const char* sql) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_.get(), sql, -1, &raw, nullptr) != SQLITE_OK) {
      return Error("prepare");
    }
    return Statement(raw);
  }

  // The statement of `sql` (a literal: cached by its address), prepared
  // once, reset and unbound when the returned guard goes.
  struct Reset {
    void operator()(sqlite3_stmt* statement) const {
      sqlite3_reset(statement);
      sqlite3_clear_bindings(statement);
    }
  };
  using CachedStatement = std::unique_ptr<sqlite3_stmt, Reset>;
  absl::StatusOr<CachedStatement> Cached(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      ASSIGN_OR_RETURN(Statement prepared, Prepare(sql));
      it = cache_.emplace(sql, std::move(prepared)).first;
    }
    return CachedStatement(it->second.get());
  }

  absl::Status Error(absl::string_view what) const {
    return absl::UnavailableError(
        absl::StrCat("sqlite ", what, ": ", sqlite3_errmsg(db_.get())));
  }

  absl::StatusOr<FeedPosition> ReadPosition() {
    ASSIGN_OR_RETURN(Statement select,
                     Prepare("SELECT stream_sequence, position, hash FROM "
                             "feed_position WHERE partition = ?"));
    sqlite3_bind_int64(select.get(), 1, partition_);
    FeedPosition position;
    const int rc = sqlite3_step(select.get());
    if (rc == SQLITE_ROW) {
      position.sequence = sqlite3_column_int64(select.get(), 0);
      position.head.position = sqlite3_column_int64(select.get(), 1);
      const void* hash = sqlite3_column_blob(select.get(), 2);
      const int bytes = sqlite3_column_bytes(select.get(), 2);
      if (bytes != static_cast<int>(format::kHashBytes)) {
        return absl::DataLossError(absl::StrCat("feed_position of partition ",
                                                partition_, " holds a hash of ",
                                                bytes, " bytes"));
      }
      position.head.hash.assign(static_cast<const char*>(hash), bytes);
    } else if (rc != SQLITE_DONE) {
      return Error("read feed_position");
    }
    return position;
  }

  absl::Status Begin() {
    touched_.clear();
    return Exec("BEGIN IMMEDIATE");
  }
  void Rollback() {
    touched_.clear();
    Exec("ROLLBACK").IgnoreError();
  }

  // The running figures of `store_id` in this transaction.
  absl::StatusOr<v1::StoreBalances*> Lookup(absl::string_view store_id,
                                            bool create) {
    auto it = touched_.find(store_id);
    if (it == touched_.end()) {
      ASSIGN_OR_RETURN(std::optional<v1::StoreBalances> stored,
                       ReadStore(store_id));
      Touched touched;
      touched.before = stored;
      if (stored.has_value()) touched.after = *stored;
      it = touched_.emplace(std::string(store_id), std::move(touched)).first;
    }
    Touched& touched = it->second;
    if (!touched.after.has_value()) {
      if (!create) return nullptr;
      touched.after.emplace();
      touched.after->set_store_id(std::string(store_id));
      touched.after->mutable_balances();
    }
    return &*touched.after;
  }

  // Writes the touched stores, their kinds' totals and the position, and
  // commits (durable when this returns: synchronous FULL).
  absl::Status Commit(const FeedPosition& position) {
    for (auto& [id, touched] : touched_) {
      if (!touched.after.has_value()) continue;
      RETURN_IF_ERROR(WriteStore(*touched.after));
      if (touched.before.has_value()) {
        ASSIGN_OR_RETURN(v1::Balances minus,
                         Negated(touched.before->balances()));
        RETURN_IF_ERROR(AddToKind(touched.before->kind(), 0, minus));
      }
      RETURN_IF_ERROR(AddToKind(touched.after->kind(),
                                touched.before.has_value() ? 0 : 1,
                                touched.after->balances()));
    }
    ASSIGN_OR_RETURN(CachedStatement put,
                     Cached("INSERT OR REPLACE INTO feed_position VALUES "
                            "(?, ?, ?, ?)"));
    sqlite3_bind_int64(put.get(), 1, partition_);
    sqlite3_bind_int64(put.get(), 2, static_cast<int64_t>(position.sequence));
    sqlite3_bind_int64(put.get(), 3,
                       static_cast<int64_t>(position.head.position));
    sqlite3_bind_blob(put.get(), 4, position.head.hash.data(),
                      static_cast<int>(position.head.hash.size()),
                      SQLITE_TRANSIENT);
    if (sqlite3_step(put.get()) != SQLITE_DONE) {
      return Error("write feed_position");
    }
    touched_.clear();
    return Exec("COMMIT");
  }

 private:
  struct Touched {
    std::optional<v1::StoreBalances> before;  // as stored
    std::optional<v1::StoreBalances> after;   // as folded
  };

  absl::StatusOr<std::optional<v1::StoreBalances>> ReadStore(
      absl::string_view store_id) {
    ASSIGN_OR_RETURN(
        CachedStatement select,
        Cached("SELECT kind, status, upgraded_from, upgraded_to, "
               "pending_fen, available_fen, withdrawing_fen, paid_out_fen, "
               "deposit_fen FROM store_balances WHERE store_id = ?"));
    sqlite3_bind_text(select.get(), 1, store_id.data(),
                      static_cast<int>(store_id.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(select.get());
    if (rc == SQLITE_DONE) return std::nullopt;
    if (rc != SQLITE_ROW) return Error("read store_balances");
    auto text = [&](int column) {
      const unsigned char* t = sqlite3_column_text(select.get(), column);
      return t == nullptr ? std::string()
                          : std::string(reinterpret_cast<const char*>(t));
    };
    v1::StoreBalances store;
    store.set_store_id(std::string(store_id));
    v1::StoreKind kind = v1::StoreKind();
    v1::StoreStatus status = v1::StoreStatus();
    if (!v1::StoreKind_Parse(text(0), &kind) ||
        !v1::StoreStatus_Parse(text(1), &status)) {
      return absl::DataLossError(absl::StrCat("store_balances row of ",
                                              store_id, " has kind '", text(0),
                                              "' and status '", text(1), "'"));
    }
    store.set_kind(kind);
    store.set_status(status);
    store.set_upgraded_from(text(2));
    store.set_upgraded_to(text(3));
    *store.mutable_balances() = FromColumns(select.get(), 4);
    return store;
  }

  absl::Status WriteStore(const v1::StoreBalances& store) {
    ASSIGN_OR_RETURN(CachedStatement put,
                     Cached("INSERT OR REPLACE INTO store_balances VALUES "
                            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    const std::string kind = v1::StoreKind_Name(store.kind());
    const std::string status = v1::StoreStatus_Name(store.status());
    sqlite3_bind_text(put.get(), 1, store.store_id().c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(put.get(), 2, partition_);
    sqlite3_bind_text(put.get(), 3, kind.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(put.get(), 4, status.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(put.get(), 5, store.upgraded_from().c_str(), -1,
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(put.get(), 6, store.upgraded_to().c_str(), -1,
                      SQLITE_TRANSIENT);
    BindBalances(put.get(), 7, store.balances());
    if (sqlite3_step(put.get()) != SQLITE_DONE) {
      return Error("write store_balances");
    }
    return absl::OkStatus();
  }

  // kind_balances[kind] += (stores, add), with the ledger's checked sums.
  absl::Status AddToKind(v1::StoreKind kind, int64_t stores,
                         const v1::Balances& add) {
    const std::string name = v1::StoreKind_Name(kind);
    ASSIGN_OR_RETURN(CachedStatement select,
                     Cached("SELECT stores, pending_fen, available_fen, "
                            "withdrawing_fen, paid_out_fen, deposit_fen "
                            "FROM kind_balances WHERE kind = ?"));
    sqlite3_bind_text(select.get(), 1, name.c_str(), -1, SQLITE_TRANSIENT);
    int64_t count = 0;
    v1::Balances total;
    const int rc = sqlite3_step(select.get());
    if (rc == SQLITE_ROW) {
      count = sqlite3_column_int64(select.get(), 0);
      total = FromColumns(select.get(), 1);
    } else if (rc != SQLITE_DONE) {
      return Error("read kind_balances");
    }
    RETURN_IF_ERROR(AddBalances(add, &total));
    ASSIGN_OR_RETURN(CachedStatement put,
                     Cached("INSERT OR REPLACE INTO kind_balances VALUES "
                            "(?, ?, ?, ?, ?, ?, ?)"));
    sqlite3_bind_text(put.get(), 1, name.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(put.get(), 2, count + stores);
    BindBalances(put.get(), 3, total);
    if (sqlite3_step(put.get()) != SQLITE_DONE) {
      return Error("write kind_balances");
    }
    return absl::OkStatus();
  }

  // Declared after db_: finalized before the database closes.
  std::unique_ptr<sqlite3, CloseDatabase> db_;
  std::map<const char*, Statement> cache_;
  uint32_t partition_ = 0;
  std::map<std::string, Touched, std::less<>> touched_;
};

// One message, checked and folded into the open transaction; `position`
// moves past it.
absl::Status ApplyMessage(BalancesDb& db, uint32_t partition, uint64_t sequence,
                          absl::string_view data, FeedPosition* position,
                          BalancesFeedStats* stats) {
  if (sequence != position->sequence + 1) {
    return absl::InternalError(absl::StrCat("applying sequence ", sequence,
                                            " after ", position->sequence));
  }
  ASSIGN_OR_RETURN(VerifiedBatch verified,
                   VerifyLogBatch(data, partition, sequence, position->head));
  const StoreBalancesLookup lookup = [&](absl::string_view store_id,
                                         bool create) {
    return db.Lookup(store_id, create);
  };
  for (const Envelope& envelope : verified.envelopes) {
    absl::Status folded = FoldStoreBalances(envelope, lookup);
    if (absl::IsDataLoss(folded)) {
      return absl::DataLossError(absl::StrCat(
          "partition ", partition, " stream sequence ", sequence, ", position ",
          envelope.position(), ": ", folded.message()));
    }
    RETURN_IF_ERROR(folded);
  }
  const Envelope& last = verified.envelopes.back();
  position->sequence = sequence;
  position->head = Head{last.position(), last.hash()};
  ++stats->messages_applied;
  stats->events_applied += verified.envelopes.size();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BalancesFeedStats> RunBalancesFeed(
    const BalancesFeedOptions& options) {
  if (options.durable.empty() || options.sqlite_path.empty()) {
    return absl::InvalidArgumentError(
        "the consumer needs a durable name and a SQLite file");
  }
  const absl::Time started = absl::Now();
  ASSIGN_OR_RETURN(BalancesDb db,
                   BalancesDb::Open(options.sqlite_path, options.partition));
  ASSIGN_OR_RETURN(FeedPosition position, db.ReadPosition());
  ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js,
                   JetStream::Connect(options.nats_urls));
  ASSIGN_OR_RETURN(std::unique_ptr<DurableConsumer> consumer,
                   DurableConsumer::Bind(js.get(), options.partition,
                                         options.durable, options.ack_wait));
  BalancesFeedStats stats;
  absl::Time last_new = absl::Now();
  while (true) {
    if (options.stop && options.stop()) break;
    if (options.max_messages != 0 &&
        stats.messages_applied >= options.max_messages) {
      break;
    }
    if (absl::Now() - last_new > options.idle_exit) break;
    int batch = options.batch_messages;
    if (options.max_messages != 0) {
      batch = static_cast<int>(std::min<uint64_t>(
          batch, options.max_messages - stats.messages_applied));
    }
    ASSIGN_OR_RETURN(std::vector<FeedMessage> messages,
                     consumer->Fetch(batch, kFeedFetchWait));
    if (messages.empty()) continue;
    std::sort(messages.begin(), messages.end(),
              [](const FeedMessage& a, const FeedMessage& b) {
                return a.sequence < b.sequence;
              });
    RETURN_IF_ERROR(db.Begin());
    FeedPosition next = position;
    absl::Status stopped_by;
    for (const FeedMessage& message : messages) {
      if (message.sequence <= next.sequence) {
        ++stats.messages_skipped;  // applied already: change nothing
        continue;
      }
      last_new = absl::Now();
      // Earlier messages went to a consumer that died unacknowledged and
      // are not delivered again yet: read them from the stream first.
      while (stopped_by.ok() && next.sequence + 1 < message.sequence) {
        const uint64_t missing = next.sequence + 1;
        absl::StatusOr<std::optional<std::string>> data =
            js->Get(options.partition, missing);
        if (data.ok() && !data->has_value()) {
          data = absl::DataLossError(absl::StrCat(
              "partition ", options.partition, " stream sequence ", missing,
              " is missing (the stream must keep every message)"));
        }
        if (!data.ok()) {
          stopped_by = data.status();
          break;
        }
        stopped_by =
            ApplyMessage(db, options.partition, missing, **data, &next, &stats);
        if (stopped_by.ok()) ++stats.messages_read;
      }
      if (!stopped_by.ok()) break;
      stopped_by = ApplyMessage(db, options.partition, message.sequence,
                                message.data, &next, &stats);
      if (!stopped_by.ok()) break;
    }
    if (!stopped_by.ok()) {
      // Nothing of this batch is committed or acknowledged: the stored
      // sequence stays before it, and the next run stops at the same
      // message again.
      db.Rollback();
      return stopped_by;
    }
    if (absl::Status committed = db.Commit(next); !committed.ok()) {
      db.Rollback();
      return committed;
    }
    position = next;
    for (const FeedMessage& message : messages) {
      if (message.sequence > position.sequence) continue;  // not applied
      RETURN_IF_ERROR(consumer->AckSync(message.sequence));
    }
  }
  stats.stream_sequence = position.sequence;
  stats.position = position.head.position;
  stats.took = absl::Now() - started;
  return stats;
}

}  // namespace storeledger
