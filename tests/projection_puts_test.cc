// ProjectionPuts (replay/projection_store.h): the projection writes of an
// overlay's changed records, and, given the records that existed before
// it, without the index entries those already have.
#include <map>
#include <string>

#include "core/state.h"
#include "gtest/gtest.h"
#include "replay/projection_keys.h"
#include "replay/projection_store.h"

namespace storeledger {
namespace {

StoreRecord Store(const std::string& id) {
  StoreRecord store;
  store.set_store_id(id);
  store.set_kind(v1::MINI_STORE);
  return store;
}

OrderRecord Order(const std::string& store_id, const std::string& id,
                  int64_t total_fen) {
  OrderRecord order;
  order.set_store_id(store_id);
  order.set_order_id(id);
  order.set_total_fen(total_fen);
  return order;
}

WithdrawalRecord Withdrawal(const std::string& store_id,
                            const std::string& id) {
  WithdrawalRecord withdrawal;
  withdrawal.set_store_id(store_id);
  withdrawal.set_withdrawal_id(id);
  return withdrawal;
}

std::map<std::string, std::string> AsMap(const ProjectionPutList& puts) {
  std::map<std::string, std::string> map;
  for (const auto& [key, value] : puts) {
    EXPECT_TRUE(map.emplace(key, value).second) << "put twice: " << key;
  }
  return map;
}

TEST(ProjectionPutsTest, LeavesOutOnlyTheIndexEntriesOfRecordsThatExisted) {
  // Before: store s1 with order o1.
  StateOverlay before(&EmptyState());
  before.PutStore(Store("s1"));
  before.PutOrder(Order("s1", "o1", 100));
  // The changes: s1 and o1 changed, and a new store, order and withdrawal.
  StateOverlay changes(&before);
  StoreRecord s1 = Store("s1");
  s1.set_product_count(3);
  changes.PutStore(s1);
  changes.PutOrder(Order("s1", "o1", 250));
  changes.PutStore(Store("s2"));
  changes.PutOrder(Order("s2", "o2", 70));
  changes.PutWithdrawal(Withdrawal("s2", "w2"));

  const std::map<std::string, std::string> all = AsMap(ProjectionPuts(changes));
  const std::map<std::string, std::string> only_new =
      AsMap(ProjectionPuts(changes, &before));

  // Every changed record is written either way, with the same bytes.
  for (const std::string& key : {StoreKey("s1"), StoreKey("s2"), OrderKey("o1"),
                                 OrderKey("o2"), WithdrawalKey("w2")}) {
    ASSERT_TRUE(all.contains(key)) << key;
    ASSERT_TRUE(only_new.contains(key)) << key;
    EXPECT_EQ(all.at(key), only_new.at(key)) << key;
  }
  // The new records' index entries are written either way...
  for (const std::string& key :
       {StoreKindKey(v1::MINI_STORE, "s2"), StoreOrderKey("s2", "o2"),
        StoreWithdrawalKey("s2", "w2")}) {
    EXPECT_TRUE(all.contains(key)) << key;
    EXPECT_TRUE(only_new.contains(key)) << key;
  }
  // ...the existing records' only without `existing`.
  for (const std::string& key :
       {StoreKindKey(v1::MINI_STORE, "s1"), StoreOrderKey("s1", "o1")}) {
    EXPECT_TRUE(all.contains(key)) << key;
    EXPECT_FALSE(only_new.contains(key)) << key;
  }
  EXPECT_EQ(all.size(), only_new.size() + 2);
}

}  // namespace
}  // namespace storeledger
