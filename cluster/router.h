// The router of a partitioned cluster (DESIGN.md §7): every storeledgerd of
// a cluster has one, so that any node accepts any command and read and
// sends it to the partition that holds it, as docs/cluster.md "Routing"
// lays out (which call goes where, leaders by lease, retries).
//
// A call that fails for want of a leader is sent again, from the first
// command not answered, to the leader the lease then names, for up to
// `retry_for`: command ids make that safe (an executed command answers
// `replayed`). Thread-safe.
#ifndef STORELEDGER_CLUSTER_ROUTER_H_
#define STORELEDGER_CLUSTER_ROUTER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "replication/jetstream.h"
#include "server/cluster_router.h"

namespace storeledger {

// How long a routed call keeps trying to find a partition's leader.
inline constexpr absl::Duration kRouteRetryDefault = absl::Seconds(20);
// Between two tries.
inline constexpr absl::Duration kRouteRetryInterval = absl::Milliseconds(100);
// How long one routed gRPC call may take.
inline constexpr absl::Duration kRoutedCallTimeout = absl::Seconds(60);

struct RouterOptions {
  std::vector<std::string> nats_urls;  // the cluster's NATS servers
  uint32_t partition = 0;              // this node's. Default: 0
  // True while this node leads its partition. Default: never.
  std::function<bool()> leads = nullptr;
  absl::Duration retry_for = kRouteRetryDefault;
  // The credentials of the calls sent to other nodes: TLS trusting the CAs
  // of storeledgerd's --peer-ca. Default: none, plaintext, which goes only
  // to a leader on a loopback address (a routed call carries its caller's
  // token); another is kFailedPrecondition naming it.
  std::shared_ptr<grpc::ChannelCredentials> peer_credentials = nullptr;
};

class Router final : public ClusterRouter {
 public:
  // Connects and reads the cluster's partitions: kFailedPrecondition when
  // `storeledger cluster init` never ran on these servers,
  // kInvalidArgument when options.partition is not below their count.
  static absl::StatusOr<std::unique_ptr<Router>> Connect(RouterOptions options);

  Results Execute(std::vector<v1::Command> commands,
                  const std::string& authorization,
                  const LocalBatch& local) override;
  absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> StoreReader(
      absl::string_view store_id) override;
  absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> PartitionReader(
      uint32_t partition) override;
  absl::StatusOr<uint32_t> PartitionOfCommand(
      const v1::Command& command) override {
    BatchStores alone;
    return PartitionOf(command, &alone);
  }
  uint32_t partition() const override { return options_.partition; }
  uint32_t partitions() const override { return partitions_; }

  // What routing learned about a batch's stores before any of it runs:
  // the stores its commands open (and where), and the stores the
  // directory placed nowhere when asked.
  struct BatchStores {
    std::map<std::string, uint32_t> opened;
    std::set<std::string> unplaced;
  };
  // The partition `command` goes to (kAllPartitions: applyPolicy), given
  // the commands before it in its batch (`batch`, updated).
  static constexpr uint32_t kAllPartitions = ~uint32_t{0};
  absl::StatusOr<uint32_t> PartitionOf(const v1::Command& command,
                                       BatchStores* batch);
  // The partition the directory placed `store_id` in; nullopt when none.
  absl::StatusOr<std::optional<uint32_t>> StorePartition(
      absl::string_view store_id);

 private:
  Router(RouterOptions options, std::unique_ptr<JetStream> js,
         uint32_t partitions)
      : options_(std::move(options)),
        js_(std::move(js)),
        partitions_(partitions) {}

  // `commands`, all of `partition`, in order, with retries.
  Results RunOn(uint32_t partition, std::vector<v1::Command> commands,
                const std::string& authorization, const LocalBatch& local);
  // One try at the partition's leader.
  Results Remote(uint32_t partition, const std::vector<v1::Command>& commands,
                 const std::string& authorization);
  absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>> LeaderStub(
      uint32_t partition);

  const RouterOptions options_;
  const std::unique_ptr<JetStream> js_;
  const uint32_t partitions_;

  std::mutex mu_;
  absl::flat_hash_map<std::string, uint32_t> placed_;  // guarded by mu_
  struct Channel {
    std::shared_ptr<grpc::Channel> channel;
    std::shared_ptr<v1::Ledger::StubInterface> stub;
  };
  std::map<std::string, Channel> channels_;  // by address; guarded by mu_
};

// applyPolicy's answers from every partition, as one: REJECTED when one
// partition rejected it (that one's rule), the message when all agree (else
// each partition's, "p<N>: ..."), replayed when all replayed, positions 0,
// and each partition's own in partition_results.
v1::CommandResult MergePartitionResults(std::vector<v1::CommandResult> results);

}  // namespace storeledger

#endif  // STORELEDGER_CLUSTER_ROUTER_H_
