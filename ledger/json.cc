#include "ledger/json.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace storeledger {

absl::StatusOr<v1::Command> ParseCommandJson(absl::string_view line) {
  v1::Command command;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  options.case_insensitive_enum_parsing = false;
  auto status =
      google::protobuf::util::JsonStringToMessage(std::string(line), &command, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a JSON storeledger.v1.Command: ", status.message().ToString()));
  }
  if (command.command_id().empty()) {
    return absl::InvalidArgumentError("commandId is missing");
  }
  if (!command.has_occurred_at()) {
    return absl::InvalidArgumentError(
        "occurredAt is missing (RFC 3339, e.g. 2024-10-22T10:00:00+08:00)");
  }
  if (command.body_case() == v1::Command::BODY_NOT_SET) {
    return absl::InvalidArgumentError(
        "command body is missing (one of openStore, addProduct, placeOrder, "
        "...)");
  }
  return command;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  // Cannot fail for a message of our own schema.
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

absl::StatusOr<absl::Time> ParseTimeFlag(absl::string_view flag,
                                         absl::string_view value) {
  absl::Time t;
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, std::string(value), &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " must be an RFC 3339 time such as 2024-11-04T00:00:00+08:00, "
              "got '", value, "': ", error));
  }
  return t;
}

}  // namespace storeledger
