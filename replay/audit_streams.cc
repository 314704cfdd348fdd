// The audit's pass 2 (replay/audit.h): the stream index, stream by
// stream -- every entry, the stream head -- and each store or merchant
// stream folded with Evolve into fresh records compared byte for byte with
// the projections, its balances with its postings.
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/evolve.h"
#include "core/money.h"
#include "core/policy.h"
#include "core/postings.h"
#include "core/streams.h"
#include "replay/audit_internal.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"
#include "storage/rocks_util.h"

namespace storeledger::audit_internal {

absl::Status Auditor::StreamsPass() {
  std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.streams_cf());
  uint64_t done = 0;
  for (it->SeekToFirst(); it->Valid() && io_error_.ok(); it->Next()) {
    const absl::string_view key = View(it->key());
    const absl::string_view value = View(it->value());
    const size_t separator = key.find(kStreamIndexSeparator);
    if (separator == absl::string_view::npos) {
      FinishStream();
      StartStream(key);
      walk_.head_bytes = std::string(value);
      continue;
    }
    const absl::string_view stream = key.substr(0, separator);
    if (!walk_.active || walk_.stream_id != stream) {
      FinishStream();
      StartStream(stream);
    }
    const absl::string_view version_bytes = key.substr(separator + 1);
    if (version_bytes.size() != kPositionBytes ||
        value.size() != kPositionBytes) {
      Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, key,
                "malformed stream index entry");
      StopFold("its stream index holds a malformed entry", 0, true);
      walk_.sums_complete = false;
      continue;
    }
    VisitIndexEntry(DecodeBigEndian64(version_bytes), DecodeBigEndian64(value));
    Progress("streams", ++done, 0);
  }
  RETURN_IF_ERROR(io_error_);
  FinishStream();
  RETURN_IF_ERROR(io_error_);
  RETURN_IF_ERROR(IteratorEnd(*it, kCheckStreamIndex, "the stream index"));
  Progress("streams", done, 0, true);
  return absl::OkStatus();
}

void Auditor::StartStream(absl::string_view stream_id) {
  walk_ = StreamWalk();
  walk_.active = true;
  walk_.stream_id = std::string(stream_id);
  if (absl::StartsWith(stream_id, kStoreStreamPrefix)) {
    walk_.store_id = std::string(stream_id.substr(kStoreStreamPrefix.size()));
  } else if (absl::StartsWith(stream_id, kMerchantStreamPrefix)) {
    walk_.merchant_id =
        std::string(stream_id.substr(kMerchantStreamPrefix.size()));
  }
  walk_.state = std::make_unique<StateOverlay>(&EmptyState());
  if (!walk_.store_id.empty()) CollectSnapshotVersions();
}

void Auditor::CollectSnapshotVersions() {
  for (absl::string_view kind : {kSnapshotPrefix, kSnapshotMetaPrefix}) {
    const std::string prefix = absl::StrCat(kind, walk_.store_id, Sep());
    absl::Status scanned = projections_scan_.ScanPrefix(
        prefix, [&](absl::string_view key, absl::string_view) {
          const absl::string_view version = key.substr(prefix.size());
          if (version.size() != kPositionBytes) {
            Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
                      walk_.stream_id, key,
                      "a malformed snapshot key (the version is not 8 "
                      "bytes)");
          } else {
            walk_.snapshot_versions.insert(DecodeBigEndian64(version));
          }
          return true;
        });
    if (!scanned.ok() && !absl::IsDataLoss(scanned)) io_error_ = scanned;
  }
}

void Auditor::CheckSnapshot(const v1::Envelope& envelope) {
  const std::string& store_id = walk_.store_id;
  const uint64_t version = envelope.stream_version();
  v1::SnapshotMeta meta;
  meta.set_version(version);
  meta.set_position(envelope.position());
  *meta.mutable_occurred_at() = envelope.occurred_at();
  absl::StatusOr<v1::StoreSnapshot> expected =
      MakeSnapshot(*walk_.state, store_id, std::move(meta));
  const std::string snapshot_key = SnapshotKey(store_id, version);
  if (!expected.ok()) {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss,
              envelope.position(), walk_.stream_id, snapshot_key,
              absl::StrCat(
                  "a snapshot is stored at version ", version,
                  " but the fold gives none: ", expected.status().message()));
    return;
  }
  CompareRecord(snapshot_key, &*expected,
                v1::StoreSnapshot::default_instance());
  CompareRecord(SnapshotMetaKey(store_id, version), &expected->meta(),
                v1::SnapshotMeta::default_instance());
}

