// The audit's pass 4 (replay/audit.h): every projection key belongs to a
// record pass 2 compared -- no stray or orphaned records.
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "core/streams.h"
#include "replay/audit_internal.h"
#include "replay/projection_store.h"
#include "replay/snapshots.h"

namespace storeledger::audit_internal {

absl::Status Auditor::ProjectionsPass() {
  std::unique_ptr<rocksdb::Iterator> it = Sequential(log_.projections_cf());
  uint64_t done = 0;
  for (it->SeekToFirst(); it->Valid() && io_error_.ok(); it->Next()) {
    report_.set_projection_keys_checked(report_.projection_keys_checked() + 1);
    CheckProjectionKey(View(it->key()), View(it->value()));
    Progress("projections", ++done, 0);
  }
  RETURN_IF_ERROR(io_error_);
  RETURN_IF_ERROR(IteratorEnd(*it, kCheckProjections, "the projections"));
  Progress("projections", done, 0, true);
  return absl::OkStatus();
}

bool Auditor::StreamExists(const std::string& stream) {
  if (stream == cached_stream_) return cached_stream_exists_;
  absl::StatusOr<std::optional<std::string>> head =
      Get(log_.streams_cf(), stream);
  cached_stream_ = stream;
  cached_stream_exists_ = head.ok() && head->has_value();
  if (!head.ok() && !absl::IsDataLoss(head.status())) io_error_ = head.status();
  return cached_stream_exists_;
}

void Auditor::CheckProjectionKey(absl::string_view key,
                                 absl::string_view value) {
  auto orphan = [&](std::string message) {
    Violation(kCheckProjections, absl::StatusCode::kDataLoss, 0, "", key,
              std::move(message));
  };
  const std::string sep = Sep();
  auto store_of_pair =
      [&](absl::string_view rest) -> std::optional<std::string> {
    const size_t at = rest.find(kKeySeparator);
    if (at == absl::string_view::npos) return std::nullopt;
    return std::string(rest.substr(0, at));
  };
  if (absl::StartsWith(key, kSnapshotPrefix) ||
      absl::StartsWith(key, kSnapshotMetaPrefix)) {
    // Their content is checked in pass 2, while the fold passes them.
    const size_t prefix = absl::StartsWith(key, kSnapshotPrefix)
                              ? kSnapshotPrefix.size()
                              : kSnapshotMetaPrefix.size();
    const absl::string_view rest = key.substr(prefix);
    if (rest.size() < kPositionBytes + 1 ||
        rest[rest.size() - kPositionBytes - 1] != kKeySeparator) {
      return orphan("a malformed snapshot key");
    }
    const absl::string_view store =
        rest.substr(0, rest.size() - kPositionBytes - 1);
    if (!StreamExists(StoreStream(store))) {
      orphan(absl::StrCat("a snapshot of store ", store,
                          ", which has no stream in the log"));
    }
  } else if (absl::StartsWith(key, kStorePrefix)) {
    const absl::string_view store = key.substr(kStorePrefix.size());
    if (!StreamExists(StoreStream(store))) {
      orphan(absl::StrCat("a record of store ", store,
                          ", which has no stream in the log"));
    }
  } else if (absl::StartsWith(key, kKindPrefix)) {
    const absl::string_view rest = key.substr(kKindPrefix.size());
    const size_t slash = rest.find('/');
    int kind = 0;
    if (slash == absl::string_view::npos ||
        !absl::SimpleAtoi(rest.substr(0, slash), &kind)) {
      return orphan("a malformed store-by-kind index key");
    }
    const absl::string_view store = rest.substr(slash + 1);
    absl::StatusOr<std::optional<std::string>> bytes = GetOrReport(
        log_.projections_cf(), StoreKey(store), kCheckProjections, 0);
    if (!bytes.ok()) {
      io_error_ = bytes.status();
      return;
    }
    StoreRecord record;
    if (!bytes->has_value() || !record.ParseFromString(**bytes) ||
        static_cast<int>(record.kind()) != kind) {
      orphan(absl::StrCat("store ", store, " is indexed under kind ", kind,
                          " but its record is missing or of another kind"));
    }
    if (!value.empty()) orphan("an index entry holds a value");
  } else if (absl::StartsWith(key, kProductPrefix) ||
             absl::StartsWith(key, kStoreOrderPrefix) ||
             absl::StartsWith(key, kStoreWithdrawalPrefix)) {
    std::optional<std::string> store = store_of_pair(key.substr(2));
    if (!store.has_value()) return orphan("a malformed projection key");
    if (!StreamExists(StoreStream(*store))) {
      orphan(absl::StrCat("a record of store ", *store,
                          ", which has no stream in the log"));
    }
  } else if (absl::StartsWith(key, kOrderPrefix) ||
             absl::StartsWith(key, kWithdrawalPrefix)) {
    const bool is_order = absl::StartsWith(key, kOrderPrefix);
    const absl::string_view id = key.substr(2);
    std::string store_id;
    if (is_order) {
      OrderRecord record;
      if (!record.ParseFromArray(value.data(),
                                 static_cast<int>(value.size()))) {
        return orphan("the order record does not parse");
      }
      store_id = record.store_id();
    } else {
      WithdrawalRecord record;
      if (!record.ParseFromArray(value.data(),
                                 static_cast<int>(value.size()))) {
        return orphan("the withdrawal record does not parse");
      }
      store_id = record.store_id();
    }
    const std::string index_key =
        absl::StrCat(is_order ? kStoreOrderPrefix : kStoreWithdrawalPrefix,
                     store_id, sep, id);
    absl::StatusOr<std::optional<std::string>> indexed =
        GetOrReport(log_.projections_cf(), index_key, kCheckProjections, 0);
    if (!indexed.ok()) {
      io_error_ = indexed.status();
    } else if (!indexed->has_value()) {
      orphan(absl::StrCat(is_order ? "order " : "withdrawal ", id, " of store ",
                          store_id,
                          " is not in that store's index, so the log does "
                          "not account for it"));
    }
  } else if (absl::StartsWith(key, kMerchantPrefix)) {
    const absl::string_view merchant = key.substr(kMerchantPrefix.size());
    if (!StreamExists(MerchantStream(merchant))) {
      orphan(absl::StrCat("a record of merchant ", merchant,
                          ", which has no stream in the log"));
    }
  } else {
    orphan("a projection key of no known kind");
  }
}

}  // namespace storeledger::audit_internal
