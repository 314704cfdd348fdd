// Stream naming. A store's events live in "store-<store id>", a merchant's in
// "merchant-<merchant id>", refused commands in "rejections".
#ifndef STORELEDGER_CORE_STREAMS_H_
#define STORELEDGER_CORE_STREAMS_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace storeledger {

inline constexpr absl::string_view kRejectionsStream = "rejections";

inline std::string StoreStream(absl::string_view store_id) {
  return absl::StrCat("store-", store_id);
}
inline std::string MerchantStream(absl::string_view merchant_id) {
  return absl::StrCat("merchant-", merchant_id);
}

}  // namespace storeledger

#endif  // STORELEDGER_CORE_STREAMS_H_