void Auditor::StopFold(std::string why, uint64_t position, bool reported) {
  if (!walk_.fold_problem.empty()) return;
  walk_.fold_problem = std::move(why);
  walk_.fold_problem_position = position;
  walk_.fold_problem_reported = reported;
  walk_.state.reset();
}

void Auditor::VisitIndexEntry(uint64_t version, uint64_t position) {
  const std::string& stream = walk_.stream_id;
  if (version != walk_.next_version) {
    // The second look of pass 1 names the unindexed event; the position of
    // the missing version is not known from the index.
    walk_.sums_complete = false;
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, "",
              absl::StrCat("stream ", stream, ": version",
                           walk_.next_version + 1 == version ? " " : "s ",
                           Range(walk_.next_version, version - 1),
                           " missing from the stream index"));
    StopFold("versions are missing from its stream index", position, true);
  }
  walk_.next_version = version + 1;
  walk_.last_version = version;
  absl::StatusOr<v1::Envelope> envelope = ReadEnvelope(position);
  if (!envelope.ok()) walk_.sums_complete = false;
  if (absl::IsNotFound(envelope.status())) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position, stream,
              StreamIndexKey(stream, version),
              absl::StrCat("stream ", stream, " version ", version,
                           " points at position ", position,
                           ", where there is no event"));
    StopFold("its index points at a missing event", position, true);
    return;
  }
  if (absl::IsDataLoss(envelope.status())) {
    // Pass 1 names the damage itself; here it stops the fold.
    StopFold(absl::StrCat("the event at position ", position, " (version ",
                          version, ") is damaged or missing"),
             position, false);
    return;
  }
  if (!envelope.ok()) {
    io_error_ = envelope.status();
    return;
  }
  if (envelope->stream_id() != stream ||
      envelope->stream_version() != version) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, position, stream,
              StreamIndexKey(stream, version),
              absl::StrCat("stream ", stream, " version ", version,
                           " points at position ", position,
                           ", which holds stream ", envelope->stream_id(),
                           " version ", envelope->stream_version()));
    StopFold("its index points at another stream's event", position, true);
    walk_.sums_complete = false;
    return;
  }
  ++verified_entries_;
  if (version > 1 && stream != kRejectionsStream &&
      ToTime(envelope->occurred_at()) < ToTime(walk_.last_occurred_at)) {
    Violation(kCheckStreamIndex, absl::StatusCode::kFailedPrecondition,
              position, stream, "",
              absl::StrCat("stream ", stream,
                           ": business time goes back at "
                           "version ",
                           version, " (R0)"));
  }
  walk_.last_occurred_at = envelope->occurred_at();
  if (walk_.store_id.empty() && walk_.merchant_id.empty()) return;
  if (Folding()) {
    absl::Status evolved = EvolveEnvelope(*envelope, walk_.state.get());
    if (!evolved.ok()) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, position,
                stream, "",
                absl::StrCat("folding stream ", stream,
                             " with Evolve fails "
                             "at version ",
                             version, ": ", evolved.message()));
      StopFold("Evolve rejects one of its events", position, true);
    } else if (walk_.snapshot_versions.erase(version) > 0) {
      CheckSnapshot(*envelope);
    }
  }
  if (!walk_.store_id.empty() && walk_.sums_complete) SumPostings(*envelope);
}

void Auditor::SumPostings(const v1::Envelope& envelope) {
  std::set<std::string> touched;
  for (const Posting& posting : PostingsFor(envelope.payload())) {
    if (posting.store_id != walk_.store_id) continue;  // pass 1 reports it
    if (BalanceFieldOf(walk_.store_id, posting.account) ==
        BalanceField::kNone) {
      continue;  // outside accounts go negative by design
    }
    absl::Status s = walk_.accounts.Apply(posting.account, posting.debit_fen,
                                          posting.credit_fen);
    if (!s.ok()) {
      Violation(kCheckBalances, absl::StatusCode::kDataLoss,
                envelope.position(), walk_.stream_id, "",
                std::string(s.message()));
    }
    touched.insert(posting.account);
  }
  for (const std::string& account : touched) {
    const int64_t balance_fen = walk_.accounts.Get(account);
    if (balance_fen < 0 && walk_.negative_reported.insert(account).second) {
      Violation(
          kCheckBalances, absl::StatusCode::kFailedPrecondition,
          envelope.position(), walk_.stream_id, "",
          absl::StrCat("account ", account, " is ", balance_fen,
                       " fen after the event at position ", envelope.position(),
                       ": a store balance went below zero (later "
                       "events of the stream are not reported again)"));
    }
  }
}

