// storeledgerd's checkpoint signer: a thread that signs the
// Merkle tree of the durable head (storage/merkle_store.h WriteCheckpoint)
// once `every_events` events were appended since the last checkpoint, or
// `every` has passed with any new event, and stores it; GetCheckpoint
// serves the latest. A signing error is kept (last_error) and retried at
// the next tick: it never stops the ledger.
//
// Thread-safe. The EventLog must outlive the signer; destroying it stops
// the thread.
#ifndef STORELEDGER_SERVER_CHECKPOINT_SIGNER_H_
#define STORELEDGER_SERVER_CHECKPOINT_SIGNER_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/checkpoint.h"
#include "storage/event_log.h"

namespace storeledger {

// How often the signer looks at the head.
inline constexpr absl::Duration kSignerPollInterval = absl::Milliseconds(100);

struct CheckpointSignerOptions {
  // The key checkpoints are signed with (storage/checkpoint.h). Required:
  // there is no default key. Default: empty (Start refuses it).
  SigningKey key;
  // Sign once so many events were appended since the last checkpoint.
  // Default: 10000.
  uint64_t every_events = 10'000;
  // Sign once so long has passed since the last checkpoint, if any event
  // was appended since. Default: 60 seconds.
  absl::Duration every = absl::Seconds(60);
};

class CheckpointSigner {
 public:
  // Starts the thread; it signs the head at once if no checkpoint covers it.
  CheckpointSigner(EventLog* log, CheckpointSignerOptions options);
  ~CheckpointSigner();
  CheckpointSigner(const CheckpointSigner&) = delete;
  CheckpointSigner& operator=(const CheckpointSigner&) = delete;

  uint64_t signed_tree_size() const;
  absl::Status last_error() const;

 private:
  void Run();

  EventLog* const log_;
  const CheckpointSignerOptions options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t signed_tree_size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace storeledger

#endif  // STORELEDGER_SERVER_CHECKPOINT_SIGNER_H_
