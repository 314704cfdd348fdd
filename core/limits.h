// Every limit of the rules, named once; the byte and time limits every layer
// shares are in base/limits.h, included here. Tests hit each one at and past
// it.
#ifndef STORELEDGER_CORE_LIMITS_H_
#define STORELEDGER_CORE_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "base/limits.h"

namespace storeledger {

// R0: ids are 1..kIdBytesMax bytes of printable ASCII without spaces.
inline constexpr size_t kIdBytesMax = 64;
// What keeps `id` from being a valid id, the first problem found; the
// callers (Decide's shape checks, the ledger's commandId check) word it.
struct IdCheck {
  enum Problem { kValid, kEmpty, kTooLong, kBadByte };
  Problem problem = kValid;
  size_t bad_byte_offset = 0;  // kBadByte: the first byte not in 0x21..0x7E
};
inline IdCheck CheckIdBytes(absl::string_view id) {
  if (id.empty()) return {IdCheck::kEmpty};
  if (id.size() > kIdBytesMax) return {IdCheck::kTooLong};
  for (size_t i = 0; i < id.size(); ++i) {
    const unsigned char ch = static_cast<unsigned char>(id[i]);
    if (ch < 0x21 || ch > 0x7E) return {IdCheck::kBadByte, i};
  }
  return {};
}
// R10: lines in one order.
inline constexpr size_t kOrderLinesMax = 100;
// R0: any single amount (price, payment, deposit, withdrawal) and any
// quantity. Chosen so that kOrderLinesMax * quantity * unit price cannot
// overflow int64 before the overflow check sees it, and so that balances of
// 10^9 events of maximal amounts still fit: 10^15 fen = 10^13 CNY.
inline constexpr int64_t kAmountFenMax = 1'000'000'000'000'000;  // 10^15
inline constexpr int64_t kQuantityMax = 1'000'000;
// Events one command may produce (ApplyPolicy / SyncProducts over big stores
// are the ones that approach it). Past it the command is rejected (R0).
inline constexpr size_t kEventsPerCommandMax = 100'000;
// Products one store may hold (bounds R9 and R6 work per store).
inline constexpr size_t kProductsPerStoreMax = 50'000;

}  // namespace storeledger

#endif  // STORELEDGER_CORE_LIMITS_H_