void Auditor::FinishStream() {
  if (!walk_.active) return;
  walk_.active = false;
  report_.set_streams_checked(report_.streams_checked() + 1);
  const std::string& stream = walk_.stream_id;
  CheckStreamHead();
  if (!walk_.store_id.empty()) {
    report_.set_stores_checked(report_.stores_checked() + 1);
  } else if (!walk_.merchant_id.empty()) {
    report_.set_merchants_checked(report_.merchants_checked() + 1);
  } else {
    return;
  }
  for (uint64_t version : walk_.snapshot_versions) {
    if (!Folding() && version <= walk_.last_version) continue;
    Violation(
        kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
        SnapshotKey(walk_.store_id, version),
        absl::StrCat("a snapshot of store ", walk_.store_id, " at version ",
                     version, ", past the stream's last version ",
                     walk_.last_version));
  }
  if (!Folding()) {
    if (!walk_.fold_problem_reported) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss,
                walk_.fold_problem_position, stream, "",
                absl::StrCat("the records of stream ", stream,
                             " were not recomputed: ", walk_.fold_problem));
    }
    return;
  }
  if (!walk_.store_id.empty()) {
    CompareStore();
  } else {
    CompareMerchant();
  }
}

void Auditor::CheckStreamHead() {
  const std::string& stream = walk_.stream_id;
  if (!walk_.head_bytes.has_value()) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, stream,
              absl::StrCat("stream ", stream,
                           " has index entries but no stream head"));
    return;
  }
  StreamHead stored;
  if (!stored.ParseFromString(*walk_.head_bytes)) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, stream,
              absl::StrCat("the head of stream ", stream, " does not parse"));
    return;
  }
  if (stored.version() != walk_.last_version) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, stream,
              absl::StrCat("the head of stream ", stream, " names version ",
                           stored.version(), " but its index ends at version ",
                           walk_.last_version));
    return;
  }
  StreamHead expected;
  expected.set_version(walk_.last_version);
  *expected.mutable_last_occurred_at() = walk_.last_occurred_at;
  if (SerializeDeterministic(expected) != *walk_.head_bytes) {
    Violation(kCheckStreamIndex, absl::StatusCode::kDataLoss, 0, stream, stream,
              absl::StrCat("the head of stream ", stream, " is ", Short(stored),
                           ", its last event gives ", Short(expected)));
  }
}

void Auditor::CompareRecord(const std::string& key,
                            const google::protobuf::Message* folded,
                            const google::protobuf::Message& prototype) {
  const std::string& stream = walk_.stream_id;
  absl::StatusOr<std::optional<std::string>> stored =
      GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
  if (!stored.ok()) {
    io_error_ = stored.status();
    return;
  }
  if (!stored->has_value()) {
    if (folded != nullptr) {
      Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
                absl::StrCat("record missing from the projections; the log "
                             "gives ",
                             Short(*folded)));
    }
    return;
  }
  if (folded == nullptr) {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
              "a record is stored that the log does not give");
    return;
  }
  if (SerializeDeterministic(*folded) == **stored) return;
  std::unique_ptr<google::protobuf::Message> parsed(prototype.New());
  const std::string stored_text = parsed->ParseFromString(**stored)
                                      ? Short(*parsed)
                                      : std::string("bytes that do not parse");
  Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
            absl::StrCat("the stored record differs from the one folded "
                         "from the log: stored ",
                         stored_text, ", folded ", Short(*folded)));
}

