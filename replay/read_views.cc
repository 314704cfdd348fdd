#include "replay/read_views.h"

#include <algorithm>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "core/streams.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/time_util.h"
#include "replay/finance.h"
#include "replay/projection_store.h"
#include "replay/store_view.h"

namespace storeledger {
namespace {

constexpr absl::string_view kStoreStreamPrefix = "store-";

// --------------------------------------------------------------------- diff

// Text of one field of a message (repeated fields joined), for comparing
// views field by field without naming every field twice.
std::string FieldText(const google::protobuf::Message& message,
                      const google::protobuf::FieldDescriptor* field) {
  std::string out;
  if (field->is_repeated()) {
    const int size = message.GetReflection()->FieldSize(message, field);
    for (int i = 0; i < size; ++i) {
      std::string one;
      google::protobuf::TextFormat::PrintFieldValueToString(message, field, i,
                                                            &one);
      absl::StrAppend(&out, one, ";");
    }
    return out;
  }
  google::protobuf::TextFormat::PrintFieldValueToString(message, field, -1,
                                                        &out);
  return out;
}

// lowerCamel names of the fields whose values differ.
std::vector<std::string> ChangedFields(const google::protobuf::Message& before,
                                       const google::protobuf::Message& after) {
  std::vector<std::string> fields;
  const google::protobuf::Descriptor* descriptor = before.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = descriptor->field(i);
    if (FieldText(before, field) != FieldText(after, field)) {
      fields.push_back(field->json_name());
    }
  }
  return fields;
}

// Adds a Change for every id in `before` or `after` that differs. `Change`
// is ProductChange, OrderChange or WithdrawalChange.
template <typename Change, typename View, typename Id, typename Add,
          typename Removed>
void DiffById(const google::protobuf::RepeatedPtrField<View>& before,
              const google::protobuf::RepeatedPtrField<View>& after, Id id,
              Add add, Removed removed) {
  std::map<std::string, const View*> old_by_id;
  for (const View& view : before) old_by_id[id(view)] = &view;
  for (const View& view : after) {
    auto it = old_by_id.find(id(view));
    Change change;
    if (it == old_by_id.end()) {
      change.set_change(v1::ADDED);
    } else {
      std::vector<std::string> fields = ChangedFields(*it->second, view);
      if (fields.empty()) continue;
      change.set_change(removed(*it->second, view) ? v1::REMOVED : v1::CHANGED);
      *change.mutable_fields() = {fields.begin(), fields.end()};
      *change.mutable_before() = *it->second;
    }
    *change.mutable_after() = view;
    add(id(view), std::move(change));
  }
}

v1::Balances Delta(const v1::Balances& before, const v1::Balances& after) {
  v1::Balances delta;
  delta.set_pending_fen(after.pending_fen() - before.pending_fen());
  delta.set_available_fen(after.available_fen() - before.available_fen());
  delta.set_withdrawing_fen(after.withdrawing_fen() - before.withdrawing_fen());
  delta.set_paid_out_fen(after.paid_out_fen() - before.paid_out_fen());
  delta.set_deposit_fen(after.deposit_fen() - before.deposit_fen());
  return delta;
}

}  // namespace

// The stores a recorded command touched: the store streams it appended to,
// or, for a refusal, the stores it named. In first-seen order.
std::vector<std::string> TouchedStores(
    const std::vector<v1::Envelope>& events) {
  std::vector<std::string> ids;
  auto add = [&ids](const std::string& id) {
    if (id.empty()) return;
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  for (const v1::Envelope& envelope : events) {
    if (envelope.payload().has_command_rejected()) {
      for (const std::string& id :
           envelope.payload().command_rejected().store_ids()) {
        add(id);
      }
    } else if (absl::StartsWith(envelope.stream_id(), kStoreStreamPrefix)) {
      add(envelope.stream_id().substr(kStoreStreamPrefix.size()));
    }
  }
  return ids;
}

absl::StatusOr<v1::Explanation> Explain(const EventLog& log,
                                        const Policy& policy,
                                        absl::string_view command_id) {
  ASSIGN_OR_RETURN(std::optional<v1::StoredOutcome> stored,
                   log.GetOutcome(command_id));
  if (!stored.has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "no outcome is recorded for command id ", command_id,
        " (INVALID lines and idempotency conflicts are not recorded)"));
  }
  v1::Explanation out;
  out.set_command_id(std::string(command_id));
  *out.mutable_outcome() = stored->result();
  const uint64_t first = stored->result().first_position();
  const uint64_t last = stored->result().last_position();
  if (first == 0) return out;  // accepted with nothing to append
  std::vector<v1::Envelope> events;
  for (uint64_t position = first; position <= last; ++position) {
    ASSIGN_OR_RETURN(v1::Envelope envelope, log.Read(position));
    if (envelope.command_id() != command_id) {
      return absl::DataLossError(absl::StrCat(
          "outcome of ", command_id, " names position ", position,
          ", which holds an event of command ", envelope.command_id()));
    }
    events.push_back(envelope);
    *out.add_events() = std::move(envelope);
  }
  // The state the rules judged: everything known before the command's first
  // position, with R6 cutoffs taken at the command's business time.
  out.set_before_position(first - 1);
  const absl::Time judged_at = ToTime(events.front().occurred_at());
  AsOf as_of;
  as_of.position = first - 1;
  for (const std::string& store_id : TouchedStores(events)) {
    absl::StatusOr<v1::StoreState> state =
        FoldStoreState(log, store_id, as_of, judged_at, policy);
    if (absl::IsNotFound(state.status())) {
      out.add_stores_not_yet_open(store_id);
      continue;
    }
    RETURN_IF_ERROR(state.status());
    *out.add_stores_before() = *std::move(state);
  }
  return out;
}

