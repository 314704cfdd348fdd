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
#include "base/status_macros.h"
#include "cli/cli.h"
#include "cli/diff_flags.h"
#include "core/decide.h"
#include "core/streams.h"
#include "google/protobuf/text_format.h"
#include "json/json.h"
#include "replay/read_views.h"
#include "replay/rebuild.h"
#include "replay/store_view.h"
#include "storage/merkle_store.h"

namespace storeledger {

int RebuildVerb(CliContext& ctx) {
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
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
  options.flush_every_events =
      flush_every->value_or(kRebuildFlushEventsDefault);
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
  if (absl::Status s = ctx.CheckFlags(); !s.ok()) {
    return ctx.Fail(s);
  }
  std::optional<std::string> command_id = ctx.flags.Get("command-id");
  if (!command_id || command_id->empty()) {
    return ctx.Fail(absl::InvalidArgumentError("--command-id is required"));
  }
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  absl::StatusOr<v1::Explanation> explanation =
      Explain((*ledger)->log(), (*ledger)->policy(), *command_id);
  if (!explanation.ok()) return ctx.Fail(explanation.status());
  *ctx.out << ToJson(*explanation) << "\n";
  return kExitOk;
}

absl::StatusOr<DiffFlags> DiffFlags::Parse(const CliContext& ctx) {
  RETURN_IF_ERROR(ctx.CheckFlags());
  DiffFlags flags;
  std::optional<std::string> store = ctx.flags.Get("store");
  if (!store) return absl::InvalidArgumentError("--store is required");
  flags.store_id = *store;
  ASSIGN_OR_RETURN(std::optional<absl::Time> from, ctx.flags.GetTime("from"));
  ASSIGN_OR_RETURN(std::optional<absl::Time> to, ctx.flags.GetTime("to"));
  ASSIGN_OR_RETURN(std::optional<absl::Time> at, ctx.flags.GetTime("at"));
  ASSIGN_OR_RETURN(std::optional<uint64_t> from_position,
                   ctx.flags.GetUint("from-position"));
  ASSIGN_OR_RETURN(std::optional<uint64_t> to_position,
                   ctx.flags.GetUint("to-position"));
  // Two business times at one knowledge position, or two knowledge
  // positions at one business time.
  flags.by_position = at.has_value();
  if (flags.by_position) {
    if (from.has_value() || to.has_value() || ctx.flags.Has("position") ||
        ctx.flags.Has("known-at") || !from_position.has_value() ||
        !to_position.has_value()) {
      return absl::InvalidArgumentError(
          "--at T takes --from-position N1 --to-position N2 (and no --from, "
          "--to, --position or --known-at)");
    }
    if (*to_position < *from_position) {
      return absl::InvalidArgumentError(
          "--to-position is before --from-position");
    }
    flags.before = AsOf{at, from_position};
    flags.after = AsOf{at, to_position};
  } else {
    if (!from.has_value() || !to.has_value() || from_position.has_value() ||
        to_position.has_value()) {
      return absl::InvalidArgumentError(
          "give --from T1 --to T2 (business times), or --at T with "
          "--from-position N1 --to-position N2");
    }
    if (*to < *from) return absl::InvalidArgumentError("--to is before --from");
    flags.before = AsOf{from, std::nullopt};
    flags.after = AsOf{to, std::nullopt};
  }
  return flags;
}

void DiffFlags::SetKnowledge(std::optional<uint64_t> position) {
  if (by_position) return;
  before.position = position;
  after.position = position;
}

int PrintDiff(CliContext& ctx, const absl::StatusOr<v1::StoreDiff>& diff) {
  if (!diff.ok()) return ctx.Fail(diff.status());
  *ctx.out << ToJson(*diff) << "\n";
  return kExitOk;
}

int DiffVerb(CliContext& ctx) {
  absl::StatusOr<DiffFlags> flags = DiffFlags::Parse(ctx);
  if (!flags.ok()) return ctx.Fail(flags.status());
  absl::StatusOr<std::unique_ptr<Ledger>> ledger = ctx.OpenLedger(true);
  if (!ledger.ok()) return ctx.Fail(ledger.status());
  const Ledger& l = **ledger;
  absl::StatusOr<std::optional<uint64_t>> position = ctx.KnowledgePosition(l);
  if (!position.ok()) return ctx.Fail(position.status());
  flags->SetKnowledge(*position);
  return PrintDiff(ctx, DiffStoreAt(
                            [&](const AsOf& as_of) {
                              return l.State(flags->store_id, as_of);
                            },
                            flags->before, flags->after));
}

}  // namespace storeledger
