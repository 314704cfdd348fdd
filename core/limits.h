// Every limit of the rules, named once; the byte and time limits every layer
// shares are in base/limits.h, included here. Tests hit each one at and past
// it.
#ifndef STORELEDGER_CORE_LIMITS_H_
#define STORELEDGER_CORE_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "base/limits.h"

namespace storeledger {

// R0: ids are 1..kIdBytesMax bytes of printable ASCII without spaces.
inline constexpr size_t kIdBytesMax = 64;
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