absl::StatusOr<v1::StoreDiff> DiffStoreAt(
    const std::function<absl::StatusOr<v1::StoreState>(const AsOf&)>& state,
    const AsOf& before, const AsOf& after) {
  absl::StatusOr<v1::StoreState> before_state = state(before);
  std::optional<v1::StoreState> existed;
  if (before_state.ok()) {
    existed = *std::move(before_state);
  } else if (!absl::IsNotFound(before_state.status())) {
    return before_state.status();
  }
  ASSIGN_OR_RETURN(v1::StoreState after_state, state(after));
  v1::StoreDiff diff = DiffStoreStates(existed, after_state);
  if (before.business_time.has_value()) {
    *diff.mutable_from() = ToProto(*before.business_time);
  }
  if (after.business_time.has_value()) {
    *diff.mutable_to() = ToProto(*after.business_time);
  }
  diff.set_from_position(before.position.value_or(0));
  diff.set_to_position(after.position.value_or(0));
  return diff;
}

v1::StoreDiff DiffStoreStates(const std::optional<v1::StoreState>& before_state,
                              const v1::StoreState& after) {
  const v1::StoreState before = before_state.value_or(v1::StoreState());
  v1::StoreDiff diff;
  diff.set_store_id(after.store_id());
  diff.set_from_version(before.version());
  diff.set_to_version(after.version());
  diff.set_store_existed_before(before_state.has_value());
  diff.set_status_before(before.status());
  diff.set_status_after(after.status());
  // Store-level fields: everything but the lists diffed below.
  v1::StoreState before_top = before, after_top = after;
  for (v1::StoreState* top : {&before_top, &after_top}) {
    top->clear_products();
    top->clear_orders();
    top->clear_withdrawals();
    top->clear_balances();
    top->clear_version();
    // Map order is not defined in reflection; compare maps as sorted maps.
    top->clear_deposit_fen_by_category();
  }
  std::vector<std::string> fields = ChangedFields(before_top, after_top);
  const std::map<std::string, int64_t> deposits_before(
      before.deposit_fen_by_category().begin(),
      before.deposit_fen_by_category().end());
  const std::map<std::string, int64_t> deposits_after(
      after.deposit_fen_by_category().begin(),
      after.deposit_fen_by_category().end());
  if (deposits_before != deposits_after) {
    fields.push_back("depositFenByCategory");
  }
  *diff.mutable_store_fields() = {fields.begin(), fields.end()};

  DiffById<v1::ProductChange>(
      before.products(), after.products(),
      [](const v1::ProductView& v) { return v.product_id(); },
      [&](const std::string& id, v1::ProductChange change) {
        change.set_product_id(id);
        *diff.add_products() = std::move(change);
      },
      [](const v1::ProductView& old_view, const v1::ProductView& new_view) {
        return new_view.status() == v1::DELETED &&
               old_view.status() != v1::DELETED;
      });
  DiffById<v1::OrderChange>(
      before.orders(), after.orders(),
      [](const v1::OrderView& v) { return v.order_id(); },
      [&](const std::string& id, v1::OrderChange change) {
        change.set_order_id(id);
        *diff.add_orders() = std::move(change);
      },
      [](const v1::OrderView&, const v1::OrderView&) { return false; });
  DiffById<v1::WithdrawalChange>(
      before.withdrawals(), after.withdrawals(),
      [](const v1::WithdrawalView& v) { return v.withdrawal_id(); },
      [&](const std::string& id, v1::WithdrawalChange change) {
        change.set_withdrawal_id(id);
        *diff.add_withdrawals() = std::move(change);
      },
      [](const v1::WithdrawalView&, const v1::WithdrawalView&) {
        return false;
      });
  v1::BalancesChange* balances = diff.mutable_balances();
  *balances->mutable_before() = before.balances();
  *balances->mutable_after() = after.balances();
  *balances->mutable_delta() = Delta(before.balances(), after.balances());
  return diff;
}

