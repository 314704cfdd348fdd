// decide(command, state, policy) -> events | rejection: the rules R0–R15 of
// DESIGN.md §1. Pure: no I/O of its own (state comes through StateReader),
// no clock (time is the command's occurred_at), policy is data.
#ifndef STORELEDGER_CORE_DECIDE_H_
#define STORELEDGER_CORE_DECIDE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/policy.h"
#include "core/state.h"
#include "storeledger/v1/ledger.pb.h"

namespace storeledger {

using v1::Command;
using v1::Event;
using v1::RejectionCode;

// The rules of DESIGN.md §1, by what they govern; RuleName is the one table
// of the names every output prints ("R0".."R15").
enum class Rule {
  kShape,                // R0: ids, amounts, quantities, enums, time order
  kOpenStore,            // R1
  kAddProduct,           // R2
  kListProduct,          // R3
  kDelistProduct,        // R4
  kDeleteProduct,        // R5
  kCutoffs,              // R6: effective status, applyPolicy
  kRegisterBusiness,     // R7
  kUpgrade,              // R8
  kSync,                 // R9
  kPlaceOrder,           // R10
  kPayOrCancel,          // R11
  kOrderMoney,           // R12: ship, settle, refund
  kOwnStore,             // R13
  kWithdrawal,           // R14
  kWeChatStoreCategory,  // R15: qualification and deposit
};
absl::string_view RuleName(Rule rule);

struct DecidedEvent {
  std::string stream_id;  // core/streams.h
  Event event;
};

struct Decision {
  bool accepted = false;
  // Accepted: the events to append, in order (may be empty: ApplyPolicy or
  // SyncProducts with nothing left to do). All or none are appended.
  std::vector<DecidedEvent> events;
  // R9: what was copied and what was skipped, and why.
  std::vector<std::string> synced_product_ids;
  std::vector<v1::SyncSkip> skipped;
  // Rejected: the deciding rule ("R0".."R15"), code and a message naming the
  // offending field or record.
  std::string rule;
  RejectionCode code = v1::REJECTION_CODE_UNSPECIFIED;
  std::string message;
  // The stores the command names and, when rejected, every other store the
  // message names (the store an order or withdrawal belongs to): a
  // rejection shows up in each one's history, and a merchant is shown it
  // only when all of them are its own (docs/server.md).
  std::vector<std::string> store_ids;
};

// The stream id and event-type name of an event ("OrderPaid", ...).
std::string EventTypeName(const Event& event);

// The store ids a command names, in the order it names them.
std::vector<std::string> StoreIdsOf(const Command& command);

// Decides `command` against `state` under `policy`. A rule violation is an
// ok Decision with accepted == false; a non-ok status means the state could
// not be read (nothing should be written then).
// REQUIRES: command has a body and occurred_at (the parser guarantees it).
absl::StatusOr<Decision> Decide(const Command& command,
                                const StateReader& state, const Policy& policy);

}  // namespace storeledger

#endif  // STORELEDGER_CORE_DECIDE_H_
