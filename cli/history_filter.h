// The filters of `storeledger history` (DESIGN.md §5), in one place for the
// embedded verb (cli/read_verbs.cc) and for `--server` mode (cli/client.cc),
// so that both select exactly the same envelopes and fail on the same flags.
//
// A history is a store's facts (its stream) merged by position with the
// refused commands naming the store (stream "rejections"). Every filter
// applies to both, except --type, which selects facts only: refusals, when
// asked for, are shown whatever command they refused.
#ifndef STORELEDGER_CLI_HISTORY_FILTER_H_
#define STORELEDGER_CLI_HISTORY_FILTER_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/cli.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

struct HistoryFilter {
  std::optional<uint64_t> after_position;            // --from-position
  std::optional<absl::Time> from_time;               // --from (business time)
  std::optional<absl::Time> to_time;                 // --to (business time)
  std::optional<std::string> order_id;               // --order
  std::optional<std::string> product_id;             // --product
  std::optional<std::string> withdrawal_id;          // --withdrawal
  std::optional<std::set<std::string>> event_types;  // --type, facts only

  // Reads the filter flags; kInvalidArgument naming a bad one (an unknown
  // --type, --to before --from, a malformed time or position).
  static absl::StatusOr<HistoryFilter> FromFlags(const Flags& flags);

  // Does the history show `envelope` (a fact of the store's stream or a
  // CommandRejected naming the store)?
  bool Selects(const v1::Envelope& envelope) const;

  // --order, --withdrawal or --product: the history may find its stores.
  bool by_id() const {
    return order_id.has_value() || withdrawal_id.has_value() ||
           product_id.has_value();
  }
};

// The stores a history shows: --store, or (by_id() without --store) the
// `owners` of the id asked about (the store of an order or withdrawal; every
// store with the product). kInvalidArgument without --store nor an id;
// kFailedPrecondition naming the owner when --store is another store;
// kNotFound when no store has the id.
absl::StatusOr<std::vector<std::string>> HistoryStores(
    const HistoryFilter& filter, const std::optional<std::string>& store,
    const std::vector<std::string>& owners);

// What history says when the store has neither events nor (with
// --include-rejections) refused commands that the filters select.
absl::Status HistoryNotFound(absl::string_view store_id,
                             bool include_rejections);

// Says on stderr that the stores have a history but the filters selected
// none of it, so that an empty answer is never silent. Not for --limit 0.
void SayHistoryFilteredOut(const CliContext& ctx, absl::string_view stores);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_HISTORY_FILTER_H_
