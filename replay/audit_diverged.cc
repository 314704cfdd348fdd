// The audit's pass 6 (replay/audit.h, check "diverged"): the tails a
// replica moved aside (storage/diverged.h), listed in the report, each one
// checked whole: contiguous from its first position to its last, each
// envelope verifying at its position and linked to the one before, the
// last one's hash the record's last_hash.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replay/audit_internal.h"
#include "storage/diverged.h"

namespace storeledger::audit_internal {

absl::Status Auditor::DivergedPass() {
  ASSIGN_OR_RETURN(std::vector<v1::DivergedRecord> records,
                   ReadDivergedRecords(log_, snapshot_));
  for (v1::DivergedRecord& record : records) {
    uint64_t expected = record.first_position();
    std::string prev_hash;
    std::string problem;
    RETURN_IF_ERROR(ScanDivergedEnvelopes(
        log_, record.record(), snapshot_,
        [&](uint64_t position, absl::string_view raw) {
          if (!problem.empty()) return;
          absl::StatusOr<Envelope> envelope =
              VerifyStoredEnvelope(position, raw);
          if (position != expected) {
            problem = absl::StrCat("position ", expected, " is missing");
          } else if (!envelope.ok()) {
            problem = std::string(envelope.status().message());
          } else if (!prev_hash.empty() && envelope->prev_hash() != prev_hash) {
            problem = absl::StrCat("position ", position,
                                   " does not link to the one before");
          } else {
            prev_hash = envelope->hash();
          }
          ++expected;
        }));
    if (problem.empty() && expected != record.last_position() + 1) {
      problem = absl::StrCat("it ends at position ", expected - 1, ", not ",
                             record.last_position());
    }
    if (problem.empty() && ToHex(prev_hash) != record.last_hash()) {
      problem = "its last envelope's hash is not the record's last_hash";
    }
    if (!problem.empty()) {
      Violation(
          kCheckDiverged, absl::StatusCode::kDataLoss, record.first_position(),
          "", "",
          absl::StrCat("diverged record ", record.record(), " (",
                       Range(record.first_position(), record.last_position()),
                       "): ", problem));
    }
    *report_.add_diverged() = std::move(record);
  }
  return absl::OkStatus();
}

}  // namespace storeledger::audit_internal
