// Placement in a partitioned cluster (DESIGN.md §7, docs/cluster.md
// "Partitions"): P partitions, fixed when the cluster is created
// (`storeledger cluster init`, KV bucket storeledger-cluster, key
// `partitions`); a merchant lives in partition H(merchant id) mod P, with
// H = the first 8 bytes of SHA-256(id), big-endian; every store of a
// merchant lives there. The store directory (KV bucket storeledger-stores,
// store id -> partition, decimal; every byte of the id but [-_a-zA-Z0-9]
// written =XX) makes store ids unique in the cluster.
#ifndef STORELEDGER_CLUSTER_PLACEMENT_H_
#define STORELEDGER_CLUSTER_PLACEMENT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/store_directory.h"
#include "replication/jetstream.h"

namespace storeledger {

inline constexpr char kClusterBucket[] = "storeledger-cluster";
inline constexpr char kPartitionsKey[] = "partitions";
inline constexpr char kStoreDirectoryBucket[] = "storeledger-stores";
// Partitions a cluster may have (each is a stream and a lease).
inline constexpr uint32_t kPartitionsMax = 1024;

// The first 8 bytes of SHA-256(id), big-endian.
uint64_t PlacementHash(absl::string_view id);
// H(merchant id) mod partitions. REQUIRES: partitions >= 1.
uint32_t PartitionOfMerchant(absl::string_view merchant_id,
                             uint32_t partitions);

// Creates the cluster with `partitions` (the configuration and directory
// buckets, `replicas` copies each) unless it exists: its partitions.
// kAlreadyExists naming the stored count when the cluster was created with
// another; kInvalidArgument outside 1..kPartitionsMax.
absl::StatusOr<uint32_t> InitCluster(JetStream& js, uint32_t partitions,
                                     int replicas);
// The cluster's partitions; nullopt when `cluster init` never ran there.
absl::StatusOr<std::optional<uint32_t>> ClusterPartitions(JetStream& js);

// The store directory on its KV bucket, seen from `partition`.
class NatsStoreDirectory : public StoreDirectory {
 public:
  // `js` is not owned and must outlive the directory.
  NatsStoreDirectory(JetStream* js, uint32_t partition)
      : js_(js), partition_(partition) {}
  absl::StatusOr<bool> PlacedElsewhere(absl::string_view store_id) override;
  absl::StatusOr<bool> Place(absl::string_view store_id) override;

 private:
  JetStream* const js_;
  const uint32_t partition_;
};

// The partition the directory placed `store_id` in; nullopt when none.
absl::StatusOr<std::optional<uint32_t>> PlacedPartition(
    JetStream& js, absl::string_view store_id);

}  // namespace storeledger

#endif  // STORELEDGER_CLUSTER_PLACEMENT_H_