absl::StatusOr<std::vector<v1::Envelope>> SyncsFrom(
    const EventLog& log, absl::string_view store_id) {
  std::vector<v1::Envelope> syncs;
  ProjectionReader reader(&log);
  ASSIGN_OR_RETURN(RecordRef<StoreRecord> store, reader.Store(store_id));
  if (store == nullptr || store->upgraded_to().empty()) return syncs;
  RETURN_IF_ERROR(log.ScanStream(
      StoreStream(store->upgraded_to()), 0, [&](const v1::Envelope& e) {
        if (e.payload().has_products_synced() &&
            e.payload().products_synced().source_store_id() == store_id) {
          syncs.push_back(e);
        }
        return true;
      }));
  return syncs;
}

absl::StatusOr<bool> ScanStoreHistory(
    const EventLog& log, absl::string_view store_id, uint64_t from_version,
    bool include_rejections,
    const std::function<bool(const v1::Envelope&)>& select_refusal,
    const std::function<bool(const v1::Envelope&)>& fn) {
  // The refusals naming the store and the syncs from it (few), then the
  // store's facts streamed and merged with them by position, so that `fn`
  // can stop the scan early.
  std::vector<v1::Envelope> refusals;
  if (include_rejections) {
    RETURN_IF_ERROR(
        log.ScanStream(kRejectionsStream, 0, [&](const v1::Envelope& e) {
          const auto& ids = e.payload().command_rejected().store_ids();
          if (std::find(ids.begin(), ids.end(), store_id) != ids.end() &&
              (select_refusal == nullptr || select_refusal(e))) {
            refusals.push_back(e);
          }
          return true;
        }));
  }
  // A sync belongs to both stores' histories (R9): the ProductsSynced of
  // the store it upgraded into that copied from it, merged in like a refusal.
  ASSIGN_OR_RETURN(std::vector<v1::Envelope> syncs, SyncsFrom(log, store_id));
  if (!syncs.empty()) {
    refusals.insert(refusals.end(), syncs.begin(), syncs.end());
    std::sort(refusals.begin(), refusals.end(),
              [](const v1::Envelope& a, const v1::Envelope& b) {
                return a.position() < b.position();
              });
  }
  ASSIGN_OR_RETURN(std::optional<StreamHead> head,
                   log.GetStreamHead(StoreStream(store_id)));
  if (!head.has_value() && refusals.empty()) return false;
  // A batch at a time, up to the stream's head as read above, so that `fn`
  // (a client's write, say) never waits with an iterator open.
  const uint64_t last_version = head.has_value() ? head->version() : 0;
  uint64_t version = from_version;
  size_t next_refusal = 0;
  std::vector<v1::Envelope> batch;
  while (version < last_version) {
    batch.clear();
    size_t bytes = 0;
    RETURN_IF_ERROR(log.ScanStream(
        StoreStream(store_id), version, [&](const v1::Envelope& e) {
          if (e.stream_version() > last_version) return false;
          batch.push_back(e);
          bytes += e.ByteSizeLong();
          return batch.size() < kReadBatchEvents && bytes < kReadBatchBytes;
        }));
    if (batch.empty()) break;
    for (const v1::Envelope& e : batch) {
      while (next_refusal < refusals.size() &&
             refusals[next_refusal].position() < e.position()) {
        if (!fn(refusals[next_refusal++])) return true;
      }
      if (!fn(e)) return true;
    }
    version = batch.back().stream_version();
  }
  while (next_refusal < refusals.size()) {
    if (!fn(refusals[next_refusal++])) return true;
  }
  return true;
}

