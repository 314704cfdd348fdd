// The built-in policy calendar and the policy-file parser.
#include "core/policy.h"

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/limits.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace storeledger {
namespace {

// China time, in which the article states every instant.
absl::TimeZone ChinaTime() { return absl::FixedTimeZone(8 * 60 * 60); }

google::protobuf::Timestamp ChinaMidnight(int year, int month, int day) {
  return ToProto(absl::FromCivil(absl::CivilSecond(year, month, day, 0, 0, 0),
                                 ChinaTime()));
}

Policy MakeDefaultPolicy() {
  Policy policy;
  policy.set_version("builtin-2024-10-22");
  *policy.mutable_wechat_store_launch() = ChinaMidnight(2024, 8, 25);
  *policy.mutable_channels_no_new_products() = ChinaMidnight(2024, 9, 25);
  *policy.mutable_official_account_sales() = ChinaMidnight(2024, 9, 27);
  *policy.mutable_mini_upgrade_open() = ChinaMidnight(2024, 10, 21);
  *policy.mutable_channels_live_room_closed() = ChinaMidnight(2024, 10, 25);
  *policy.mutable_mini_evoucher_cutoff() = ChinaMidnight(2024, 11, 4);
  *policy.mutable_mini_physical_cutoff() = ChinaMidnight(2024, 11, 18);
  // The article: personal WeChat Stores are planned, not yet open.
  policy.set_personal_wechat_store(false);
  policy.set_default_category_deposit_fen(50000);
  return policy;
}

absl::Status CheckInstant(const char* field, bool present,
                          const google::protobuf::Timestamp& ts) {
  if (!present) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy.", field, " must be set"));
  }
  if (ts.seconds() < kTimeSecondsMin || ts.seconds() > kTimeSecondsMax ||
      ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(
        absl::StrCat("policy.", field, " is not a valid timestamp (seconds ",
                     ts.seconds(), ", nanos ", ts.nanos(), ")"));
  }
  return absl::OkStatus();
}

bool IsIdByte(char ch) { return ch >= 0x21 && ch <= 0x7E; }

class CollectErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    errors_.push_back(
        absl::StrCat("line ", line + 1, " column ", column + 1, ": ", message));
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  std::vector<std::string> errors_;
};

}  // namespace

const Policy& DefaultPolicy() {
  static const Policy* const policy = new Policy(MakeDefaultPolicy());
  return *policy;
}

absl::Status ValidatePolicy(const Policy& policy) {
  if (policy.version().empty()) {
    return absl::InvalidArgumentError("policy.version must not be empty");
  }
  struct Instant {
    const char* field;
    bool present;
    const google::protobuf::Timestamp& ts;
  };
  const Instant instants[] = {
      {"wechat_store_launch", policy.has_wechat_store_launch(),
       policy.wechat_store_launch()},
      {"channels_no_new_products", policy.has_channels_no_new_products(),
       policy.channels_no_new_products()},
      {"official_account_sales", policy.has_official_account_sales(),
       policy.official_account_sales()},
      {"mini_upgrade_open", policy.has_mini_upgrade_open(),
       policy.mini_upgrade_open()},
      {"channels_live_room_closed", policy.has_channels_live_room_closed(),
       policy.channels_live_room_closed()},
      {"mini_evoucher_cutoff", policy.has_mini_evoucher_cutoff(),
       policy.mini_evoucher_cutoff()},
      {"mini_physical_cutoff", policy.has_mini_physical_cutoff(),
       policy.mini_physical_cutoff()},
  };
  for (const Instant& instant : instants) {
    absl::Status status =
        CheckInstant(instant.field, instant.present, instant.ts);
    if (!status.ok()) return status;
  }
  if (policy.default_category_deposit_fen() <= 0 ||
      policy.default_category_deposit_fen() > kAmountFenMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy.default_category_deposit_fen must be in 1..", kAmountFenMax,
        ", got ", policy.default_category_deposit_fen()));
  }
  std::set<std::string> seen;
  for (int i = 0; i < policy.category_deposits_size(); ++i) {
    const v1::CategoryDeposit& deposit = policy.category_deposits(i);
    const std::string field = absl::StrCat("policy.category_deposits[", i, "]");
    const std::string& id = deposit.category_id();
    bool id_ok = !id.empty() && id.size() <= kIdBytesMax;
    for (char ch : id) id_ok = id_ok && IsIdByte(ch);
    if (!id_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".category_id must be 1..", kIdBytesMax,
                       " bytes of printable ASCII, got \"", id, "\""));
    }
    if (!seen.insert(id).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".category_id \"", id, "\" appears more than once"));
    }
    if (deposit.amount_fen() <= 0 || deposit.amount_fen() > kAmountFenMax) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".amount_fen must be in 1..", kAmountFenMax,
                       ", got ", deposit.amount_fen()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Policy> ParsePolicyText(absl::string_view text) {
  Policy policy;
  CollectErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), &policy)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "policy text does not parse: ", absl::StrJoin(errors.errors(), "; ")));
  }
  absl::Status status = ValidatePolicy(policy);
  if (!status.ok()) return status;
  return policy;
}

int64_t RequiredDepositFen(const Policy& policy,
                           absl::string_view category_id) {
  for (const v1::CategoryDeposit& deposit : policy.category_deposits()) {
    if (deposit.category_id() == category_id) return deposit.amount_fen();
  }
  return policy.default_category_deposit_fen();
}

absl::Status CheckLedgerTime(absl::string_view what,
                             const google::protobuf::Timestamp& ts) {
  if (ts.nanos() < 0 || ts.nanos() > 999'999'999) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has nanos ", ts.nanos(), "; 0 to 999999999"));
  }
  return CheckLedgerTime(what, ToTime(ts));
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t seconds = absl::ToUnixSeconds(t);  // rounds down
  ts.set_seconds(seconds);
  ts.set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return ts;
}

}  // namespace storeledger
