// evolve(state, event) -> state: folds one stored event into the records.
// Used both inline (right after Decide, in the same WriteBatch as the event)
// and by replay (rebuilds, as-of queries), so the two cannot disagree.
#ifndef STORELEDGER_CORE_EVOLVE_H_
#define STORELEDGER_CORE_EVOLVE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/state.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Applies `event`, appended to `stream_id` at business time `occurred_at`
// with stream version `stream_version`, to `state`; also advances that
// stream's head. An event that does not fit the state (an order that does not
// exist, a balance that would go negative) is kDataLoss: the log and the
// state disagree, which only corruption or a bug can cause.
absl::Status Evolve(absl::string_view stream_id, uint64_t stream_version,
                    absl::Time occurred_at, const v1::Event& event,
                    MutableState* state);

// Convenience: evolve from a stored envelope.
absl::Status EvolveEnvelope(const v1::Envelope& envelope, MutableState* state);

// R6: a product's status with the policy cutoffs applied at `at`.
v1::ProductStatus EffectiveStatus(const v1::ProductRecord& product,
                                  v1::StoreKind store_kind, absl::Time at,
                                  const v1::Policy& policy);

}  // namespace storeledger

#endif  // STORELEDGER_CORE_EVOLVE_H_
