// `storeledger cluster init|status` (docs/cluster.md "Partitions"):
//
//   storeledger cluster init --nats URL[,URL...] --partitions P [--replicas R]
//     creates the partitioned cluster on those JetStream servers: P stored
//     in KV bucket storeledger-cluster (fixed from then on: init again with
//     another P is refused, naming the stored one; with the same P it
//     changes nothing), and the store directory's bucket.
//   storeledger cluster status --nats URL[,URL...]
//     prints the partitions and each one's leader (the lease holder).
//
// Exit 0 done, 1 refused or unreachable, 2 a wrong command line.
#ifndef STORELEDGER_CLUSTER_CLUSTER_VERB_H_
#define STORELEDGER_CLUSTER_CLUSTER_VERB_H_

#include <ostream>
#include <string>
#include <vector>

namespace storeledger {

// `args` follows the word `cluster`.
int RunClusterVerb(const std::vector<std::string>& args, std::ostream& out,
                   std::ostream& err);

}  // namespace storeledger

#endif  // STORELEDGER_CLUSTER_CLUSTER_VERB_H_
