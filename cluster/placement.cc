#include "cluster/placement.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "storage/event_log.h"

namespace storeledger {
namespace {

// A store id as a KV key: NATS keys allow [-/_=.a-zA-Z0-9] (with rules
// about dots and slashes), store ids any printable ASCII; every byte but
// [-_a-zA-Z0-9] is written =XX (hex), so distinct ids stay distinct keys.
std::string DirectoryKey(absl::string_view store_id) {
  std::string key;
  for (const char c : store_id) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                       (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (plain) {
      key.push_back(c);
    } else {
      absl::StrAppend(
          &key, "=", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    }
  }
  return key;
}

absl::StatusOr<uint32_t> ParsePartition(absl::string_view what,
                                        absl::string_view value) {
  uint32_t partition = 0;
  if (!absl::SimpleAtoi(value, &partition)) {
    return absl::DataLossError(
        absl::StrCat(what, " holds \"", value, "\", not a partition number"));
  }
  return partition;
}

}  // namespace

uint64_t PlacementHash(absl::string_view id) {
  const std::string digest = Sha256(id);
  uint64_t h = 0;
  for (int i = 0; i < 8; ++i) {
    h = (h << 8) | static_cast<unsigned char>(digest[i]);
  }
  return h;
}

uint32_t PartitionOfMerchant(absl::string_view merchant_id,
                             uint32_t partitions) {
  return static_cast<uint32_t>(PlacementHash(merchant_id) % partitions);
}

absl::StatusOr<uint32_t> InitCluster(JetStream& js, uint32_t partitions,
                                     int replicas) {
  if (partitions < 1 || partitions > kPartitionsMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--partitions must be 1..", kPartitionsMax, ", got ", partitions));
  }
  RETURN_IF_ERROR(js.EnsureBucket(kClusterBucket, replicas));
  RETURN_IF_ERROR(js.EnsureBucket(kStoreDirectoryBucket, replicas));
  ASSIGN_OR_RETURN(
      const bool created,
      js.KvCreate(kClusterBucket, kPartitionsKey, absl::StrCat(partitions)));
  if (created) return partitions;
  ASSIGN_OR_RETURN(std::optional<uint32_t> stored, ClusterPartitions(js));
  if (!stored.has_value()) {
    return absl::UnavailableError("the cluster's partitions vanished");
  }
  if (*stored != partitions) {
    return absl::AlreadyExistsError(absl::StrCat(
        "the cluster was created with ", *stored, " partitions; ",
        "partitions are fixed at creation (asked for ", partitions, ")"));
  }
  return *stored;
}

absl::StatusOr<std::optional<uint32_t>> ClusterPartitions(JetStream& js) {
  absl::StatusOr<std::optional<std::string>> value =
      js.KvGet(kClusterBucket, kPartitionsKey);
  if (absl::IsNotFound(value.status())) return std::nullopt;
  RETURN_IF_ERROR(value.status());
  if (!value->has_value()) return std::nullopt;
  ASSIGN_OR_RETURN(
      const uint32_t partitions,
      ParsePartition(absl::StrCat(kClusterBucket, "/", kPartitionsKey),
                     **value));
  if (partitions < 1) {
    return absl::DataLossError("the cluster's partition count is 0");
  }
  return partitions;
}

absl::StatusOr<std::optional<uint32_t>> PlacedPartition(
    JetStream& js, absl::string_view store_id) {
  ASSIGN_OR_RETURN(std::optional<std::string> value,
                   js.KvGet(kStoreDirectoryBucket, DirectoryKey(store_id)));
  if (!value.has_value()) return std::nullopt;
  return ParsePartition(absl::StrCat(kStoreDirectoryBucket, "/", store_id),
                        *value);
}

absl::StatusOr<bool> NatsStoreDirectory::PlacedElsewhere(
    absl::string_view store_id) {
  ASSIGN_OR_RETURN(std::optional<uint32_t> placed,
                   PlacedPartition(*js_, store_id));
  return placed.has_value() && *placed != partition_;
}

absl::StatusOr<bool> NatsStoreDirectory::Place(absl::string_view store_id) {
  ASSIGN_OR_RETURN(const bool created,
                   js_->KvCreate(kStoreDirectoryBucket, DirectoryKey(store_id),
                                 absl::StrCat(partition_)));
  if (created) return true;
  ASSIGN_OR_RETURN(std::optional<uint32_t> placed,
                   PlacedPartition(*js_, store_id));
  return placed.has_value() && *placed == partition_;
}

}  // namespace storeledger
