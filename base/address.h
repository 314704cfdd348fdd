// Network addresses as storeledger's programs take them ("host:port",
// "[v6]:port"), and the one test every exposure rule rests on: is a host
// loopback. storeledgerd's --listen and --http, and the router's calls to
// other nodes, share them.
#ifndef STORELEDGER_BASE_ADDRESS_H_
#define STORELEDGER_BASE_ADDRESS_H_

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace storeledger {

// Is `host` (of host:port, brackets allowed) a loopback address or name?
bool IsLoopbackHost(absl::string_view host);

// Splits "host:port" / "[v6]:port"; kInvalidArgument naming `flag` and the
// address.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view flag, absl::string_view address);

}  // namespace storeledger

#endif  // STORELEDGER_BASE_ADDRESS_H_
