// The audit's pass 5 (replay/audit.h): every stored node of the Merkle
// tree against the tree recomputed from the stored envelopes
// (storage/merkle_store.h does the walk).
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replay/audit_internal.h"
#include "storage/merkle_store.h"

namespace storeledger::audit_internal {

absl::Status Auditor::MerkleTreePass() {
  if (options_.progress) options_.progress("merkle tree", 0, 0);
  absl::StatusOr<uint64_t> size = MerkleTreeSize(log_);
  if (!size.ok()) {
    Violation(kCheckMerkleTree, absl::StatusCode::kFailedPrecondition, 0, "",
              "", std::string(size.status().message()));
    return absl::OkStatus();
  }
  absl::StatusOr<MerkleCheck> checked = CheckMerkleTree(log_);
  if (absl::IsDataLoss(checked.status())) {
    // A gap in the events (the positions check names it) stops the
    // recomputation where it is.
    Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
              std::string(checked.status().message()));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(MerkleCheck check, std::move(checked));
  for (std::string& problem : check.problems) {
    Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
              std::move(problem));
  }
  for (uint64_t i = check.problems.size(); i < check.problems_total; ++i) {
    Violation(kCheckMerkleTree, absl::StatusCode::kDataLoss, 0, "", "",
              "(more merkle tree problems)");
  }
  return absl::OkStatus();
}

}  // namespace storeledger::audit_internal
