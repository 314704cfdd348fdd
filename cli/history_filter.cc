#include "cli/history_filter.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/policy.h"
#include "replay/lookup.h"

namespace storeledger {

namespace {

// --type: comma-separated event type names ("OrderPaid,OrderRefunded"),
// checked against the Event oneof so that a typo is an error, not silence.
absl::StatusOr<std::set<std::string>> ParseEventTypes(absl::string_view list) {
  std::set<std::string> known;
  const google::protobuf::Descriptor* event = v1::Event::descriptor();
  for (int i = 0; i < event->field_count(); ++i) {
    known.insert(event->field(i)->message_type()->name());
  }
  std::set<std::string> types;
  for (absl::string_view name : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (known.count(std::string(name)) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--type: unknown event type '", name,
                       "'; one of: ", absl::StrJoin(known, ", ")));
    }
    types.insert(std::string(name));
  }
  if (types.empty()) {
    return absl::InvalidArgumentError("--type needs at least one event type");
  }
  return types;
}

}  // namespace

absl::StatusOr<HistoryFilter> HistoryFilter::FromFlags(const Flags& flags) {
  HistoryFilter filter;
  filter.order_id = flags.Get("order");
  filter.product_id = flags.Get("product");
  filter.withdrawal_id = flags.Get("withdrawal");
  if (std::optional<std::string> type_list = flags.Get("type")) {
    absl::StatusOr<std::set<std::string>> types = ParseEventTypes(*type_list);
    if (!types.ok()) return types.status();
    filter.event_types = *std::move(types);
  }
  absl::StatusOr<std::optional<absl::Time>> from_time = flags.GetTime("from");
  if (!from_time.ok()) return from_time.status();
  filter.from_time = *from_time;
  absl::StatusOr<std::optional<absl::Time>> to_time = flags.GetTime("to");
  if (!to_time.ok()) return to_time.status();
  filter.to_time = *to_time;
  if (filter.from_time.has_value() && filter.to_time.has_value() &&
      *filter.to_time < *filter.from_time) {
    return absl::InvalidArgumentError("--to is before --from");
  }
  absl::StatusOr<std::optional<uint64_t>> after =
      flags.GetUint("from-position");
  if (!after.ok()) return after.status();
  filter.after_position = *after;
  return filter;
}

bool HistoryFilter::Selects(const v1::Envelope& envelope) const {
  if (envelope.position() <= after_position.value_or(0)) return false;
  const absl::Time at = ToTime(envelope.occurred_at());
  if (from_time.has_value() && at < *from_time) return false;
  if (to_time.has_value() && at > *to_time) return false;
  const v1::Event& event = envelope.payload();
  if (order_id && OrderIdOf(event) != *order_id) return false;
  if (product_id && !NamesProduct(event, *product_id)) return false;
  if (withdrawal_id && WithdrawalIdOf(event) != *withdrawal_id) return false;
  if (event.has_command_rejected()) return true;  // --type: facts only
  return !event_types.has_value() ||
         event_types->count(envelope.event_type()) > 0;
}

// "order o1" / "withdrawal w1" / "product p1": what --store was asked about.
static std::string AskedAbout(const HistoryFilter& filter) {
  if (filter.order_id) return absl::StrCat("order ", *filter.order_id);
  if (filter.withdrawal_id) {
    return absl::StrCat("withdrawal ", *filter.withdrawal_id);
  }
  return absl::StrCat("product ", filter.product_id.value_or(""));
}

absl::StatusOr<std::vector<std::string>> HistoryStores(
    const HistoryFilter& filter, const std::optional<std::string>& store,
    const std::vector<std::string>& owners) {
  if (!filter.by_id()) {
    if (!store.has_value()) {
      return absl::InvalidArgumentError(
          "--store is required unless --order, --withdrawal or --product "
          "names what to find");
    }
    return std::vector<std::string>{*store};
  }
  if (store.has_value() && !owners.empty() &&
      std::find(owners.begin(), owners.end(), *store) == owners.end()) {
    // An order or withdrawal lives in one store (R13); a product id is a
    // store's own, so several stores may have one of that id.
    // A common product id is in thousands of stores: name the first few.
    const bool product = !filter.order_id && !filter.withdrawal_id;
    constexpr size_t kOwnersNamed = 10;
    const size_t named = std::min(owners.size(), kOwnersNamed);
    return absl::FailedPreconditionError(absl::StrCat(
        AskedAbout(filter), " is not in store ", *store,
        product ? ": stores with a product of that id: " : ": it belongs to ",
        absl::StrJoin(owners.begin(), owners.begin() + named, ", "),
        owners.size() > named
            ? absl::StrCat(" and ", owners.size() - named,
                           " more (`storeledger find ",
                           filter.product_id.value_or(""), "` lists them)")
            : "",
        product ? " (product ids are per store)"
                : " (R13: each lives in one store)"));
  }
  if (store.has_value()) return std::vector<std::string>{*store};
  if (owners.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no store has ", AskedAbout(filter),
        " (refused commands about it: add --store ID --include-rejections)"));
  }
  return owners;
}

void SayHistoryFilteredOut(const CliContext& ctx, absl::string_view stores) {
  ctx.SayNothingMatched(absl::StrCat(
      "store ", stores, " has a history, but the filters select none of it"));
}

absl::Status HistoryNotFound(absl::string_view store_id,
                             bool include_rejections) {
  return absl::NotFoundError(absl::StrCat(
      "store ", store_id, " has no events",
      include_rejections ? " and no refused commands" : "", " in this ledger"));
}

}  // namespace storeledger
