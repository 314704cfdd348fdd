// Lookups in the user's terms, shared by the command-line verbs
// (cli/find_verbs.cc, history, statement) and the gRPC service
// (server/service.cc), so that both give one answer: what an id names and
// where it lives, the position a time had reached, what an event is about,
// and a statement with, on request, its upgrade pair. Every function reads
// the log it is given and writes nothing.
#ifndef STORELEDGER_REPLAY_LOOKUP_H_
#define STORELEDGER_REPLAY_LOOKUP_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/state.h"
#include "storage/event_log.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// What an event (or the command a CommandRejected refused) is about; "" or
// false for none. An order names the products of its lines; a sync names
// the products it copied and skipped.
std::string OrderIdOf(const v1::Event& event);
std::string WithdrawalIdOf(const v1::Event& event);
bool NamesProduct(const v1::Event& event, absl::string_view product_id);

// The stores holding a product of this id (a legacy store and the WeChat
// Store it was synced into share ids), sorted.
absl::StatusOr<std::vector<std::string>> StoresWithProduct(
    const StateReader& reader, absl::string_view product_id);

// `find ID`: every store, merchant, product, order, withdrawal and command
// of that id, with its store, stream, status now and first position. No
// match is an empty result, not an error.
absl::StatusOr<v1::FindResult> FindId(const EventLog& log,
                                      const std::string& id);

// The last position whose recorded_at <= t; 0 when none. recorded_at never
// decreases along positions (the group-commit leader stamps commands in
// order), so this is a binary search of O(log head) reads.
absl::StatusOr<uint64_t> PositionRecordedBy(const EventLog& log, absl::Time t);

// A position with its recorded_at: the last one recorded by `at` when
// given (`position-at`, --known-at), else `position` clamped to the head,
// else the head. `written` is echoed. recorded_at is unset for position 0.
absl::StatusOr<v1::PositionAt> ResolvePosition(const EventLog& log,
                                               std::optional<absl::Time> at,
                                               std::optional<uint64_t> position,
                                               absl::string_view written);

// The statement of `store_id` over [from, to) and, with `pair`, of the
// store it upgraded into (or from): legacy first, never summed.
// kFailedPrecondition for a pair of a store that took part in no upgrade.
absl::StatusOr<std::vector<v1::Statement>> StatementsOf(
    const EventLog& log, const std::string& store_id, bool pair,
    absl::Time from, absl::Time to);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_LOOKUP_H_
