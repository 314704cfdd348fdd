// Turns fuzz input bytes into choices (the part of LLVM's
// FuzzedDataProvider that the targets need, so that they also build with
// GCC, which does not ship that header). Past the end of the input every
// choice is the smallest one.
#ifndef STORELEDGER_FUZZ_BYTE_READER_H_
#define STORELEDGER_FUZZ_BYTE_READER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace storeledger::fuzz {

class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return offset_ >= size_; }

  // A value in [low, high], from as few bytes as the range needs.
  int64_t Int(int64_t low, int64_t high) {
    const uint64_t range =
        static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
    uint64_t value = 0;
    for (uint64_t covered = 0; covered < range && offset_ < size_;
         covered = (covered << 8) | 0xff) {
      value = (value << 8) | data_[offset_++];
    }
    if (range != UINT64_MAX) value %= range + 1;
    return static_cast<int64_t>(static_cast<uint64_t>(low) + value);
  }
  bool Bool() { return Int(0, 1) == 1; }
  template <typename T>
  const T& Pick(const std::vector<T>& choices) {
    return choices[static_cast<size_t>(
        Int(0, static_cast<int64_t>(choices.size()) - 1))];
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t offset_ = 0;
};

}  // namespace storeledger::fuzz

#endif  // STORELEDGER_FUZZ_BYTE_READER_H_
