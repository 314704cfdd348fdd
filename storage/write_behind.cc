#include "storage/write_behind.h"

#include <utility>

#include "base/check.h"

namespace storeledger::storage_internal {

void DerivedTable::Add(DerivedFamily family, std::string key,
                       std::optional<std::string> value, uint64_t write_seq) {
  const size_t value_bytes = value.has_value() ? value->size() : 0;
  auto [it, inserted] = maps_[family].try_emplace(std::move(key));
  std::vector<DerivedVersion>& versions = it->second;
  if (inserted) bytes_ += it->first.size();
  if (!versions.empty()) {
    SL_CHECK(versions.back().write_seq <= write_seq,
             "write-behind: append " << write_seq << " after append "
                                     << versions.back().write_seq);
    if (versions.back().write_seq == write_seq) {
      const std::optional<std::string>& old = versions.back().value;
      bytes_ -= old.has_value() ? old->size() : 0;
      versions.back().value = std::move(value);
      bytes_ += value_bytes;
      return;
    }
  }
  versions.push_back(DerivedVersion{write_seq, std::move(value)});
  bytes_ += value_bytes + sizeof(DerivedVersion);
}

namespace {

const DerivedVersion* Visible(const std::vector<DerivedVersion>& versions,
                              uint64_t max_write_seq) {
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->write_seq <= max_write_seq) return &*it;
  }
  return nullptr;
}

}  // namespace

const DerivedVersion* DerivedTable::Find(DerivedFamily family,
                                         absl::string_view key,
                                         uint64_t max_write_seq) const {
  auto it = maps_[family].find(key);
  if (it == maps_[family].end()) return nullptr;
  return Visible(it->second, max_write_seq);
}

void DerivedTable::Collect(DerivedFamily family, absl::string_view begin,
                           absl::string_view end, uint64_t max_write_seq,
                           DerivedEntries* entries) const {
  const Map& map = maps_[family];
  for (auto it = map.lower_bound(begin); it != map.end(); ++it) {
    if (!end.empty() && it->first >= end) break;
    const DerivedVersion* version = Visible(it->second, max_write_seq);
    if (version == nullptr) continue;
    entries->try_emplace(it->first, version->value);
  }
}

std::unique_ptr<DerivedTable> DerivedTable::SplitAfter(uint64_t write_seq) {
  auto later = std::make_unique<DerivedTable>();
  for (size_t family = 0; family < kDerivedFamilyCount; ++family) {
    Map& map = maps_[family];
    for (auto it = map.begin(); it != map.end();) {
      std::vector<DerivedVersion>& versions = it->second;
      size_t keep = versions.size();
      while (keep > 0 && versions[keep - 1].write_seq > write_seq) --keep;
      for (size_t i = keep; i < versions.size(); ++i) {
        const size_t value_bytes =
            versions[i].value.has_value() ? versions[i].value->size() : 0;
        bytes_ -= value_bytes + sizeof(DerivedVersion);
        later->Add(static_cast<DerivedFamily>(family), it->first,
                   std::move(versions[i].value), versions[i].write_seq);
      }
      versions.resize(keep);
      if (versions.empty()) {
        bytes_ -= it->first.size();
        it = map.erase(it);
      } else {
        // Older versions stay: a reader pinned before the cut may need one.
        ++it;
      }
    }
  }
  return later;
}

bool DerivedTable::empty() const {
  for (const Map& map : maps_) {
    if (!map.empty()) return false;
  }
  return true;
}

}  // namespace storeledger::storage_internal
