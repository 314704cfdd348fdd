// storeledger-merkle-bench: what the Merkle tree costs and what
// its proofs cost.
//
//   storeledger-merkle-bench [--events N[,N...]] [--dir DIR] [--batch B]
//                            [--proofs P]
//
// For each N (default 1000,1000000): appends N events to two fresh
// EventLogs, the tree on in one and off in the other, batch by batch in turn,
// in synced AppendBatch calls of B one-event requests (default 1000: a busy
// group commit's group); then P (default 1000) inclusion proofs of random
// positions and P consistency proofs of random sizes against the head, each
// made from the stored nodes and verified. One row per measure:
//   events append_tree_on_events_per_s append_tree_off_events_per_s slowdown
//   events inclusion_path_hashes inclusion_us(prove+verify) consistency_...
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "storage/event_log.h"
#include "storage/merkle.h"
#include "storage/merkle_store.h"

namespace storeledger {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

NewEvent MakeEvent(uint64_t i) {
  NewEvent event;
  Envelope& envelope = event.envelope;
  envelope.set_stream_id(absl::StrCat("store-", i % 1000));
  envelope.set_event_id(absl::StrCat("event-", i));
  envelope.set_command_id(absl::StrCat("command-", i));
  envelope.set_event_type("OrderPaid");
  envelope.mutable_occurred_at()->set_seconds(1729500000 + i);
  envelope.mutable_recorded_at()->set_seconds(1729500000 + i);
  envelope.set_policy_version("2024-10-default");
  v1::OrderPaid* paid = envelope.mutable_payload()->mutable_order_paid();
  paid->set_store_id(absl::StrCat("store-", i % 1000));
  paid->set_order_id(absl::StrCat("order-", i));
  paid->set_amount_fen(1000 + i % 977);
  return event;
}

std::unique_ptr<EventLog> OpenFresh(const std::string& dir, bool tree) {
  std::filesystem::remove_all(dir);
  EventLogOptions options;
  options.merkle_tree = tree;
  auto log = EventLog::Open(dir, options);
  if (!log.ok()) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(),
                 log.status().ToString().c_str());
    std::exit(1);
  }
  return *std::move(log);
}

// Seconds to append events [first, first + count) to `log` in one batch.
double AppendBatch(EventLog& log, uint64_t first, uint64_t count) {
  std::vector<AppendRequest> requests;
  for (uint64_t i = first; i < first + count; ++i) {
    AppendRequest request;
    request.events.push_back(MakeEvent(i));
    requests.push_back(std::move(request));
  }
  const Clock::time_point start = Clock::now();
  auto appended = log.AppendBatch(std::move(requests));
  const double seconds = Seconds(start);
  if (!appended.ok()) {
    std::fprintf(stderr, "append: %s\n", appended.status().ToString().c_str());
    std::exit(1);
  }
  return seconds;
}

// The same events appended to two logs, the tree off in one and on in the
// other, batch by batch in turn (which goes first alternates), so that a
// machine whose load changes under the run slows both alike. Only the
// AppendBatch calls are timed (building the requests is not).
struct Throughput {
  double off_events_per_s = 0;
  double on_events_per_s = 0;
};
Throughput Fill(const std::string& dir, uint64_t events, size_t batch) {
  std::unique_ptr<EventLog> off = OpenFresh(dir + "-off", false);
  std::unique_ptr<EventLog> on = OpenFresh(dir, true);
  double off_seconds = 0, on_seconds = 0;
  for (uint64_t i = 0, round = 0; i < events; i += batch, ++round) {
    const uint64_t count = std::min<uint64_t>(batch, events - i);
    if (round % 2 == 0) {
      off_seconds += AppendBatch(*off, i, count);
      on_seconds += AppendBatch(*on, i, count);
    } else {
      on_seconds += AppendBatch(*on, i, count);
      off_seconds += AppendBatch(*off, i, count);
    }
  }
  off.reset();
  std::filesystem::remove_all(dir + "-off");
  return Throughput{events / off_seconds, events / on_seconds};
}

void Proofs(const std::string& dir, uint64_t events, int proofs) {
  auto log = EventLog::Open(dir);
  if (!log.ok()) std::exit(1);
  std::mt19937_64 random(events);
  auto root = MerkleRoot(**log, events);
  if (!root.ok()) std::exit(1);
  size_t path_hashes = 0;
  size_t envelope_bytes = 0;
  Clock::time_point start = Clock::now();
  for (int i = 0; i < proofs; ++i) {
    const uint64_t position = 1 + random() % events;
    auto proof = ProveInclusion(**log, position, events);
    if (!proof.ok() ||
        !merkle::VerifyInclusion(position - 1, events,
                                 merkle::LeafHash(proof->envelope), proof->path,
                                 *root)
             .ok()) {
      std::fprintf(stderr, "inclusion proof of %llu failed\n",
                   static_cast<unsigned long long>(position));
      std::exit(1);
    }
    path_hashes += proof->path.size();
    envelope_bytes += proof->envelope.size();
  }
  const double inclusion_us = Seconds(start) * 1e6 / proofs;
  size_t consistency_hashes = 0;
  start = Clock::now();
  for (int i = 0; i < proofs; ++i) {
    const uint64_t first = 1 + random() % events;
    auto proof = ProveConsistency(**log, first, events);
    if (!proof.ok() ||
        !merkle::VerifyConsistency(first, events, proof->first_root, *root,
                                   proof->path)
             .ok()) {
      std::fprintf(stderr, "consistency proof from %llu failed\n",
                   static_cast<unsigned long long>(first));
      std::exit(1);
    }
    consistency_hashes += proof->path.size();
  }
  const double consistency_us = Seconds(start) * 1e6 / proofs;
  std::printf(
      "%llu events: inclusion %.1f hashes (%.0f bytes + envelope %.0f bytes) "
      "%.1f us prove+verify; consistency %.1f hashes (%.0f bytes) %.1f us "
      "prove+verify\n",
      static_cast<unsigned long long>(events),
      static_cast<double>(path_hashes) / proofs, 32.0 * path_hashes / proofs,
      static_cast<double>(envelope_bytes) / proofs, inclusion_us,
      static_cast<double>(consistency_hashes) / proofs,
      32.0 * consistency_hashes / proofs, consistency_us);
}

int Main(int argc, char** argv) {
  std::vector<uint64_t> sizes = {1000, 1000000};
  std::string dir = absl::StrCat("/tmp/storeledger-merkle-bench-", getpid());
  size_t batch = 1000;
  int proofs = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--events") {
      sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        uint64_t n = 0;
        if (!absl::SimpleAtoi(part, &n) || n == 0) return 2;
        sizes.push_back(n);
      }
    } else if (flag == "--dir") {
      dir = value;
    } else if (flag == "--batch") {
      if (!absl::SimpleAtoi(value, &batch) || batch == 0) return 2;
    } else if (flag == "--proofs") {
      if (!absl::SimpleAtoi(value, &proofs) || proofs <= 0) return 2;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  for (uint64_t events : sizes) {
    const Throughput t = Fill(dir, events, batch);
    const double off = t.off_events_per_s, on = t.on_events_per_s;
    std::printf(
        "%llu events: append tree off %.0f events/s, on %.0f events/s "
        "(%.1f%% slower)\n",
        static_cast<unsigned long long>(events), off, on,
        100.0 * (off - on) / off);
    std::fflush(stdout);
    Proofs(dir, events, proofs);
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace storeledger

int main(int argc, char** argv) { return storeledger::Main(argc, argv); }
