// The flags of a storeledger program's command line (storeledger and
// storeledgerd share them): --name value or --name=value, boolean flags
// without a value, and positional arguments. Parse errors and unknown flags
// are kInvalidArgument naming the flag. Not thread-safe; read-only after Parse.
#ifndef STORELEDGER_BASE_FLAGS_H_
#define STORELEDGER_BASE_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace storeledger {

// The exit statuses of storeledger and storeledgerd: 0 success; 1 a check
// failed or an I/O / data error; 2 bad usage.
inline constexpr int kExitOk = 0;
inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitUsage = 2;

// Parsed command line: the verb, its flags (--name value or --name=value;
// boolean flags take no value) and positional arguments.
class Flags {
 public:
  // `boolean` names the flags that take no value.
  static absl::StatusOr<Flags> Parse(const std::vector<std::string>& args,
                                     const std::vector<std::string>& boolean);
  bool Has(absl::string_view name) const;
  std::optional<std::string> Get(absl::string_view name) const;
  std::string GetOr(absl::string_view name, absl::string_view fallback) const;
  absl::StatusOr<std::optional<uint64_t>> GetUint(absl::string_view name) const;
  // RFC 3339, or a bare date: midnight in zone() (base/time.h).
  absl::StatusOr<std::optional<absl::Time>> GetTime(
      absl::string_view name) const;
  // kInvalidArgument naming any flag not in `known` (the global flags --db,
  // --policy and --tz are always known).
  absl::Status CheckKnown(const std::vector<std::string>& known) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // The zone a bare date is midnight in. Default: UTC+08:00.
  void set_zone(absl::TimeZone zone) { zone_ = zone; }

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> positional_;
  absl::TimeZone zone_ = absl::FixedTimeZone(8 * 60 * 60);
};

}  // namespace storeledger

#endif  // STORELEDGER_BASE_FLAGS_H_
