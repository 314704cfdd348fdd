// A store as one document (StoreState, DESIGN.md §5): from the live
// projections, or folded from the store's stream as of a business time and/or
// a log position (bitemporal replay).
#ifndef STORELEDGER_REPLAY_STORE_VIEW_H_
#define STORELEDGER_REPLAY_STORE_VIEW_H_

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/policy.h"
#include "core/state.h"
#include "storage/event_log.h"

namespace storeledger {

struct AsOf {
  // Business time: only events with occurred_at <= business_time count.
  std::optional<absl::Time> business_time;
  // Knowledge time: only events with position <= position count.
  std::optional<uint64_t> position;
  bool empty() const { return !business_time && !position; }
};

// Assembles StoreState for `store_id` from `state`. Each product's
// effective_status applies the R6 cutoffs at `effective_at`. kNotFound when
// the store does not exist in `state`.
absl::StatusOr<v1::StoreState> BuildStoreState(const StateReader& state,
                                               absl::string_view store_id,
                                               absl::Time effective_at,
                                               const Policy& policy);

// Folds the store's stream from its first event, keeping the events `as_of`
// admits, into fresh state, and assembles it. Effective statuses are judged
// at as_of.business_time, or at `now` when it is not given.
absl::StatusOr<v1::StoreState> FoldStoreState(const EventLog& log,
                                              absl::string_view store_id,
                                              const AsOf& as_of, absl::Time now,
                                              const Policy& policy);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_STORE_VIEW_H_
