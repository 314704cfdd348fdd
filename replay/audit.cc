// The audit engine (replay/audit.h). Reads RocksDB directly (EventLog::db()
// and its column family handles) so that it can walk past damage that
// EventLog::Scan would stop at, and re-derives everything it compares: the
// hash of each envelope from its stored bytes, postings with PostingsFor,
// records with Evolve. Point reads go through long-lived iterators (class
// Lookup) and no read fills the block cache; both choices were measured on a
// 10^6-event log, see Lookup.
//
// Run and the plumbing every pass uses; the passes are in audit_*.cc
// (replay/audit_internal.h lists them).
//
// What each pass checks, under its name in the report:
//  1. events: positions contiguous from 1 to the head; each envelope parses,
//     hashes to its stored hash, links to the one before, sits in the stream
//     it names, and its postings balance and touch one store; the events of
//     each command form one run.
//  2. streams: the index points at the envelopes, versions are contiguous,
//     heads are right; each store and merchant stream folded anew with
//     Evolve equals its projections byte for byte, and its balances equal
//     the sum of its postings and never go below zero.
//  3. commands: the stored outcomes are exactly the ones the events imply,
//     and every envelope is indexed.
//  4. projections: no record that no stream explains.
//  5. merkle tree: every stored node equals the one recomputed from the log.
//
// Passes 1 and 3 compare the commands' runs of events with the stored
// outcomes, and passes 1 and 2 the intact envelopes with the index entries
// that point at them, as counts and constant-size multiset hashes: no
// lookup per event or command. When they disagree, or damage left a run's
// extent unknown, a second look walks events and outcomes again with a
// lookup per item, to name each problem by position; a sound log never
// needs it.
//
// Memory: passes 1, 3 and 4 keep a constant amount of state, and pass 2
// folds one stream at a time (bench/audit_bench.cc: peak RSS 22.2 MiB at
// 10^5 events, 24.4 MiB at 10^6). Reads go around the block cache, so the
// audit neither grows it nor evicts what the ledger keeps there. Every pass
// reads one RocksDB snapshot of the durable log, taken at the start; its
// iterators are made anew every kIteratorStepsMax steps, so that a long
// audit pins no memtable writers would wait for. A damaged envelope is
// DATA_LOSS at its position and the passes go on past it; every loop is
#include "replay/audit.h"

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "core/postings.h"
#include "core/streams.h"
#include "replay/audit_internal.h"
#include "replay/finance.h"
#include "storage/event_log.h"
#include "storage/rocks_util.h"

