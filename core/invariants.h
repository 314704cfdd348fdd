// Invariants of what our own rules produce, checked on the write path in
// every build (SL_CHECK, base/check.h): a broken one is a bug in Decide or
// Evolve, and the process crashes before the batch is written instead of
// storing a wrong balance.
//
// Only for events Decide just emitted and records Evolve just folded. An
// event or record read from disk may be damaged: that is validated with
// statuses (Evolve's kDataLoss, the audit's violations), never checked here.
// Pure functions of their arguments; thread-safe as their StateReader is.
#ifndef STORELEDGER_CORE_INVARIANTS_H_
#define STORELEDGER_CORE_INVARIANTS_H_

#include "absl/status/status.h"
#include "core/state.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// Crashes unless the postings of `event` (PostingsFor) sum to zero and all
// belong to one store (R13).
void CheckPostingsInvariant(const v1::Event& event);

// Crashes unless every balance of `store` is zero or more.
void CheckBalancesInvariant(const v1::StoreRecord& store);

// Both, for an event Decide emitted and Evolve has just folded into
// `state`: its postings, and the balances of the store they name as `state`
// holds it now. A non-ok status is `state`'s own read error.
absl::Status CheckEvolvedInvariants(const v1::Event& event,
                                    const StateReader& state);

}  // namespace storeledger

#endif  // STORELEDGER_CORE_INVARIANTS_H_
