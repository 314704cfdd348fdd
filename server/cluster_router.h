// How the service hands a partitioned cluster's calls to the partition that
// holds them (DESIGN.md §7, docs/cluster.md "Partitions"; implemented by
// cluster/router.h, which knows NATS). A call that a router sent on carries
// kRoutedMetadata: the node that receives it serves it itself (its write
// gate applies), so a call is routed at most once. ReplicaChannel and
// AwaitReplica are how any caller that follows a lease reaches a replica.
#ifndef STORELEDGER_SERVER_CLUSTER_ROUTER_H_
#define STORELEDGER_SERVER_CLUSTER_ROUTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "storeledger/v1/service.grpc.pb.h"

namespace storeledger {

inline constexpr char kRoutedMetadata[] = "storeledger-routed";

// Marks `context` as a routed call carrying the caller's `authorization`
// metadata ("" when none).
inline void PrepareRoutedCall(grpc::ClientContext* context,
                              const std::string& authorization) {
  context->AddMetadata(kRoutedMetadata, "1");
  if (!authorization.empty()) {
    context->AddMetadata("authorization", authorization);
  }
}

// A channel to one replica of a partition, for a caller that follows the
// lease. A replica that dies comes back, or another takes its lease,
// within seconds, so the channel tries to reconnect every 100-500 ms
// rather than on gRPC's default backoff (1 s, growing to 120 s).
inline std::shared_ptr<grpc::Channel> ReplicaChannel(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel(address, credentials, arguments);
}

// How long a caller waits for a replica's channel to connect before a call.
inline constexpr absl::Duration kReplicaConnectWait = absl::Seconds(1);

// Waits up to `at_most` for `channel` to connect; true when it is. Call it
// before a call to the replica a lease names. A channel whose connection
// failed reconnects only while something polls it, and a call that fails
// fast on the channel's last error polls nothing: in a process where no
// call is waiting, only gRPC's backup poller (every 5 s) moves the
// connection on, and a client retrying against a leader that has just
// come back kept seeing "connection refused" for 5-10 s
// (docs/cluster.md "Failover").
inline bool AwaitReplica(grpc::Channel& channel, absl::Duration at_most) {
  const grpc_connectivity_state state =
      channel.GetState(/*try_to_connect=*/true);
  if (state == GRPC_CHANNEL_READY) return true;
  if (state == GRPC_CHANNEL_TRANSIENT_FAILURE) {
    grpc::experimental::ChannelResetConnectionBackoff(&channel);
  }
  return channel.WaitForConnected(absl::ToChronoTime(absl::Now() + at_most));
}

class ClusterRouter {
 public:
  using Results = std::vector<absl::StatusOr<v1::CommandResult>>;
  // Executes a batch on this node's ledger, when this node leads its
  // partition (the service's write gate, then Ledger::ExecuteBatch).
  using LocalBatch = std::function<Results(std::vector<v1::Command>)>;

  virtual ~ClusterRouter() = default;

  // Executes `commands`, each in its partition, as ExecuteBatch would on
  // one ledger: commands of one partition in their order, and an
  // applyPolicy after everything before it and before everything after
  // it. `authorization` is the caller's metadata, passed on. Result i is
  // command i's (its `partition` set); a command that could not be
  // executed has a non-ok status, and the commands of its partition after
  // it kCancelled.
  virtual Results Execute(std::vector<v1::Command> commands,
                          const std::string& authorization,
                          const LocalBatch& local) = 0;

  // A stub to a replica of the partition that holds `store_id`, for reads;
  // nullptr when that is this node's partition (or no partition has it:
  // this node answers "not found").
  virtual absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>>
  StoreReader(absl::string_view store_id) = 0;

  // A stub to a replica of `partition` for reads; nullptr when it is this
  // node's. kInvalidArgument naming the count when there is no such one.
  virtual absl::StatusOr<std::shared_ptr<v1::Ledger::StubInterface>>
  PartitionReader(uint32_t partition) = 0;

  // The partition `command` alone goes to (as Execute would send it);
  // ~0u for one that goes to every partition (applyPolicy).
  virtual absl::StatusOr<uint32_t> PartitionOfCommand(
      const v1::Command& command) = 0;
  virtual uint32_t partition() const = 0;
  virtual uint32_t partitions() const = 0;
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_CLUSTER_ROUTER_H_
