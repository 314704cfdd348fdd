// What the CLI tests share to speak DESIGN.md's JSON: a command line to feed
// `apply`, and a JSON output line parsed back (protobuf's JSON mapping).
#ifndef STORELEDGER_TESTS_SUPPORT_CLI_JSON_H_
#define STORELEDGER_TESTS_SUPPORT_CLI_JSON_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace storeledger::testing {

// Parses one JSON output line; a parse error fails the test.
template <typename Message>
Message FromJson(const std::string& json) {
  Message message;
  auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json;
  return message;
}

// {"commandId":id,"occurredAt":at,<body>}: one line for `apply`.
inline std::string Cmd(const std::string& id, const std::string& at,
                       const std::string& body) {
  return absl::StrCat(R"({"commandId":")", id, R"(","occurredAt":")", at,
                      R"(",)", body, "}");
}

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_CLI_JSON_H_