namespace storeledger {
namespace audit_internal {
namespace {

ABSL_CONST_INIT const absl::string_view kAllChecks[] = {
    kCheckHashChain, kCheckPositions,  kCheckStreamIndex,
    kCheckPostings,  kCheckBalances,   kCheckProjections,
    kCheckOutcomes,  kCheckMerkleTree, kCheckDiverged,
};

}  // namespace

std::string Sep() { return std::string(1, kKeySeparator); }

std::string Range(uint64_t first, uint64_t last) {
  return first == last ? absl::StrCat(first) : absl::StrCat(first, "..", last);
}

std::string Short(const google::protobuf::Message& message) {
  std::string text = message.ShortDebugString();
  if (text.size() > kRecordTextMax) {
    text.resize(kRecordTextMax);
    text += "...";
  }
  return absl::StrCat("{", text, "}");
}

std::string ExpectedStream(const v1::Event& event) {
  switch (event.body_case()) {
    case v1::Event::kStoreOpened:
      return StoreStream(event.store_opened().store_id());
    case v1::Event::kMerchantOnboarded:
      return MerchantStream(event.merchant_onboarded().merchant_id());
    case v1::Event::kIndividualBusinessRegistered:
      return MerchantStream(
          event.individual_business_registered().merchant_id());
    case v1::Event::kProductAdded:
      return StoreStream(event.product_added().store_id());
    case v1::Event::kProductListed:
      return StoreStream(event.product_listed().store_id());
    case v1::Event::kProductDelisted:
      return StoreStream(event.product_delisted().store_id());
    case v1::Event::kProductDeleted:
      return StoreStream(event.product_deleted().store_id());
    case v1::Event::kStoreUpgraded:
      return StoreStream(event.store_upgraded().store_id());
    case v1::Event::kCategoryQualificationGranted:
      return StoreStream(event.category_qualification_granted().store_id());
    case v1::Event::kDepositPaid:
      return StoreStream(event.deposit_paid().store_id());
    case v1::Event::kOrderPlaced:
      return StoreStream(event.order_placed().store_id());
    case v1::Event::kOrderCancelled:
      return StoreStream(event.order_cancelled().store_id());
    case v1::Event::kOrderPaid:
      return StoreStream(event.order_paid().store_id());
    case v1::Event::kOrderShipped:
      return StoreStream(event.order_shipped().store_id());
    case v1::Event::kOrderSettled:
      return StoreStream(event.order_settled().store_id());
    case v1::Event::kOrderRefunded:
      return StoreStream(event.order_refunded().store_id());
    case v1::Event::kWithdrawalRequested:
      return StoreStream(event.withdrawal_requested().store_id());
    case v1::Event::kWithdrawalCompleted:
      return StoreStream(event.withdrawal_completed().store_id());
    case v1::Event::kWithdrawalFailed:
      return StoreStream(event.withdrawal_failed().store_id());
    case v1::Event::kProductsSynced:
      return StoreStream(event.products_synced().store_id());
    case v1::Event::kCommandRejected:
      return std::string(kRejectionsStream);
    case v1::Event::BODY_NOT_SET:
      break;
  }
  return "";
}

bool AccountOfStore(absl::string_view store_id, absl::string_view account) {
  return account == kBuyersAccount || account == kCommissionAccount ||
         account == MerchantBankAccount(store_id) ||
         BalanceFieldOf(store_id, account) != BalanceField::kNone;
}

std::string OutcomeFingerprint(absl::string_view command_id, uint64_t first,
                               uint64_t last, v1::OutcomeStatus status,
                               absl::string_view fingerprint,
                               absl::string_view rule, v1::RejectionCode code) {
  return absl::StrCat(command_id.size(), ":", command_id, "|", first, "|", last,
                      "|", static_cast<int>(status), "|", fingerprint.size(),
                      ":", fingerprint, "|", rule.size(), ":", rule, "|",
                      static_cast<int>(code));
}

absl::StatusOr<v1::AuditReport> Auditor::Run() {
  // One consistent view for every pass, even while appends go on: a
  // snapshot of the durable log (no append that awaits its sync), and the
  // head as that snapshot stores it.
  // With the derived families written up to it (a log that writes behind
  // and is open for writing writes its window first), or with the window
  // laid over them (a read-only open's).
  ASSIGN_OR_RETURN(EventLog::ReadPoint point, log_.PinWrittenBehind());
  read_point_.emplace(std::move(point));
  snapshot_ = read_point_->snapshot();
  for (Lookup* lookup : Lookups()) {
    lookup->SetSnapshot(snapshot_, log_.WindowAt(lookup->cf(), *read_point_));
  }
  Head head = log_.head();
  Lookup meta(db_, log_.meta_cf());
  meta.SetSnapshot(snapshot_);
  absl::StatusOr<std::optional<std::string>> stored_head =
      meta.Find(kMetaHeadKey);
  if (stored_head.ok() && stored_head->has_value() &&
      (*stored_head)->size() == kHeadValueBytes) {
    head.position = DecodeBigEndian64(**stored_head);
    head.hash = (*stored_head)->substr(kPositionBytes);
  }
  head_position_ = head.position;
  report_.set_head_position(head.position);
  report_.set_head_hash(ToHex(head.hash));
  head_hash_ = head.hash;
  RETURN_IF_ERROR(EventsPass());
  RETURN_IF_ERROR(StreamsPass());
  RETURN_IF_ERROR(CommandsPass());
  // The first look compared counts and multiset hashes, not items. When
  // they disagree (or damage made runs uncertain), a second look walks
  // the events and outcomes again with a lookup per item, to name each
  // problem by position. A sound log never needs it.
  const bool index_differs = verified_entries_ != good_envelopes_;
  const bool outcomes_differ = tainted_any_ || runs_ != outcomes_;
  if (index_differs || outcomes_differ) {
    const uint64_t index_before = CountOf(kCheckStreamIndex);
    const uint64_t outcomes_before = CountOf(kCheckOutcomes);
    diagnosing_ = true;
    check_index_ = index_differs;
    lookup_outcomes_ = outcomes_differ;
    run_ = CommandRun();
    next_run_tainted_ = false;
    RETURN_IF_ERROR(EventsPass());
    if (outcomes_differ) RETURN_IF_ERROR(CommandsPass());
    diagnosing_ = false;
    if (index_differs && CountOf(kCheckStreamIndex) == index_before) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, "", "",
                absl::StrCat(good_envelopes_, " intact events but ",
                             verified_entries_,
                             " stream index entries point at them"));
    }
    if (outcomes_differ && !tainted_any_ &&
        CountOf(kCheckOutcomes) == outcomes_before && outcomes_before == 0) {
      Violation(kCheckOutcomes, absl::StatusCode::kDataLoss, 0, "", "",
                "the stored command outcomes and the commands of the "
                "events disagree");
    }
  }
  RETURN_IF_ERROR(ProjectionsPass());
  RETURN_IF_ERROR(MerkleTreePass());
  RETURN_IF_ERROR(DivergedPass());
  for (absl::string_view name : kAllChecks) {
    v1::AuditCheck* check = report_.add_checks();
    check->set_name(std::string(name));
    auto it = counts_.find(name);
    const uint64_t n = it == counts_.end() ? 0 : it->second;
    check->set_violations(n);
    check->set_ok(n == 0);
  }
  report_.set_ok(report_.violations_total() == 0);
  return std::move(report_);
}

