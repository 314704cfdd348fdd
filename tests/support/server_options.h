// What the server and console tests start a LedgerServer with: the bearer
// tokens, one principal per role (server/auth.h), as constants and as the
// token file that grants them, and the options of a server on loopback.
#ifndef STORELEDGER_TESTS_SUPPORT_SERVER_OPTIONS_H_
#define STORELEDGER_TESTS_SUPPORT_SERVER_OPTIONS_H_

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "server/server.h"

namespace storeledger::testing {

inline constexpr char kWriter[] = "writer-token-0123456789";
inline constexpr char kAuditor[] = "auditor-token-0123456789";
inline constexpr char kInvestigator[] = "investigator-token-0123456789";
inline constexpr char kMerchant1[] = "merchant1-token-0123456789";
inline constexpr char kMerchant2[] = "merchant2-token-0123456789";
inline constexpr char kTokenFile[] = R"(# token role
writer-token-0123456789 writer
auditor-token-0123456789 auditor
investigator-token-0123456789 investigator
merchant1-token-0123456789 merchant:m1
merchant2-token-0123456789 merchant:m2
)";

// A server of a fresh ledger in `db_dir`, on a loopback port chosen at
// start (port 0), granting kTokenFile's tokens. Durability across a crash is
// the storage tests' business; these check what the server acknowledges, so
// they skip the fsyncs.
inline ServerOptions LoopbackServerOptions(std::string db_dir) {
  ServerOptions options;
  options.db_dir = std::move(db_dir);
  options.listen = "127.0.0.1:0";
  absl::StatusOr<TokenTable> tokens = TokenTable::Parse(kTokenFile);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  options.tokens = *tokens;
  options.ledger.sync = false;
  return options;
}

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_SERVER_OPTIONS_H_