template <typename Map, typename IdOf>
void Auditor::MergeIndex(
    const std::string& prefix, const Map& folded, IdOf id_of,
    absl::string_view what,
    const std::function<void(absl::string_view id, absl::string_view value,
                             const typename Map::mapped_type::element_type&)>&
        both) {
  const std::string& stream = walk_.stream_id;
  auto next = folded.begin();
  auto missing = [&]() {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
              prefix + id_of(next->first),
              absl::StrCat(what, " ", id_of(next->first),
                           " is missing from the projections; the log "
                           "gives ",
                           Short(*next->second)));
  };
  absl::Status scanned = projections_scan_.ScanPrefix(
      prefix, [&](absl::string_view key, absl::string_view value) {
        const absl::string_view id = key.substr(prefix.size());
        while (next != folded.end() && id_of(next->first) < id) {
          missing();
          ++next;
        }
        if (next != folded.end() && id_of(next->first) == id) {
          both(id, value, *next->second);
          ++next;
        } else {
          Violation(
              kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, key,
              absl::StrCat(what, " ", id, " is stored but the log has no such ",
                           what, " in stream ", stream));
        }
        return io_error_.ok();
      });
  for (; next != folded.end(); ++next) missing();
  if (absl::IsDataLoss(scanned)) {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, stream, prefix,
              std::string(scanned.message()));
  } else if (!scanned.ok()) {
    io_error_ = scanned;
  }
}

void Auditor::CompareStore() {
  const std::string& store_id = walk_.store_id;
  const std::string& stream = walk_.stream_id;
  const StateOverlay& state = *walk_.state;
  auto store_it = state.stores().find(store_id);
  const StoreRecord* store =
      store_it == state.stores().end() ? nullptr : store_it->second.get();
  CompareRecord(StoreKey(store_id), store, StoreRecord::default_instance());
  if (store != nullptr) {
    CompareIndexKey(absl::StrCat(kKindPrefix, static_cast<int>(store->kind()),
                                 "/", store_id),
                    "the store-by-kind index entry");
    CompareBalances(*store);
    CheckMerchantLists(*store);
  }

  const std::string sep = Sep();
  MergeIndex(
      absl::StrCat(kProductPrefix, store_id, sep), state.products(),
      [](const std::pair<std::string, std::string>& key) -> const std::string& {
        return key.second;
      },
      "product",
      [&](absl::string_view, absl::string_view value,
          const ProductRecord& folded) {
        if (SerializeDeterministic(folded) == value) return;
        ProductRecord stored;
        Violation(
            kCheckProjections, absl::StatusCode::kDataLoss, 0, stream,
            absl::StrCat(kProductPrefix, store_id, sep, folded.product_id()),
            absl::StrCat("the stored record differs from the one folded "
                         "from the log: stored ",
                         stored.ParseFromArray(value.data(),
                                               static_cast<int>(value.size()))
                             ? Short(stored)
                             : std::string("bytes that do not parse"),
                         ", folded ", Short(folded)));
      });
  MergeIndex(
      absl::StrCat(kStoreOrderPrefix, store_id, sep), state.orders(),
      [](const std::string& id) -> const std::string& { return id; }, "order",
      [&](absl::string_view id, absl::string_view value,
          const OrderRecord& folded) {
        CheckEmptyIndexValue(id, value, kStoreOrderPrefix);
        CompareRecord(absl::StrCat(kOrderPrefix, id), &folded,
                      OrderRecord::default_instance());
      });
  MergeIndex(
      absl::StrCat(kStoreWithdrawalPrefix, store_id, sep), state.withdrawals(),
      [](const std::string& id) -> const std::string& { return id; },
      "withdrawal",
      [&](absl::string_view id, absl::string_view value,
          const WithdrawalRecord& folded) {
        CheckEmptyIndexValue(id, value, kStoreWithdrawalPrefix);
        CompareRecord(absl::StrCat(kWithdrawalPrefix, id), &folded,
                      WithdrawalRecord::default_instance());
      });
}

void Auditor::CheckEmptyIndexValue(absl::string_view id,
                                   absl::string_view value,
                                   absl::string_view prefix) {
  if (value.empty()) return;
  Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, walk_.stream_id,
            absl::StrCat(prefix, walk_.store_id, Sep(), id),
            "an index entry holds a value; index entries are empty");
}

void Auditor::CompareIndexKey(const std::string& key, absl::string_view what) {
  absl::StatusOr<std::optional<std::string>> stored =
      GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
  if (!stored.ok()) {
    io_error_ = stored.status();
  } else if (!stored->has_value()) {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0,
              walk_.stream_id, key, absl::StrCat(what, " is missing"));
  }
}