uint64_t Auditor::CountOf(absl::string_view check) const {
  auto it = counts_.find(check);
  return it == counts_.end() ? 0 : it->second;
}

void Auditor::Violation(absl::string_view check, absl::StatusCode code,
                        uint64_t position, absl::string_view stream_id,
                        absl::string_view key, std::string message) {
  ++counts_[std::string(check)];
  report_.set_violations_total(report_.violations_total() + 1);
  if (static_cast<size_t>(report_.violations_size()) >=
      options_.violations_max) {
    return;
  }
  v1::AuditViolation* v = report_.add_violations();
  v->set_check(std::string(check));
  v->set_code(absl::StatusCodeToString(code));
  v->set_position(position);
  v->set_stream_id(std::string(stream_id));
  v->set_key(absl::CEscape(key));
  v->set_message(std::move(message));
}

void Auditor::Integrity(absl::string_view check, absl::StatusCode code,
                        uint64_t position, absl::string_view stream_id,
                        absl::string_view key, std::string message) {
  if (diagnosing_) return;
  Violation(check, code, position, stream_id, key, std::move(message));
}

void Auditor::Progress(absl::string_view pass, uint64_t done, uint64_t total,
                       bool final_call) {
  if (!options_.progress) return;
  if (final_call ||
      (options_.progress_every > 0 && done % options_.progress_every == 0)) {
    options_.progress(pass, done, total);
  }
}

absl::Status Auditor::IteratorEnd(const rocksdb::Iterator& it,
                                  absl::string_view check,
                                  absl::string_view what) {
  const rocksdb::Status& s = it.status();
  if (s.ok()) return absl::OkStatus();
  if (s.IsCorruption()) {
    Violation(check, absl::StatusCode::kDataLoss, 0, "", "",
              absl::StrCat("RocksDB reports corruption while reading ", what,
                           "; the rest of it was not checked: ", s.ToString()));
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("audit: reading ", what, ": ", s.ToString()));
}

std::vector<Lookup*> Auditor::Lookups() {
  return {&events_lookup_, &streams_lookup_, &commands_lookup_,
          &projections_lookup_, &projections_scan_};
}

Lookup& Auditor::LookupFor(rocksdb::ColumnFamilyHandle* cf) {
  if (cf == log_.events_cf()) return events_lookup_;
  if (cf == log_.streams_cf()) return streams_lookup_;
  if (cf == log_.commands_cf()) return commands_lookup_;
  return projections_lookup_;
}

absl::StatusOr<std::optional<std::string>> Auditor::Get(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view key) {
  return LookupFor(cf).Find(key);
}

absl::StatusOr<v1::Envelope> Auditor::ReadEnvelope(uint64_t position) {
  if (position == 0 || position > head_position_) {
    return absl::NotFoundError(absl::StrCat("no event at position ", position));
  }
  ASSIGN_OR_RETURN(std::optional<std::string> raw,
                   events_lookup_.Find(PositionKey(position)));
  if (!raw.has_value()) {
    return absl::DataLossError(
        absl::StrCat("event at position ", position, " is missing"));
  }
  return VerifyStoredEnvelope(position, *raw);
}

absl::StatusOr<std::optional<v1::StoredOutcome>> Auditor::ReadOutcome(
    absl::string_view command_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> bytes,
                   commands_lookup_.Find(command_id));
  if (!bytes.has_value()) return std::optional<v1::StoredOutcome>();
  v1::StoredOutcome outcome;
  if (!outcome.ParseFromString(*bytes)) {
    return absl::DataLossError(absl::StrCat("stored outcome of command ",
                                            absl::CEscape(command_id),
                                            " does not parse"));
  }
  return std::optional<v1::StoredOutcome>(std::move(outcome));
}

absl::StatusOr<std::optional<std::string>> Auditor::GetOrReport(
    rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
    absl::string_view check, uint64_t position) {
  absl::StatusOr<std::optional<std::string>> value = Get(cf, key);
  if (absl::IsDataLoss(value.status())) {
    Violation(check, absl::StatusCode::kDataLoss, position, "", key,
              absl::StrCat("RocksDB cannot read the key: ",
                           value.status().message()));
    return std::optional<std::string>();
  }
  return value;
}

std::unique_ptr<rocksdb::Iterator> Auditor::Sequential(
    rocksdb::ColumnFamilyHandle* cf) const {
  rocksdb::ReadOptions read_options;
  // One pass over everything: keep it out of the block cache.
  read_options.fill_cache = false;
  read_options.snapshot = snapshot_;
  // No readahead_size: each file of a merging iterator would get a buffer
  // that large (measured: +20 MiB at 10^6 events); RocksDB's automatic
  // readahead for sequential reads is enough.
  return std::make_unique<SteppingIterator>(db_, cf, read_options,
                                            log_.WindowAt(cf, *read_point_));
}

}  // namespace audit_internal

absl::StatusOr<v1::AuditReport> Audit(const EventLog& log,
                                      const AuditOptions& options) {
  audit_internal::Auditor auditor(log, options);
  return auditor.Run();
}

}  // namespace storeledger
