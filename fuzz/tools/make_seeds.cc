// Writes the committed seed corpora of the fuzz targets (fuzz/corpus/<target>/)
// deterministically:
//   command_json_fuzzer:    one JSON line per kind of command, from the
//                           migration simulator, and some broken lines;
//   envelope_fuzzer:        stored envelopes of a real ledger, as stored
//                           (first byte 0) and as bodies (first byte 1);
//   decide_sequence_fuzzer: pseudo-random byte strings (any bytes are a
//                           command sequence).
//   fuzz_make_seeds OUT_DIR   (fuzz/run --seeds regenerates them)
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>

#include "absl/strings/str_format.h"
#include "cli/simulate.h"
#include "json/json.h"
#include "ledger/ledger.h"

namespace {

void Write(const std::filesystem::path& dir, int index,
           const std::string& bytes) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / absl::StrFormat("seed-%03d", index),
                    std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_seeds OUT_DIR\n";
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const std::vector<storeledger::SimulatedStep> plan =
      storeledger::PlanMigration(3, 1);

  // JSON lines: the first three of each kind of command.
  std::map<int, int> per_kind;
  int index = 0;
  for (const storeledger::SimulatedStep& step : plan) {
    if (per_kind[step.command.body_case()]++ >= 3) continue;
    Write(out / "command_json_fuzzer", index++,
          storeledger::ToJson(step.command));
  }
  for (const char* broken :
       {"", "{}", "{\"commandId\":\"c1\"}", "[1,2,3]", "{\"commandId\":",
        "{\"commandId\":\"c1\",\"occurredAt\":\"2024-13-45T99:00:00Z\","
        "\"applyPolicy\":{}}",
        "{\"commandId\":\"c1\",\"occurredAt\":\"2024-10-22T10:00:00+08:00\","
        "\"placeOrder\":{\"storeId\":\"s1\",\"orderId\":\"o1\",\"lines\":"
        "[{\"productId\":\"p1\",\"quantity\":\"9223372036854775807\","
        "\"unitPriceFen\":\"-9223372036854775808\"}]}}",
        "{\"commandId\":\"c1\",\"occurredAt\":\"2024-10-22T10:00:00Z\","
        "\"openStore\":{\"kind\":99,\"unknownField\":1}}"}) {
    Write(out / "command_json_fuzzer", index++, broken);
  }

  // Stored envelopes of a real ledger.
  const std::filesystem::path db =
      std::filesystem::temp_directory_path() / "storeledger-make-seeds";
  std::filesystem::remove_all(db);
  {
    storeledger::LedgerOptions options;
    options.sync = false;
    absl::StatusOr<std::unique_ptr<storeledger::Ledger>> ledger =
        storeledger::Ledger::Open(db.string(), options);
    if (!ledger.ok()) {
      std::cerr << ledger.status() << "\n";
      return 1;
    }
    for (const storeledger::SimulatedStep& step : plan) {
      if (!(*ledger)->Execute(step.command).ok()) return 1;
    }
    std::set<std::string> types;
    index = 0;
    absl::Status scan = (*ledger)->log().Scan(
        0,
        [&](const storeledger::v1::Envelope& envelope, absl::string_view raw) {
          if (!types.insert(envelope.event_type()).second &&
              envelope.position() > 3) {
            return true;
          }
          Write(out / "envelope_fuzzer", index++,
                std::string(1, '\0') + std::string(raw));
          Write(out / "envelope_fuzzer", index++,
                std::string(1, '\1') +
                    std::string(raw.substr(0, raw.size() - 34)));
          return true;
        });
    if (!scan.ok()) return 1;
  }
  std::filesystem::remove_all(db);

  // Command sequences: any bytes.
  std::mt19937_64 rng(1);
  for (index = 0; index < 24; ++index) {
    std::string bytes(64 + rng() % 960, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    Write(out / "decide_sequence_fuzzer", index, bytes);
  }
  return 0;
}
