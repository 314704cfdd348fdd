#include "server/checkpoint_signer.h"

#include <utility>

#include "absl/time/clock.h"
#include "storage/merkle_store.h"

namespace storeledger {

CheckpointSigner::CheckpointSigner(EventLog* log,
                                   CheckpointSignerOptions options)
    : log_(log), options_(std::move(options)) {
  if (absl::StatusOr<std::optional<v1::SignedCheckpoint>> latest =
          LatestCheckpoint(*log_);
      latest.ok() && latest->has_value()) {
    absl::MutexLock lock(&mu_);
    signed_tree_size_ = (*latest)->tree_size();
  }
  thread_ = std::thread([this] { Run(); });
}

CheckpointSigner::~CheckpointSigner() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

uint64_t CheckpointSigner::signed_tree_size() const {
  absl::MutexLock lock(&mu_);
  return signed_tree_size_;
}

absl::Status CheckpointSigner::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

void CheckpointSigner::Run() {
  // The first tick signs whatever no checkpoint covers yet.
  absl::Time last_signed = absl::InfinitePast();
  for (;;) {
    uint64_t signed_size = 0;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      signed_size = signed_tree_size_;
    }
    const uint64_t head = log_->head().position;
    const absl::Time now = absl::Now();
    const bool due =
        head > signed_size && (head - signed_size >= options_.every_events ||
                               now - last_signed >= options_.every);
    if (due) {
      absl::StatusOr<v1::SignedCheckpoint> checkpoint =
          WriteCheckpoint(*log_, options_.key, absl::ToUnixSeconds(now));
      absl::MutexLock lock(&mu_);
      if (checkpoint.ok()) {
        signed_tree_size_ = checkpoint->tree_size();
        last_signed = now;
        last_error_ = absl::OkStatus();
      } else {
        last_error_ = checkpoint.status();
      }
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), kSignerPollInterval);
    if (stopping_) return;
  }
}

}  // namespace storeledger
