#include <iostream>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "cluster/cluster_verb.h"

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  // `storeledger cluster ...` speaks to NATS (cluster/cluster_verb.h).
  if (!args.empty() && args.front() == "cluster") {
    return storeledger::RunClusterVerb(
        std::vector<std::string>(args.begin() + 1, args.end()), std::cout,
        std::cerr);
  }
  return storeledger::RunCli(args, std::cin, std::cout, std::cerr);
}
