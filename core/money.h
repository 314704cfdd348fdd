// Money is int64 fen. Arithmetic on it is checked: an overflow is reported,
// never wrapped.
#ifndef STORELEDGER_CORE_MONEY_H_
#define STORELEDGER_CORE_MONEY_H_

#include <cstdint>
#include <optional>

namespace storeledger {

inline std::optional<int64_t> CheckedAdd(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) return std::nullopt;
  return out;
}
inline std::optional<int64_t> CheckedSub(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_sub_overflow(a, b, &out)) return std::nullopt;
  return out;
}
inline std::optional<int64_t> CheckedMul(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace storeledger

#endif  // STORELEDGER_CORE_MONEY_H_