absl::StatusOr<std::vector<BalancePoint>> StoreBalanceSeries(
    const EventLog& log, absl::string_view store_id,
    std::optional<uint64_t> max_position) {
  // A store's money moves only through events of its own stream (R13), so
  // its stream is read, not the whole log (as BuildStatement does).
  std::vector<BalancePoint> points;
  v1::Balances running;
  absl::Status failed;
  RETURN_IF_ERROR(log.ScanStream(
      StoreStream(store_id), 0, [&](const v1::Envelope& envelope) {
        if (max_position.has_value() && envelope.position() > *max_position) {
          return false;
        }
        bool moved = false;
        for (const Posting& posting : PostingsFor(envelope.payload())) {
          if (posting.store_id != store_id) continue;
          failed =
              AddToBalance(BalanceFieldOf(store_id, posting.account),
                           posting.debit_fen - posting.credit_fen, &running);
          if (!failed.ok()) return false;
          moved = true;
        }
        if (moved) {
          points.push_back(BalancePoint{
              envelope.position(), ToTime(envelope.occurred_at()), running});
        }
        return true;
      }));
  RETURN_IF_ERROR(failed);
  return points;
}

absl::StatusOr<DigestText> ParseDigestText(absl::string_view text) {
  const size_t colon = text.find(':');
  DigestText digest;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(text.substr(0, colon), &digest.position) ||
      text.size() - colon - 1 != 64) {
    return absl::InvalidArgumentError(
        "must be POSITION:HASH with a 64-digit hex SHA-256, as printed by "
        "`storeledger digest`");
  }
  digest.hash_hex = absl::AsciiStrToLower(text.substr(colon + 1));
  for (char c : digest.hash_hex) {
    if (!absl::ascii_isxdigit(c)) {
      return absl::InvalidArgumentError(
          "must be POSITION:HASH with a 64-digit hex SHA-256 (the hash holds a "
          "character that is not a hex digit)");
    }
  }
  return digest;
}

absl::Status VerifyDigest(const EventLog& log, const DigestText& digest) {
  if (digest.position > log.head().position) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the log ends at position ", log.head().position,
        ", before the digest's ", digest.position, " (events were removed)"));
  }
  std::string got(32, '\0');
  // Scan re-hashes every envelope and checks every prev_hash link.
  RETURN_IF_ERROR(
      log.Scan(0, [&](const v1::Envelope& envelope, absl::string_view) {
        if (envelope.position() > digest.position) return false;
        got = envelope.hash();
        return envelope.position() < digest.position;
      }));
  if (ToHex(got) != digest.hash_hex) {
    return absl::FailedPreconditionError(
        absl::StrCat("the log up to position ", digest.position, " hashes to ",
                     ToHex(got), ", not ", digest.hash_hex));
  }
  return absl::OkStatus();
}

std::string CsvField(absl::string_view field) {
  if (field.find_first_of(",\"\r\n") == absl::string_view::npos) {
    return std::string(field);
  }
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void WriteStatementCsvRows(const v1::Statement& statement,
                           const StatementCsvStyle& style, std::ostream& out) {
  auto time = [&](const google::protobuf::Timestamp& t) {
    return style.time ? style.time(t)
                      : google::protobuf::util::TimeUtil::ToString(t);
  };
  auto amount = [&](int64_t fen) {
    return style.amount ? style.amount(fen) : absl::StrCat(fen);
  };
  auto balance_rows =
      [&](absl::string_view section,
          const google::protobuf::RepeatedPtrField<v1::AccountBalance>& rows) {
        for (const v1::AccountBalance& row : rows) {
          out << style.row_prefix << section << ',' << CsvField(row.account())
              << (style.event_type ? ",,,,,,," : ",,,,,,")
              << amount(row.balance_fen()) << ",,\n";
        }
      };
  balance_rows("opening", statement.opening());
  for (const v1::StatementLine& line : statement.lines()) {
    const v1::PostingLine& p = line.posting();
    out << style.row_prefix << "posting," << CsvField(p.account()) << ','
        << p.position() << ',' << CsvField(p.event_id()) << ',';
    if (style.event_type) out << p.event_type() << ',';
    out << time(p.occurred_at()) << ',' << amount(p.debit_fen()) << ','
        << amount(p.credit_fen()) << ',' << amount(line.balance_after_fen())
        << ',' << CsvField(p.order_id()) << ',' << CsvField(p.withdrawal_id())
        << '\n';
  }
  balance_rows("movement", statement.movements());
  balance_rows("closing", statement.closing());
}

std::string StatementCsv(const v1::Statement& statement) {
  std::ostringstream out;
  out << "section,account,position,event_id,occurred_at,debit_fen,credit_fen,"
         "balance_fen,order_id,withdrawal_id\n";
  WriteStatementCsvRows(statement, StatementCsvStyle(), out);
  return out.str();
}

}  // namespace storeledger
