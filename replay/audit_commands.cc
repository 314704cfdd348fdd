// The audit's pass 3 (replay/audit.h): every stored command outcome
// parses, names its key and a range of the log, and together they are the
// multiset of runs pass 1 read off the events.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "replay/audit_internal.h"

namespace storeledger::audit_internal {

absl::Status Auditor::CommandsPass() {
  std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.commands_cf());
  uint64_t done = 0;
  const absl::string_view pass =
      diagnosing_ ? "commands (second look)" : "commands";
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (!diagnosing_) {
      report_.set_commands_checked(report_.commands_checked() + 1);
    }
    RETURN_IF_ERROR(CheckOutcome(View(it->key()), View(it->value())));
    Progress(pass, ++done, 0);
  }
  if (!diagnosing_) {
    RETURN_IF_ERROR(IteratorEnd(*it, kCheckOutcomes, "the command outcomes"));
  }
  Progress(pass, done, 0, true);
  return absl::OkStatus();
}

absl::Status Auditor::CheckOutcome(absl::string_view command_id,
                                   absl::string_view value) {
  auto violation = [&](uint64_t position, std::string message) {
    Integrity(kCheckOutcomes, absl::StatusCode::kDataLoss, position, "",
              command_id,
              absl::StrCat("stored outcome of command ",
                           absl::CEscape(command_id), ": ", message));
  };
  v1::StoredOutcome outcome;
  if (!outcome.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    violation(0, "does not parse");
    return absl::OkStatus();
  }
  const v1::CommandResult& result = outcome.result();
  if (result.command_id() != command_id) {
    violation(0, absl::StrCat("names command id ",
                              absl::CEscape(result.command_id())));
  }
  if (result.status() != v1::ACCEPTED && result.status() != v1::REJECTED) {
    violation(0,
              absl::StrCat("status ", v1::OutcomeStatus_Name(result.status()),
                           " is never stored"));
    return absl::OkStatus();
  }
  const uint64_t first = result.first_position();
  const uint64_t last = result.last_position();
  if (first == 0 && last == 0) {
    if (result.status() == v1::REJECTED) {
      violation(0, "a rejection without the position of its record");
    }
    return absl::OkStatus();  // accepted with nothing to append
  }
  if (first == 0 || first > last || last > head_position_) {
    violation(first, absl::StrCat("names positions ", first, "..", last,
                                  ", not a range of the log (head ",
                                  head_position_, ")"));
    return absl::OkStatus();
  }
  if (result.status() == v1::REJECTED && first != last) {
    violation(first,
              absl::StrCat("a rejection names positions ", Range(first, last),
                           "; a rejection is one event"));
  }
  if (!diagnosing_) {
    const bool rejected = result.status() == v1::REJECTED;
    outcomes_.Add(OutcomeFingerprint(
        command_id, first, last, result.status(),
        rejected ? outcome.fingerprint() : "", rejected ? result.rule() : "",
        rejected ? result.code() : v1::REJECTION_CODE_UNSPECIFIED));
    return absl::OkStatus();
  }
  for (uint64_t position : {first, last}) {
    absl::StatusOr<v1::Envelope> envelope = ReadEnvelope(position);
    if (absl::IsDataLoss(envelope.status())) continue;  // pass 1 names it
    RETURN_IF_ERROR(envelope.status());
    if (envelope->command_id() != command_id) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, position, "",
                command_id,
                absl::StrCat("stored outcome of command ",
                             absl::CEscape(command_id), ": ", "names position ",
                             position, ", which holds an event of command ",
                             absl::CEscape(envelope->command_id())));
    }
    if (first == last) break;
  }
  return absl::OkStatus();
}

}  // namespace storeledger::audit_internal
