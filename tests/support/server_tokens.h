// The bearer tokens of the server and console tests: one principal per role
// (server/auth.h), as constants and as the token file that grants them.
#ifndef STORELEDGER_TESTS_SUPPORT_SERVER_TOKENS_H_
#define STORELEDGER_TESTS_SUPPORT_SERVER_TOKENS_H_

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

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_SERVER_TOKENS_H_
