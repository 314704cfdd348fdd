// The investigation verbs: rebuild [--shadow], explain --command-id, diff.
// (state --as-of/--position, history and tail are in read_verbs.cc.)
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/cli.h"
#include "core/decide.h"
#include "core/status_macros.h"
#include "core/streams.h"
#include "google/protobuf/text_format.h"
#include "ledger/json.h"
#include "replay/read_views.h"
#include "storage/merkle_store.h"
#include "replay/rebuild.h"
#include "replay/store_view.h"

namespace storeledger {

int RebuildVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"shadow", "no-progress",
                                             "flush-every"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  absl::StatusOr<std::optional<uint64_t>> flush_every =
      ctx.flags.GetUint("flush-every");
  if (!flush_every.ok()) return ctx.Fail(flush_every.status());
  if (flush_every->has_value() && **flush_every == 0) {
    return ctx.Fail(absl::InvalidArgumentError("--flush-every must be >= 1"));
  }
  // Rebuild writes (the shadow space, and the repairs): it takes the
  // database's lock, so no writer runs beside it.
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(false);
  if (!ledger.ok()) return ctx.Fail(ledger.status());

  RebuildOptions options;
  options.shadow_only = ctx.flags.Has("shadow");
  options.flush_every_events = flush_every->value_or(kRebuildFlushEventsDefault);
  const bool progress = !ctx.flags.Has("no-progress") &&
                        ctx.err == &std::cerr && isatty(STDERR_FILENO);
  if (progress) {
    options.progress = [&ctx](uint64_t done, uint64_t total) {
      *ctx.err << absl::StrFormat("\rrebuild: %d/%d events (%.0f%%)", done,
                                  total,
                                  total == 0 ? 100.0 : 100.0 * done / total)
               << std::flush;
    };
  }
  options.on_difference = [&ctx](const v1::ProjectionDifference& difference) {
    *ctx.out << ToJson(difference) << "\n";
  };
  absl::StatusOr<v1::RebuildSummary> summary =
      Rebuild((*ledger)->mutable_log(), options);
  if (progress) *ctx.err << "\r\033[K" << std::flush;
  if (!summary.ok()) return ctx.Fail(summary.status());
  *ctx.out << ToJson(*summary) << "\n";
  // The Merkle tree is derived from the log too: checked under --shadow,
  // rewritten otherwise.
  if (options.shadow_only) {
    absl::StatusOr<MerkleCheck> tree = CheckMerkleTree((*ledger)->log());
    if (!tree.ok()) return ctx.Fail(tree.status());
    for (const std::string& problem : tree->problems) {
      *ctx.err << "storeledger rebuild: merkle tree: " << problem << "\n";
    }
    if (tree->problems_total > 0) return kExitCheckFailed;
  } else if (absl::Status tree = RebuildMerkleTree(*(*ledger)->mutable_log());
             !tree.ok()) {
    return ctx.Fail(tree);
  }
  if (options.shadow_only && summary->differences() > 0) {
    *ctx.err << "storeledger rebuild: " << summary->differences()
             << " projection keys differ from a rebuild from the log; run "
                "`storeledger rebuild` to repair them\n";
    return kExitCheckFailed;
  }
  return kExitOk;
}

int ExplainVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"command-id"}); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> command_id = ctx.flags.Get("command-id");
  if (!command_id || command_id->empty()) {
    return ctx.Fail(absl::InvalidArgumentError("--command-id is required"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::Explanation> explanation = Explain((*ledger)->log(), (*ledger)->policy(), *command_id);
  if (!explanation.ok()) return ctx.Fail(explanation.status());
  *ctx.out << ToJson(*explanation) << "\n";
  return kExitOk;
}

int DiffVerb(CliContext& ctx) {
  if (absl::Status s = ctx.flags.CheckKnown({"store", "from", "to", "position"});
      !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return ctx.Fail(absl::InvalidArgumentError("--store is required"));
  absl::StatusOr<std::optional<absl::Time>> from = ctx.flags.GetTime("from");
  if (!from.ok()) return ctx.Fail(from.status());
  absl::StatusOr<std::optional<absl::Time>> to = ctx.flags.GetTime("to");
  if (!to.ok()) return ctx.Fail(to.status());
  if (!from->has_value() || !to->has_value()) {
    return ctx.Fail(absl::InvalidArgumentError(
        "--from T1 and --to T2 are required (RFC 3339 business times)"));
  }
  if (**to < **from) {
    return ctx.Fail(absl::InvalidArgumentError("--to is before --from"));
  }
  absl::StatusOr<std::optional<uint64_t>> position = ctx.flags.GetUint("position");
  if (!position.ok()) return ctx.Fail(position.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const Ledger& l = **ledger;

  AsOf before_as_of{**from, *position};
  absl::StatusOr<v1::StoreState> before = l.State(*store, before_as_of);
  std::optional<v1::StoreState> before_state;
  if (before.ok()) {
    before_state = *std::move(before);
  } else if (!absl::IsNotFound(before.status())) {
    return ctx.Fail(before.status());
  }
  AsOf after_as_of{**to, *position};
  absl::StatusOr<v1::StoreState> after = l.State(*store, after_as_of);
  if (!after.ok()) return ctx.Fail(after.status());
  v1::StoreDiff diff = DiffStoreStates(before_state, *after);
  *diff.mutable_from() = ToProto(**from);
  *diff.mutable_to() = ToProto(**to);
  *ctx.out << ToJson(diff) << "\n";
  return kExitOk;
}

}  // namespace storeledger
