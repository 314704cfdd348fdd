#include "base/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace storeledger {

bool IsLoopbackHost(absl::string_view host) {
  std::string bare(host);
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  if (absl::AsciiStrToLower(bare) == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, bare.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, bare.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6);
  }
  return false;
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view flag, absl::string_view address) {
  const size_t colon = address.rfind(':');
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", address,
        ": expected HOST:PORT, e.g. 127.0.0.1:7450 or [::1]:7450"));
  };
  if (colon == absl::string_view::npos || colon == 0) return bad();
  std::string host(address.substr(0, colon));
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return bad();
  }
  if (host.find(':') != std::string::npos &&
      (host.front() != '[' || host.back() != ']')) {
    return bad();  // an IPv6 address needs brackets
  }
  return std::make_pair(host, port);
}

}  // namespace storeledger
