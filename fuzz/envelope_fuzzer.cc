// Fuzz target: the envelope decoder on the event log's read path
// (EventLog::Read and EventLog::Scan: parse, limit, position, hash and chain
// checks of storage/FORMAT.md "Checks on read").
//
// The bytes are stored as the event at position 1 of a real EventLog (RocksDB
// on an in-memory Env), then read back. Read and Scan never crash: they
// return kDataLoss, or an envelope for which the fuzzer re-derives every
// check independently (position 1, SHA-256(prev_hash || body) = hash, the
// hash field last, prev_hash of position 1 is 32 zero bytes for Scan).
//
// Input: the first byte picks how the rest is used.
//   even: the rest is the stored bytes, as is.
//   odd:  the rest is an envelope body; the fuzzer appends the hash field
//         with the right hash of it, so the input reaches the checks behind
//         the hash (position, chain) instead of stopping at the hash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "core/limits.h"
#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "storage/event_log.h"
#include "storage/format.h"

namespace {

using storeledger::format::kHashBytes;
constexpr char kHashFieldTag = 0x62;  // field 12, wire type 2

struct Log {
  std::unique_ptr<rocksdb::Env> env;
  std::unique_ptr<storeledger::EventLog> log;
};

// One log for the whole run, holding one real event (so the head is 1).
storeledger::EventLog& TheLog() {
  static Log* const the_log = [] {
    // Damaged bytes make protobuf log (invalid UTF-8 ...); the reader's
    // kDataLoss is what counts, the log lines are noise.
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*,
                                       int, const std::string&) {});
    Log* l = new Log();
    l->env.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
    storeledger::EventLogOptions options;
    options.env = l->env.get();
    options.sync = false;
    absl::StatusOr<std::unique_ptr<storeledger::EventLog>> log =
        storeledger::EventLog::Open("/fuzz-envelope-log", options);
    FUZZ_CHECK(log.ok(), log.status());
    storeledger::AppendRequest request;
    storeledger::NewEvent& event = request.events.emplace_back();
    event.envelope.set_stream_id("store-s1");
    event.envelope.set_event_id("c1#0");
    event.envelope.set_command_id("c1");
    event.envelope.set_event_type("StoreOpened");
    event.envelope.mutable_payload()->mutable_store_opened()->set_store_id(
        "s1");
    absl::StatusOr<storeledger::AppendResult> appended =
        (*log)->Append(std::move(request));
    FUZZ_CHECK(appended.ok(), appended.status());
    l->log = *std::move(log);
    return l;
  }();
  return *the_log->log;
}

// What a reader must have verified about `raw` if it returned `envelope`.
void CheckAccepted(const std::string& raw,
                   const storeledger::v1::Envelope& envelope) {
  FUZZ_CHECK(raw.size() <= storeledger::kEnvelopeBytesMax, "over the limit");
  FUZZ_CHECK(envelope.position() == 1, "position " << envelope.position());
  FUZZ_CHECK(raw.size() >= 2 + kHashBytes &&
                 raw[raw.size() - kHashBytes - 2] == kHashFieldTag &&
                 raw[raw.size() - kHashBytes - 1] == char{kHashBytes},
             "accepted bytes that do not end with the hash field");
  const std::string body = raw.substr(0, raw.size() - kHashBytes - 2);
  FUZZ_CHECK(envelope.prev_hash().size() == kHashBytes, "prev_hash size");
  FUZZ_CHECK(
      storeledger::Sha256(envelope.prev_hash() + body) == envelope.hash(),
      "accepted an envelope whose hash does not match its bytes");
  FUZZ_CHECK(raw.substr(raw.size() - kHashBytes) == envelope.hash(),
             "the parsed hash is not the stored hash bytes");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  storeledger::EventLog& log = TheLog();
  std::string raw(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    // Give the body the hash it claims to chain from, so it gets past the
    // hash check; what it claims (position, prev_hash) is still its own.
    storeledger::v1::Envelope parsed;
    std::string prev_hash(kHashBytes, '\0');
    if (parsed.ParseFromString(raw) &&
        parsed.prev_hash().size() == kHashBytes) {
      prev_hash = parsed.prev_hash();
    }
    const std::string hash = storeledger::Sha256(prev_hash + raw);
    raw.push_back(kHashFieldTag);
    raw.push_back(static_cast<char>(kHashBytes));
    raw += hash;
  }
  rocksdb::Status put = log.db()->Put(rocksdb::WriteOptions(), log.events_cf(),
                                      storeledger::PositionKey(1), raw);
  FUZZ_CHECK(put.ok(), put.ToString());

  absl::StatusOr<storeledger::v1::Envelope> read = log.Read(1);
  if (read.ok()) {
    CheckAccepted(raw, *read);
  } else {
    FUZZ_CHECK(absl::IsDataLoss(read.status()), read.status());
    FUZZ_CHECK(!read.status().message().empty(), "no message");
  }

  bool scanned = false;
  absl::Status scan = log.Scan(0, [&](const storeledger::v1::Envelope& envelope,
                                      absl::string_view bytes) {
    FUZZ_CHECK(bytes == raw, "Scan passed other bytes than stored");
    CheckAccepted(raw, envelope);
    FUZZ_CHECK(envelope.prev_hash() == std::string(kHashBytes, '\0'),
               "position 1 must chain from the zero hash");
    scanned = true;
    return true;
  });
  if (scan.ok()) {
    FUZZ_CHECK(scanned, "Scan succeeded without the event at the head");
    FUZZ_CHECK(read.ok(), "Scan accepted what Read refused");
  } else {
    FUZZ_CHECK(absl::IsDataLoss(scan), scan);
  }
  return 0;
}
