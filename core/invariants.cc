#include "core/invariants.h"

#include <cstdint>
#include <vector>

#include "base/check.h"
#include "core/postings.h"

namespace storeledger {

void CheckPostingsInvariant(const v1::Event& event) {
  const std::vector<Posting> postings = PostingsFor(event);
  int64_t debits_fen = 0;
  int64_t credits_fen = 0;
  for (const Posting& posting : postings) {
    SL_CHECK(posting.store_id == postings.front().store_id,
             "a posting of store " << posting.store_id
                                   << " in an event of store "
                                   << postings.front().store_id << ": "
                                   << event.ShortDebugString());
    // Amounts are bounded (core/limits.h): the sums cannot overflow.
    debits_fen += posting.debit_fen;
    credits_fen += posting.credit_fen;
  }
  SL_CHECK(debits_fen == credits_fen,
           "postings debit " << debits_fen << " fen and credit " << credits_fen
                             << " fen: " << event.ShortDebugString());
}

void CheckBalancesInvariant(const v1::StoreRecord& store) {
  const v1::Balances& b = store.balances();
  SL_CHECK(b.pending_fen() >= 0 && b.available_fen() >= 0 &&
               b.withdrawing_fen() >= 0 && b.paid_out_fen() >= 0 &&
               b.deposit_fen() >= 0,
           "store " << store.store_id()
                    << " has a negative balance: " << b.ShortDebugString());
}

absl::Status CheckEvolvedInvariants(const v1::Event& event,
                                    const StateReader& state) {
  const std::vector<Posting> postings = PostingsFor(event);
  if (postings.empty()) return absl::OkStatus();
  CheckPostingsInvariant(event);
  absl::StatusOr<RecordRef<StoreRecord>> read =
      state.Store(postings.front().store_id);
  if (!read.ok()) return read.status();
  const RecordRef<StoreRecord>& store = *read;
  SL_CHECK(store != nullptr,
           "money moved in store "
               << postings.front().store_id
               << ", which does not exist: " << event.ShortDebugString());
  CheckBalancesInvariant(*store);
  return absl::OkStatus();
}

}  // namespace storeledger
