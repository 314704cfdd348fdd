#include "storage/overlay_iterator.h"

#include <utility>

namespace storeledger {
namespace {

class OverlayIterator final : public rocksdb::Iterator {
 public:
  OverlayIterator(std::shared_ptr<const KeyOverlay> overlay,
                  std::unique_ptr<rocksdb::Iterator> base)
      : overlay_(std::move(overlay)),
        base_(std::move(base)),
        next_(overlay_->end()) {}

  bool Valid() const override { return current_ != Source::kNone; }
  void SeekToFirst() override {
    base_->SeekToFirst();
    next_ = overlay_->begin();
    Settle();
  }
  void Seek(const rocksdb::Slice& target) override {
    base_->Seek(target);
    next_ =
        overlay_->lower_bound(std::string_view(target.data(), target.size()));
    Settle();
  }
  void Next() override {
    if (current_ == Source::kBase) {
      base_->Next();
    } else {
      ++next_;
    }
    Settle();
  }
  void SeekToLast() override { Unsupported(); }
  void SeekForPrev(const rocksdb::Slice&) override { Unsupported(); }
  void Prev() override { Unsupported(); }
  rocksdb::Slice key() const override {
    return current_ == Source::kBase ? base_->key()
                                     : rocksdb::Slice(next_->first);
  }
  rocksdb::Slice value() const override {
    return current_ == Source::kBase ? base_->value()
                                     : rocksdb::Slice(*next_->second);
  }
  rocksdb::Status status() const override {
    return unsupported_
               ? rocksdb::Status::NotSupported("overlay iterator: forward only")
               : base_->status();
  }

 private:
  enum class Source { kNone, kBase, kOverlay };

  // Points current_ at the smaller key of the two sides; an overlay entry
  // with the same key as base's replaces it, and a delete hides both.
  void Settle() {
    while (true) {
      const bool in_base = base_->Valid();
      const bool in_overlay = next_ != overlay_->end();
      if (!in_base && !in_overlay) {
        current_ = Source::kNone;
        return;
      }
      const int order =
          !in_base      ? 1
          : !in_overlay ? -1
                        : base_->key().compare(rocksdb::Slice(next_->first));
      if (order < 0) {
        current_ = Source::kBase;
        return;
      }
      if (order == 0) base_->Next();  // the overlay's version is newer
      if (next_->second.has_value()) {
        current_ = Source::kOverlay;
        return;
      }
      ++next_;  // a delete
    }
  }

  void Unsupported() {
    unsupported_ = true;
    current_ = Source::kNone;
  }

  const std::shared_ptr<const KeyOverlay> overlay_;
  const std::unique_ptr<rocksdb::Iterator> base_;
  KeyOverlay::const_iterator next_;
  Source current_ = Source::kNone;
  bool unsupported_ = false;
};

}  // namespace

std::unique_ptr<rocksdb::Iterator> NewOverlayIterator(
    std::shared_ptr<const KeyOverlay> overlay,
    std::unique_ptr<rocksdb::Iterator> base) {
  return std::make_unique<OverlayIterator>(std::move(overlay), std::move(base));
}

}  // namespace storeledger
