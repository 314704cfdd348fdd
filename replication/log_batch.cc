#include "replication/log_batch.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/format.h"

namespace storeledger {
namespace {

// One command of a group: its envelopes [first, first + count) of the
// group and its outcome.
struct Unit {
  size_t first = 0;
  size_t count = 0;
  absl::string_view outcome;
  std::string command_id;
  size_t bytes = 0;  // an upper bound of what it adds to a LogBatch
};

// Room a repeated bytes field takes beyond its content: tag and length.
constexpr size_t kFieldOverheadBytes = 1 + 5;

}  // namespace

absl::StatusOr<std::vector<std::string>> SplitGroup(const StoredGroup& group,
                                                    uint32_t partition,
                                                    uint64_t lease_revision,
                                                    size_t bytes_max) {
  std::vector<Unit> units;
  size_t next = 0;  // the group's first envelope no unit covers yet
  for (absl::string_view outcome_bytes : group.outcomes) {
    v1::StoredOutcome outcome;
    if (!outcome.ParseFromArray(outcome_bytes.data(),
                                static_cast<int>(outcome_bytes.size()))) {
      return absl::InternalError(
          "a stored outcome of the group does not parse");
    }
    const v1::CommandResult& result = outcome.result();
    if (result.first_position() == 0 && result.last_position() == 0) continue;
    if (result.first_position() != group.first_position + next ||
        result.last_position() < result.first_position() ||
        result.last_position() - group.first_position >=
            group.envelopes.size()) {
      return absl::InternalError(absl::StrCat(
          "outcome of command ", result.command_id(), " names positions ",
          result.first_position(), "..", result.last_position(),
          ", expected from ", group.first_position + next));
    }
    Unit unit;
    unit.first = next;
    unit.count = result.last_position() - result.first_position() + 1;
    unit.outcome = outcome_bytes;
    unit.command_id = result.command_id();
    unit.bytes = outcome_bytes.size() + kFieldOverheadBytes;
    for (size_t i = 0; i < unit.count; ++i) {
      unit.bytes += group.envelopes[next + i].size() + kFieldOverheadBytes;
    }
    next += unit.count;
    units.push_back(std::move(unit));
  }
  if (next != group.envelopes.size()) {
    return absl::InternalError(absl::StrCat("the group's outcomes cover ", next,
                                            " of its ", group.envelopes.size(),
                                            " envelopes"));
  }

  // partition, first_position, lease_revision, prev_hash: at most 64 bytes.
  constexpr size_t kHeaderBytes = 64;
  std::vector<std::string> messages;
  v1::LogBatch batch;
  size_t batch_bytes = kHeaderBytes;
  std::string prev_hash = group.prev_hash;
  auto flush = [&]() {
    if (batch.envelopes().empty()) return;
    messages.push_back(SerializeDeterministic(batch));
    // The next message links to this one's last envelope: its hash is the
    // stored bytes' tail (storage/FORMAT.md "Envelope").
    prev_hash = std::string(format::HashOfStoredEnvelope(
        batch.envelopes(batch.envelopes_size() - 1)));
    batch.Clear();
    batch_bytes = kHeaderBytes;
  };
  for (const Unit& unit : units) {
    if (unit.bytes + kHeaderBytes > bytes_max) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "command ", unit.command_id, " takes ", unit.bytes,
          " bytes, over the ", bytes_max, " a replicated message may hold"));
    }
    if (batch_bytes + unit.bytes > bytes_max) flush();
    if (batch.envelopes().empty()) {
      batch.set_partition(partition);
      batch.set_first_position(group.first_position + unit.first);
      batch.set_prev_hash(prev_hash);
      batch.set_lease_revision(lease_revision);
    }
    for (size_t i = 0; i < unit.count; ++i) {
      batch.add_envelopes(std::string(group.envelopes[unit.first + i]));
    }
    batch.add_outcomes(std::string(unit.outcome));
    batch_bytes += unit.bytes;
  }
  flush();
  return messages;
}

absl::StatusOr<VerifiedBatch> VerifyLogBatch(absl::string_view data,
                                             uint32_t partition,
                                             uint64_t sequence,
                                             const Head& head) {
  const uint64_t expected_position = head.position + 1;
  auto loss = [&](uint64_t position, absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("partition ", partition, " stream sequence ", sequence,
                     ", position ", position, ": ", what));
  };
  VerifiedBatch verified;
  v1::LogBatch& batch = verified.batch;
  if (!batch.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    return loss(expected_position, "message does not parse as a LogBatch");
  }
  if (batch.partition() != partition) {
    return loss(expected_position,
                absl::StrCat("message is of partition ", batch.partition()));
  }
  if (batch.first_position() != expected_position) {
    return loss(expected_position,
                absl::StrCat("message starts at position ",
                             batch.first_position(), " (a gap or a reorder)"));
  }
  if (batch.envelopes().empty()) {
    return loss(expected_position, "message holds no envelope");
  }
  if (batch.prev_hash() != head.hash) {
    return loss(expected_position,
                absl::StrCat("prev_hash ", ToHex(batch.prev_hash()),
                             " does not link to the hash ", ToHex(head.hash),
                             " of position ", head.position));
  }
  std::string prev_hash = head.hash;
  uint64_t position = expected_position;
  for (const std::string& raw : batch.envelopes()) {
    absl::StatusOr<Envelope> envelope = VerifyStoredEnvelope(position, raw);
    if (!envelope.ok()) return loss(position, envelope.status().message());
    if (envelope->prev_hash() != prev_hash) {
      return loss(position,
                  absl::StrCat("prev_hash ", ToHex(envelope->prev_hash()),
                               " does not link to position ", position - 1));
    }
    prev_hash = envelope->hash();
    verified.envelopes.push_back(*std::move(envelope));
    ++position;
  }
  uint64_t covered = expected_position;
  for (const std::string& bytes : batch.outcomes()) {
    v1::StoredOutcome& outcome = verified.outcomes.emplace_back();
    if (!outcome.ParseFromString(bytes)) {
      return loss(covered, "an outcome does not parse");
    }
    const v1::CommandResult& result = outcome.result();
    if (result.first_position() != covered ||
        result.last_position() < result.first_position() ||
        result.last_position() >= position) {
      return loss(
          covered,
          absl::StrCat("outcome of command ", result.command_id(), " names ",
                       result.first_position(), "..", result.last_position()));
    }
    covered = result.last_position() + 1;
  }
  if (covered != position) {
    return loss(covered, "envelopes no outcome covers");
  }
  return verified;
}

}  // namespace storeledger