void Auditor::CompareBalances(const StoreRecord& store) {
  absl::StatusOr<v1::Balances> from_postings =
      StoreBalancesFromAccounts(walk_.store_id, walk_.accounts);
  if (!from_postings.ok()) {
    Violation(kCheckBalances, absl::StatusCode::kDataLoss, 0, walk_.stream_id,
              "", std::string(from_postings.status().message()));
    return;
  }
  if (SerializeDeterministic(*from_postings) !=
      SerializeDeterministic(store.balances())) {
    Violation(kCheckBalances, absl::StatusCode::kFailedPrecondition, 0,
              walk_.stream_id, StoreKey(walk_.store_id),
              absl::StrCat("store ", walk_.store_id,
                           ": balances folded "
                           "with Evolve ",
                           Short(store.balances()),
                           " differ from the sum of its postings ",
                           Short(*from_postings)));
  }
  // Deposits per category: the map against the S/deposit/<c> accounts.
  std::map<std::string, int64_t> from_accounts;
  const std::string deposit_prefix = DepositAccount(walk_.store_id, "");
  for (const auto& [account, balance_fen] : walk_.accounts.accounts()) {
    if (absl::StartsWith(account, deposit_prefix) && balance_fen != 0) {
      from_accounts[account.substr(deposit_prefix.size())] = balance_fen;
    }
  }
  std::map<std::string, int64_t> from_record;
  for (const auto& [category, fen] : store.deposit_fen_by_category()) {
    if (fen != 0) from_record[category] = fen;
  }
  if (from_accounts != from_record) {
    Violation(kCheckBalances, absl::StatusCode::kFailedPrecondition, 0,
              walk_.stream_id, StoreKey(walk_.store_id),
              absl::StrCat("store ", walk_.store_id,
                           ": deposits by category differ from the "
                           "balances of its deposit accounts"));
  }
}

void Auditor::CheckMerchantLists(const StoreRecord& store) {
  const std::string key = absl::StrCat(kMerchantPrefix, store.merchant_id());
  absl::StatusOr<std::optional<std::string>> stored =
      GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
  if (!stored.ok()) {
    io_error_ = stored.status();
    return;
  }
  MerchantRecord merchant;
  if (!stored->has_value() || !merchant.ParseFromString(**stored)) {
    return;  // the merchant's own stream walk reports it
  }
  const auto& ids = merchant.store_ids();
  if (std::find(ids.begin(), ids.end(), store.store_id()) == ids.end()) {
    Violation(
        kCheckProjections, absl::StatusCode::kDataLoss, 0, walk_.stream_id, key,
        absl::StrCat("merchant ", store.merchant_id(),
                     "'s record does not list its store ", store.store_id()));
  }
}

void Auditor::CompareMerchant() {
  const std::string& merchant_id = walk_.merchant_id;
  const std::string key = absl::StrCat(kMerchantPrefix, merchant_id);
  const StateOverlay& state = *walk_.state;
  auto it = state.merchants().find(merchant_id);
  if (it == state.merchants().end()) {
    CompareRecord(key, nullptr, MerchantRecord::default_instance());
    return;
  }
  MerchantRecord expected = *it->second;
  std::set<std::string> ids(expected.store_ids().begin(),
                            expected.store_ids().end());
  absl::StatusOr<std::optional<std::string>> stored_bytes =
      GetOrReport(log_.projections_cf(), key, kCheckProjections, 0);
  if (!stored_bytes.ok()) {
    io_error_ = stored_bytes.status();
    return;
  }
  MerchantRecord stored;
  if (stored_bytes->has_value() && stored.ParseFromString(**stored_bytes)) {
    for (const std::string& store_id : stored.store_ids()) {
      absl::StatusOr<std::optional<std::string>> store_bytes = GetOrReport(
          log_.projections_cf(), StoreKey(store_id), kCheckProjections, 0);
      if (!store_bytes.ok()) {
        io_error_ = store_bytes.status();
        return;
      }
      StoreRecord store;
      if (store_bytes->has_value() && store.ParseFromString(**store_bytes) &&
          store.merchant_id() == merchant_id) {
        ids.insert(store_id);
      }
    }
  }
  expected.clear_store_ids();
  for (const std::string& id : ids) expected.add_store_ids(id);
  CompareRecord(key, &expected, MerchantRecord::default_instance());
}

}  // namespace storeledger::audit_internal
