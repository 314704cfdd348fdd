// The policy calendar (DESIGN.md §1): the instants at which the article's
// cutoffs take effect, the personal-WeChat-Store flag, and per-category
// deposits. Policy is data: the default is built in, a file replaces it, and
// every event records the version it was decided under.
#ifndef STORELEDGER_CORE_POLICY_H_
#define STORELEDGER_CORE_POLICY_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/time.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

using v1::Policy;

// The calendar of DESIGN.md §1, version "builtin-2024-10-22".
const Policy& DefaultPolicy();

// Parses a policy in protobuf text format and validates it (every instant set,
// version non-empty, deposits > 0). Errors name the field.
absl::StatusOr<Policy> ParsePolicyText(absl::string_view text);
absl::Status ValidatePolicy(const Policy& policy);

// The deposit R3 requires for `category_id` before listing in a WeChat Store.
int64_t RequiredDepositFen(const Policy& policy, absl::string_view category_id);

// CheckLedgerTime for an absl::Time is in base/time.h; this one also checks
// the nanos field.
absl::Status CheckLedgerTime(absl::string_view what,
                             const google::protobuf::Timestamp& ts);

// Conversions between protobuf timestamps and absl::Time, used everywhere.
absl::Time ToTime(const google::protobuf::Timestamp& ts);
google::protobuf::Timestamp ToProto(absl::Time t);

}  // namespace storeledger

#endif  // STORELEDGER_CORE_POLICY_H_
