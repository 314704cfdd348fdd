#include "replay/projection_keys.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace storeledger {
namespace {

std::string Pair(absl::string_view prefix, absl::string_view store_id,
                 absl::string_view id) {
  return absl::StrCat(prefix, store_id,
                      absl::string_view(&kProjectionKeySeparator, 1), id);
}

}  // namespace

std::string StoreKey(absl::string_view store_id) {
  return absl::StrCat(kStorePrefix, store_id);
}
std::string StoreKindKey(StoreKind kind, absl::string_view store_id) {
  return absl::StrCat(kKindPrefix, static_cast<int>(kind), "/", store_id);
}
std::string ProductKey(absl::string_view store_id,
                       absl::string_view product_id) {
  return Pair(kProductPrefix, store_id, product_id);
}
std::string OrderKey(absl::string_view order_id) {
  return absl::StrCat(kOrderPrefix, order_id);
}
std::string StoreOrderKey(absl::string_view store_id,
                          absl::string_view order_id) {
  return Pair(kStoreOrderPrefix, store_id, order_id);
}
std::string WithdrawalKey(absl::string_view withdrawal_id) {
  return absl::StrCat(kWithdrawalPrefix, withdrawal_id);
}
std::string StoreWithdrawalKey(absl::string_view store_id,
                               absl::string_view withdrawal_id) {
  return Pair(kStoreWithdrawalPrefix, store_id, withdrawal_id);
}
std::string MerchantKey(absl::string_view merchant_id) {
  return absl::StrCat(kMerchantPrefix, merchant_id);
}
std::string StoreKindPrefix(StoreKind kind) { return StoreKindKey(kind, ""); }
std::string ProductsPrefix(absl::string_view store_id) {
  return ProductKey(store_id, "");
}
std::string StoreOrdersPrefix(absl::string_view store_id) {
  return StoreOrderKey(store_id, "");
}
std::string StoreWithdrawalsPrefix(absl::string_view store_id) {
  return StoreWithdrawalKey(store_id, "");
}

std::optional<ParsedProjectionKey> ParseProjectionKey(absl::string_view key) {
  using Type = ParsedProjectionKey::Type;
  ParsedProjectionKey parsed;
  // The keys of one id after the prefix.
  for (const auto& [prefix, type] :
       {std::pair{kStorePrefix, Type::kStore},
        std::pair{kOrderPrefix, Type::kOrder},
        std::pair{kWithdrawalPrefix, Type::kWithdrawal},
        std::pair{kMerchantPrefix, Type::kMerchant}}) {
    if (!absl::StartsWith(key, prefix)) continue;
    parsed.type = type;
    const absl::string_view rest = key.substr(prefix.size());
    (type == Type::kStore ? parsed.store_id : parsed.id) = rest;
    return parsed;
  }
  // The pairs: <store>\0<id>.
  for (const auto& [prefix, type] :
       {std::pair{kProductPrefix, Type::kProduct},
        std::pair{kStoreOrderPrefix, Type::kStoreOrder},
        std::pair{kStoreWithdrawalPrefix, Type::kStoreWithdrawal}}) {
    if (!absl::StartsWith(key, prefix)) continue;
    const absl::string_view rest = key.substr(prefix.size());
    const size_t at = rest.find(kProjectionKeySeparator);
    if (at == absl::string_view::npos) return std::nullopt;
    parsed.type = type;
    parsed.store_id = rest.substr(0, at);
    parsed.id = rest.substr(at + 1);
    return parsed;
  }
  // k/<kind number>/<store>.
  if (absl::StartsWith(key, kKindPrefix)) {
    const absl::string_view rest = key.substr(kKindPrefix.size());
    const size_t slash = rest.find('/');
    if (slash == absl::string_view::npos ||
        !absl::SimpleAtoi(rest.substr(0, slash), &parsed.kind)) {
      return std::nullopt;
    }
    parsed.type = Type::kKind;
    parsed.store_id = rest.substr(slash + 1);
    return parsed;
  }
  return std::nullopt;
}

}  // namespace storeledger
