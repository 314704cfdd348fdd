// Read views shared by the command-line verbs (cli/), the gRPC service and
// the HTTP console (server/): one definition each of a command's
// explanation, the diff of two states of a store, a store's history (its
// facts merged with the refusals naming it), its balances over business
// time, a digest check, and a statement as CSV. Every function reads the
// log it is given and writes nothing; each is safe wherever the EventLog's
// reads are (storage/event_log.h).
#ifndef STORELEDGER_REPLAY_READ_VIEWS_H_
#define STORELEDGER_REPLAY_READ_VIEWS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "replay/store_view.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// The stores a recorded command touched: the store streams its events went
// to, or, for a refusal, the stores it named. In first-seen order.
std::vector<std::string> TouchedStores(const std::vector<v1::Envelope>& events);

// `explain`: a command's stored outcome, its events (or its refusal), and
// the touched stores as the rules judged them (everything known before its
// first position, R6 cutoffs at its business time). kNotFound when no
// outcome is recorded for `command_id`; kDataLoss when the outcome names a
// position that holds another command's event.
absl::StatusOr<v1::Explanation> Explain(const EventLog& log,
                                        const Policy& policy,
                                        absl::string_view command_id);

// `diff`: what changed from `before` (nullopt: the store did not exist yet)
// to `after`: store fields, products, orders, withdrawals, balances. The
// caller sets from/to.
v1::StoreDiff DiffStoreStates(const std::optional<v1::StoreState>& before,
                              const v1::StoreState& after);
// `diff` of a store from `before` to `after` (`diff`, GetDiff): `state`
// gives the store as of one side; NOT_FOUND on the `before` side means it
// did not exist yet, any other failure is the answer. Sets from/to (when a
// side has a business time) and from/to_position (0: the head).
absl::StatusOr<v1::StoreDiff> DiffStoreAt(
    const std::function<absl::StatusOr<v1::StoreState>(const AsOf&)>& state,
    const AsOf& before, const AsOf& after);

// What a streaming read (Subscribe, ReadStream, a store's history) reads
// from the log before it hands any of it on: at most this many envelopes,
// and it stops after the one that reaches this many bytes. Nothing of
// RocksDB (iterator, snapshot, memtable) is held while a reader's consumer,
// a network client say, takes them.
inline constexpr size_t kReadBatchEvents = 256;
inline constexpr size_t kReadBatchBytes = 1 << 20;

// The ProductsSynced events of the store `store_id` upgraded into that
// copied from it, in position order (R9: a sync is in both histories);
// none for a store that did not upgrade.
absl::StatusOr<std::vector<v1::Envelope>> SyncsFrom(const EventLog& log,
                                                    absl::string_view store_id);

// A store's history: the events of its stream from `from_version` (0: all),
// merged by position with the ProductsSynced of the store it upgraded into
// that copied from it (R9: a sync is in both histories), and with the
// refused commands naming it when
// `include_rejections` (those `select_refusal` admits; nullptr: all). Calls
// `fn` in position order until it returns false, a batch at a time
// (kReadBatchEvents): `fn` runs with no iterator open. Returns whether the
// store has any event or selected refusal at all (false: `fn` was never
// called).
absl::StatusOr<bool> ScanStoreHistory(
    const EventLog& log, absl::string_view store_id, uint64_t from_version,
    bool include_rejections,
    const std::function<bool(const v1::Envelope&)>& select_refusal,
    const std::function<bool(const v1::Envelope&)>& fn);

// The store's balances after each event that moved them, in position order
// (which is business-time order within one store, R0). Only events with
// position <= max_position count when it is set.
struct BalancePoint {
  uint64_t position = 0;
  absl::Time occurred_at;
  v1::Balances balances;
};
absl::StatusOr<std::vector<BalancePoint>> StoreBalanceSeries(
    const EventLog& log, absl::string_view store_id,
    std::optional<uint64_t> max_position = std::nullopt);

// A digest as `storeledger digest` prints it and `verify --digest` takes
// it: POSITION:HASH with a 64-digit hex SHA-256. kInvalidArgument otherwise.
struct DigestText {
  uint64_t position = 0;
  std::string hash_hex;  // lower case
};
absl::StatusOr<DigestText> ParseDigestText(absl::string_view text);

// Ok when the log up to digest.position still hashes to digest.hash_hex
// (every envelope re-hashed, every link checked). kFailedPrecondition
// saying why otherwise (the log is shorter, or hashes to something else);
// kDataLoss when the chain itself is broken.
absl::Status VerifyDigest(const EventLog& log, const DigestText& digest);

// RFC 4180: a field holding a comma, quote or line break is quoted, with
// quotes doubled.
std::string CsvField(absl::string_view field);

// How a statement's CSV rows print: the CLI's `statement --format csv` (the
// ledger's zone, fen or yuan, --pair's store columns, the event type) and
// the HTTP API's (UTC, fen).
struct StatementCsvStyle {
  // Columns before every row (--pair: "store_id,store_kind,"). Default: none.
  std::string row_prefix;
  // An event_type column after event_id. Default: false.
  bool event_type = false;
  // occurred_at as printed. Default (null): RFC 3339 in UTC.
  std::function<std::string(const google::protobuf::Timestamp&)> time;
  // An amount as printed. Default (null): fen.
  std::function<std::string(int64_t)> amount;
};

// The opening, posting, movement and closing rows of `statement`.
void WriteStatementCsvRows(const v1::Statement& statement,
                           const StatementCsvStyle& style, std::ostream& out);

// `statement --format csv` over HTTP: a header row, then
// WriteStatementCsvRows in the default style.
std::string StatementCsv(const v1::Statement& statement);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_READ_VIEWS_H_
