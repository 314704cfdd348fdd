// Stream naming. A store's events live in "store-<store id>", a merchant's in
// "merchant-<merchant id>", refused commands in "rejections".
#ifndef STORELEDGER_CORE_STREAMS_H_
#define STORELEDGER_CORE_STREAMS_H_

#include <string>
#include <string_view>

namespace storeledger {

inline constexpr std::string_view kRejectionsStream = "rejections";

inline std::string StoreStream(std::string_view store_id) {
  return std::string("store-").append(store_id);
}
inline std::string MerchantStream(std::string_view merchant_id) {
  return std::string("merchant-").append(merchant_id);
}

}  // namespace storeledger

#endif  // STORELEDGER_CORE_STREAMS_H_
