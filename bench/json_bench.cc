// storeledger-json-bench: the JSON codec's fast paths (json/) beside
// protobuf's JsonStringToMessage and MessageToJsonString, in one run, on the
// stream `apply` is measured on.
//
//   storeledger-json-bench [--stores N] [--seed S] [--rounds R]
//
// The simulate stream (PlanWrittenAhead: --stores 2000, --seed 1, the
// one storeledger-bench runs) is built in memory and printed one JSON line
// per command with ToJson, as storeledger-bench writes it (json_codec_test
// holds ToJson to protobuf's bytes on the 400-store stream of seed 1). Each
// command is decided in memory (Decide + Evolve on a StateOverlay, no
// storage) for the CommandResult `apply` would print for it: accepted with
// its positions and R9's synced/skipped products, or rejected with rule,
// code and message. Then, per line, µs for:
//   parse  protobuf (ProtobufParseCommandJson) vs fast (ParseCommandJson)
//   print  protobuf (ProtobufToJson) vs fast (ToJson), one CommandResult a line
// Times are this thread's CPU time (the machine may be shared), answers
// dropped as `apply` drops them. protobuf runs one pass over the whole
// stream, the fast paths --rounds passes (default 3, best kept). Then,
// untimed, every fast answer is checked against protobuf's and the lines
// that fell back are counted.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/simulate.h"
#include "core/decide.h"
#include "core/evolve.h"
#include "core/policy.h"
#include "core/state.h"
#include "google/protobuf/util/message_differencer.h"
#include "json/json.h"

namespace storeledger {
namespace {

struct Flags {
  int stores = 2000;
  uint64_t seed = 1;
  int rounds = 3;
};

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "storeledger-json-bench: " << problem
            << "\nusage: storeledger-json-bench [--stores N] [--seed S] "
               "[--rounds R]\n";
  std::exit(2);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) Usage("missing value for " + arg);
    const std::string value = argv[++i];
    bool ok = false;
    if (arg == "--stores") {
      ok = absl::SimpleAtoi(value, &flags.stores) && flags.stores > 0 &&
           flags.stores <= kSimulateStoresMax;
    } else if (arg == "--seed") {
      ok = absl::SimpleAtoi(value, &flags.seed);
    } else if (arg == "--rounds") {
      ok = absl::SimpleAtoi(value, &flags.rounds) && flags.rounds > 0;
    } else {
      Usage("unknown flag " + arg);
    }
    if (!ok) Usage("bad value for " + arg + ": " + value);
  }
  return flags;
}

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::cerr << "storeledger-json-bench: " << what << "\n";
    std::exit(1);
  }
}

// What `apply` would print for each command, decided in memory.
std::vector<v1::CommandResult> Results(
    const std::vector<v1::Command>& commands) {
  const Policy policy = DefaultPolicy();
  StateOverlay state(&EmptyState());
  std::vector<v1::CommandResult> results;
  results.reserve(commands.size());
  uint64_t position = 0;
  for (size_t i = 0; i < commands.size(); ++i) {
    const v1::Command& command = commands[i];
    absl::StatusOr<Decision> decision = Decide(command, state, policy);
    Check(decision.ok(), "Decide: " + decision.status().ToString());
    v1::CommandResult& result = results.emplace_back();
    result.set_line(static_cast<int64_t>(i) + 1);
    result.set_command_id(command.command_id());
    size_t events = 1;  // a rejection is recorded
    if (decision->accepted) {
      events = decision->events.size();
      const absl::Time at = ToTime(command.occurred_at());
      for (const DecidedEvent& decided : decision->events) {
        absl::StatusOr<RecordRef<v1::StreamHead>> head =
            state.Head(decided.stream_id);
        Check(head.ok(), "Head: " + head.status().ToString());
        const uint64_t version = *head ? (*head)->version() + 1 : 1;
        absl::Status evolved =
            Evolve(decided.stream_id, version, at, decided.event, &state);
        Check(evolved.ok(), "Evolve: " + evolved.ToString());
      }
      result.set_status(v1::ACCEPTED);
      result.set_message(decision->message);
      for (const std::string& id : decision->synced_product_ids) {
        result.add_synced_product_ids(id);
      }
      for (const v1::SyncSkip& skip : decision->skipped) {
        *result.add_skipped() = skip;
      }
    } else {
      result.set_status(v1::REJECTED);
      result.set_rule(decision->rule);
      result.set_code(decision->code);
      result.set_message(decision->message);
    }
    if (events > 0) {
      result.set_first_position(position + 1);
      result.set_last_position(position + events);
      position += events;
    }
  }
  return results;
}

