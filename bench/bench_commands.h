// What more than one benchmark builds: their openStore and addProduct
// commands, the percentile they report, and where the storeledgerd they
// start is (beside the running benchmark).
#ifndef STORELEDGER_BENCH_BENCH_COMMANDS_H_
#define STORELEDGER_BENCH_BENCH_COMMANDS_H_

#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// openStore of `store` (a Mini Store of an enterprise) by `merchant`,
// command id `store`, occurred 2024-06-01T10:00:00+08:00.
inline v1::Command BenchOpenStore(const std::string& store,
                                  const std::string& merchant) {
  v1::Command command;
  command.set_command_id(store);
  command.mutable_occurred_at()->set_seconds(1717207200);
  v1::OpenStore* body = command.mutable_open_store();
  body->set_store_id(store);
  body->set_merchant_id(merchant);
  body->set_kind(v1::MINI_STORE);
  body->set_subject(v1::ENTERPRISE);
  return command;
}

// The value below which a fraction `p` of `values` lies (0 when empty).
inline double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<size_t>(p * values.size()))];
}

// addProduct of product `p<i>` (physical, own, category "c", 100 fen) to
// `store`, command id `<store>-<i>`, occurred 2024-06-02T10:00:00+08:00.
inline v1::Command BenchAddProduct(const std::string& store, int i) {
  v1::Command command;
  command.set_command_id(absl::StrCat(store, "-", i));
  command.mutable_occurred_at()->set_seconds(1717293600);
  v1::AddProduct* body = command.mutable_add_product();
  body->set_store_id(store);
  body->set_product_id(absl::StrCat("p", i));
  body->set_kind(v1::PHYSICAL);
  body->set_origin(v1::OWN);
  body->set_category_id("c");
  body->set_price_fen(100);
  return command;
}

// The storeledgerd beside this program (build/bin/); "storeledgerd" (found
// on PATH) when /proc/self/exe cannot be read.
inline std::string StoreledgerdPath() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n <= 0) return "storeledgerd";
  std::string self(path, static_cast<size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "storeledgerd";
}

}  // namespace storeledger

#endif  // STORELEDGER_BENCH_BENCH_COMMANDS_H_
