// The key layout of the "projections" column family (also in
// storage/FORMAT.md), encoded and parsed in this one place, as LevelDB's
// dbformat.h does for its internal keys:
//   s/<store>                 StoreRecord
//   k/<kind number>/<store>   ""   (stores by kind, for ApplyPolicy)
//   p/<store>\0<product>      ProductRecord
//   o/<order>                 OrderRecord       (order ids are ledger-wide)
//   O/<store>\0<order>        ""   (a store's orders)
//   w/<withdrawal>            WithdrawalRecord  (ledger-wide)
//   W/<store>\0<withdrawal>   ""   (a store's withdrawals)
//   m/<merchant>              MerchantRecord
// Snapshots share the column family under their own prefixes
// (replay/snapshots.h). Pure functions; thread-safe.
#ifndef STORELEDGER_REPLAY_PROJECTION_KEYS_H_
#define STORELEDGER_REPLAY_PROJECTION_KEYS_H_

#include <array>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "core/state.h"

namespace storeledger {

inline constexpr absl::string_view kStorePrefix = "s/";
inline constexpr absl::string_view kKindPrefix = "k/";
inline constexpr absl::string_view kProductPrefix = "p/";
inline constexpr absl::string_view kOrderPrefix = "o/";
inline constexpr absl::string_view kStoreOrderPrefix = "O/";
inline constexpr absl::string_view kWithdrawalPrefix = "w/";
inline constexpr absl::string_view kStoreWithdrawalPrefix = "W/";
inline constexpr absl::string_view kMerchantPrefix = "m/";
// Between the store and the id in the keys of a pair.
inline constexpr char kProjectionKeySeparator = '\0';
// Every record prefix above, in byte order.
inline constexpr std::array<absl::string_view, 8> kProjectionRecordPrefixes = {
    kStoreOrderPrefix, kStoreWithdrawalPrefix, kKindPrefix,  kMerchantPrefix,
    kOrderPrefix,      kProductPrefix,         kStorePrefix, kWithdrawalPrefix};

std::string StoreKey(absl::string_view store_id);
std::string StoreKindKey(StoreKind kind, absl::string_view store_id);
std::string ProductKey(absl::string_view store_id,
                       absl::string_view product_id);
std::string OrderKey(absl::string_view order_id);
std::string StoreOrderKey(absl::string_view store_id,
                          absl::string_view order_id);
std::string WithdrawalKey(absl::string_view withdrawal_id);
std::string StoreWithdrawalKey(absl::string_view store_id,
                               absl::string_view withdrawal_id);
std::string MerchantKey(absl::string_view merchant_id);
// The prefixes of the keys listed together: the stores of a kind, and a
// store's products, order index and withdrawal index entries.
std::string StoreKindPrefix(StoreKind kind);
std::string ProductsPrefix(absl::string_view store_id);
std::string StoreOrdersPrefix(absl::string_view store_id);
std::string StoreWithdrawalsPrefix(absl::string_view store_id);

// A projection key taken apart; its views point into the parsed key.
struct ParsedProjectionKey {
  enum class Type {
    kStore,
    kKind,
    kProduct,
    kOrder,
    kStoreOrder,
    kWithdrawal,
    kStoreWithdrawal,
    kMerchant,
  };
  Type type;
  // kStore, kKind, kProduct, kStoreOrder, kStoreWithdrawal.
  absl::string_view store_id;
  // The product, order, withdrawal or merchant id.
  absl::string_view id;
  // kKind: the kind number as written.
  int kind = 0;
};
// nullopt when `key` has none of the record prefixes or, for a pair or a
// kind entry, lacks its separator or kind number.
std::optional<ParsedProjectionKey> ParseProjectionKey(absl::string_view key);

}  // namespace storeledger

#endif  // STORELEDGER_REPLAY_PROJECTION_KEYS_H_