// This thread's CPU time: on a machine shared with other benchmarks, wall
// time would also count the time the scheduler gave to them.
double ThreadCpuMicros() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) * 1e6 +
         static_cast<double>(now.tv_nsec) / 1e3;
}

// CPU µs per item of one pass of `pass` over `items` items.
template <typename Pass>
double MicrosPerItem(size_t items, Pass pass) {
  const double start = ThreadCpuMicros();
  pass();
  return (ThreadCpuMicros() - start) / static_cast<double>(items);
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  const absl::Time setup_start = absl::Now();
  const std::vector<v1::Command> commands =
      PlanWrittenAhead(flags.stores, flags.seed);
  std::vector<std::string> lines;
  lines.reserve(commands.size());
  for (const v1::Command& command : commands) {
    lines.push_back(ToJson(command));
  }
  const std::vector<v1::CommandResult> results = Results(commands);
  const double setup_seconds = absl::ToDoubleSeconds(absl::Now() - setup_start);
  const size_t n = lines.size();

  // Every side timed the same way: answers dropped as `apply` drops them
  // (a checksum keeps the work), protobuf for one pass (it is the slow side),
  // the fast paths for --rounds passes, best kept.
  uint64_t checksum = 0;
  const auto parse_pass = [&](auto parse) {
    return MicrosPerItem(n, [&] {
      for (const std::string& line : lines) {
        absl::StatusOr<v1::Command> command = parse(line);
        checksum += command.ok() ? command->command_id().size() : 1;
      }
    });
  };
  const auto print_pass = [&](auto print) {
    return MicrosPerItem(n, [&] {
      for (const v1::CommandResult& result : results) {
        checksum += print(result).size();
      }
    });
  };
  const double parse_protobuf =
      parse_pass(json_internal::ProtobufParseCommandJson);
  const double print_protobuf = print_pass(json_internal::ProtobufToJson);
  double parse_fast = 0;
  double print_fast = 0;
  for (int round = 0; round < flags.rounds; ++round) {
    const double parse = parse_pass(ParseCommandJson);
    const double print = print_pass(ToJson);
    parse_fast = round == 0 ? parse : std::min(parse_fast, parse);
    print_fast = round == 0 ? print : std::min(print_fast, print);
  }

  // Untimed: the fast paths gave protobuf's answers; how often they fell
  // back.
  size_t parse_fallbacks = 0;
  size_t print_fallbacks = 0;
  size_t line_bytes = 0;
  size_t result_bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const absl::StatusOr<v1::Command> ours = ParseCommandJson(lines[i]);
    const absl::StatusOr<v1::Command> reference =
        json_internal::ProtobufParseCommandJson(lines[i]);
    Check(ours.status() == reference.status() &&
              (!ours.ok() || google::protobuf::util::MessageDifferencer::Equals(
                                 *ours, *reference)),
          "parse differs from protobuf's on " + lines[i]);
    const std::string printed_fast = ToJson(results[i]);
    Check(printed_fast == json_internal::ProtobufToJson(results[i]),
          "print differs from protobuf's: " + printed_fast);
    v1::Command command;
    if (!json_internal::FastJsonToMessage(lines[i], &command)) {
      ++parse_fallbacks;
    }
    std::string printed;
    if (!json_internal::FastMessageToJson(results[i], &printed)) {
      ++print_fallbacks;
    }
    line_bytes += lines[i].size();
    result_bytes += printed_fast.size();
  }

  std::cout << absl::StrFormat(
      "simulate stream: %d stores, seed %d: %d lines (%.0f bytes/line), "
      "CommandResults %.0f bytes/line; setup %.1f s; fast paths best of %d "
      "(checksum %d)\n",
      flags.stores, flags.seed, n, static_cast<double>(line_bytes) / n,
      static_cast<double>(result_bytes) / n, setup_seconds, flags.rounds,
      checksum);
  std::cout << absl::StrFormat(
      "parse Command        protobuf %6.2f us/line   fast %6.2f us/line   "
      "%5.1fx   (%d lines fell back)\n",
      parse_protobuf, parse_fast, parse_protobuf / parse_fast, parse_fallbacks);
  std::cout << absl::StrFormat(
      "print CommandResult  protobuf %6.2f us/line   fast %6.2f us/line   "
      "%5.1fx   (%d results fell back)\n",
      print_protobuf, print_fast, print_protobuf / print_fast, print_fallbacks);
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) { return storeledger::Main(argc, argv); }
