// The flags and the printing of `diff`, shared by the embedded verb
// (cli/investigate_verbs.cc) and --server mode (cli/client.cc), so that both
// take the same flags, fail the same way and print the same bytes.
#ifndef STORELEDGER_CLI_DIFF_FLAGS_H_
#define STORELEDGER_CLI_DIFF_FLAGS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "cli/cli.h"
#include "replay/store_view.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

// `diff`'s flags, checked: two business times at one knowledge position
// (--from T1 --to T2 [--position N | --known-at T]), or two knowledge
// positions at one business time (--at T --from-position N1 --to-position
// N2).
struct DiffFlags {
  std::string store_id;
  AsOf before, after;
  // The sides differ by position (--at); else by business time, and both
  // sides take the position the caller resolves with SetKnowledge.
  bool by_position = false;
  static absl::StatusOr<DiffFlags> Parse(const CliContext& ctx);
  // --position N or --known-at T as the caller resolved it (nullopt: the
  // head), for both sides of a diff by business time; ignored with --at.
  void SetKnowledge(std::optional<uint64_t> position);
};

// Prints the diff (replay/read_views.h DiffStoreAt, or GetDiff's answer)
// as JSON, or fails with its status.
int PrintDiff(CliContext& ctx, const absl::StatusOr<v1::StoreDiff>& diff);

}  // namespace storeledger

#endif  // STORELEDGER_CLI_DIFF_FLAGS_H_
