#include "tests/support/fault_env.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace storeledger::testing {
namespace {

// Renamed files bigger than this are not kept for undoing the rename: RocksDB
// renames only small files (CURRENT, IDENTITY, OPTIONS).
constexpr uint64_t kRenameKeepBytesMax = 4 << 20;

// "a//b/" -> "a/b": RocksDB joins names with '/', and a database path given
// with a trailing slash would otherwise name one directory two ways.
std::string Normalize(absl::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::optional<uint64_t> SizeOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return static_cast<uint64_t>(st.st_size);
}

std::optional<std::string> ReadAll(const std::string& path, uint64_t limit) {
  std::optional<uint64_t> size = SizeOf(path);
  if (!size.has_value() || *size > limit) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::Status WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

const char* OpName(FaultOp op) {
  switch (op) {
    case FaultOp::kAny:
      return "any";
    case FaultOp::kAppend:
      return "append";
    case FaultOp::kSync:
      return "sync";
    case FaultOp::kCreate:
      return "create";
    case FaultOp::kRename:
      return "rename";
    case FaultOp::kDelete:
      return "delete";
    case FaultOp::kDirSync:
      return "directory fsync";
  }
  return "?";
}

// A writable file that reports what it writes and syncs to its file system.
class TrackedFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackedFile(std::unique_ptr<rocksdb::FSWritableFile> target,
              FaultFileSystem* fs, std::string path)
      : FSWritableFileOwnerWrapper(std::move(target)),
        fs_(fs),
        path_(std::move(path)) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    s = target()->Append(data, options, dbg);
    if (s.ok()) fs_->OnAppended(path_, data.size());
    return s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    s = target()->Append(data, options, info, dbg);
    if (s.ok()) fs_->OnAppended(path_, data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data,
                                     uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    s = target()->PositionedAppend(data, offset, options, dbg);
    if (s.ok()) fs_->OnTruncated(path_, offset + data.size());
    return s;
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data,
                                     uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    s = target()->PositionedAppend(data, offset, options, info, dbg);
    if (s.ok()) fs_->OnTruncated(path_, offset + data.size());
    return s;
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    s = target()->Truncate(size, options, dbg);
    if (s.ok()) fs_->OnTruncated(path_, size);
    return s;
  }
  rocksdb::IOStatus Flush(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kAppend, path_);
    if (!s.ok()) return s;
    return target()->Flush(options, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options,
                         rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kSync, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) s = target()->Sync(options, dbg);
    if (s.ok()) fs_->OnSynced(path_);
    return s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kSync, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) s = target()->Fsync(options, dbg);
    if (s.ok()) fs_->OnSynced(path_);
    return s;
  }
  // A range sync starts write-back; it promises nothing after a power loss.
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes,
                              const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kSync, path_);
    if (!s.ok() || !fs_->real_sync()) return s;
    return target()->RangeSync(offset, nbytes, options, dbg);
  }

 private:
  FaultFileSystem* fs_;
  std::string path_;
};

class TrackedDirectory : public rocksdb::FSDirectoryWrapper {
 public:
  TrackedDirectory(std::unique_ptr<rocksdb::FSDirectory> target,
                   FaultFileSystem* fs, std::string path)
      : FSDirectoryWrapper(std::move(target)),
        fs_(fs),
        path_(std::move(path)) {}

  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kDirSync, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) s = FSDirectoryWrapper::Fsync(options, dbg);
    if (s.ok()) fs_->OnDirSynced(path_);
    return s;
  }
  rocksdb::IOStatus FsyncWithDirOptions(
      const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg,
      const rocksdb::DirFsyncOptions& dir_options) override {
    rocksdb::IOStatus s = fs_->BeforeOp(FaultOp::kDirSync, path_);
    if (!s.ok()) return s;
    if (fs_->real_sync()) {
      s = FSDirectoryWrapper::FsyncWithDirOptions(options, dbg, dir_options);
    }
    if (s.ok()) fs_->OnDirSynced(path_);
    return s;
  }

 private:
  FaultFileSystem* fs_;
  std::string path_;
};

// RocksDB's Env over the fault file system, with short sleeps. An EnvWrapper
// reaches its target's files through RocksDB's legacy adapters and takes its
// clock from its own SleepForMicroseconds, which is what is overridden here.
class ShortSleepEnv : public rocksdb::EnvWrapper {
 public:
  explicit ShortSleepEnv(rocksdb::Env* target) : EnvWrapper(target) {}
  const char* Name() const override { return "StoreledgerShortSleepEnv"; }
  void SleepForMicroseconds(int micros) override {
    EnvWrapper::SleepForMicroseconds(std::min(micros, kSleepMicrosMax));
  }

 private:
  static constexpr int kSleepMicrosMax = 1000;
};

}  // namespace

FileKind KindOfFile(absl::string_view path) {
  const size_t slash = path.rfind('/');
  const absl::string_view base =
      slash == absl::string_view::npos ? path : path.substr(slash + 1);
  if (absl::EndsWith(base, ".log")) return FileKind::kWal;
  if (absl::EndsWith(base, ".sst")) return FileKind::kTable;
  if (absl::StartsWith(base, "MANIFEST-")) return FileKind::kManifest;
  return FileKind::kOther;
}

absl::StatusOr<WalFiles> ListWal(const std::string& dir) {
  WalFiles wal;
  std::error_code error;
  for (std::filesystem::directory_iterator entry(dir, error);
       !error && entry != std::filesystem::directory_iterator();
       entry.increment(error)) {
    if (KindOfFile(entry->path().string()) != FileKind::kWal) continue;
    std::error_code size_error;
    const uintmax_t size =
        std::filesystem::file_size(entry->path(), size_error);
    if (size_error == std::errc::no_such_file_or_directory) continue;
    if (size_error) {
      return absl::InternalError(absl::StrCat(
          "size of ", entry->path().string(), ": ", size_error.message()));
    }
    ++wal.count;
    wal.bytes += size;
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", error.message()));
  }
  return wal;
}

FaultFileSystem::FaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base)
    : FileSystemWrapper(base) {
  // The Env shares this object without owning it: it is a member, so it
  // dies first.
  composite_env_ = rocksdb::NewCompositeEnv(
      std::shared_ptr<rocksdb::FileSystem>(this, [](rocksdb::FileSystem*) {}));
  env_ = std::make_unique<ShortSleepEnv>(composite_env_.get());
}

FaultFileSystem::~FaultFileSystem() = default;

void FaultFileSystem::SetActive(bool active) {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = active;
  ops_until_crash_ = -1;
}

void FaultFileSystem::SetRealSync(bool real_sync) {
  std::lock_guard<std::mutex> lock(mu_);
  real_sync_ = real_sync;
}

bool FaultFileSystem::real_sync() const {
  std::lock_guard<std::mutex> lock(mu_);
  return real_sync_;
}

bool FaultFileSystem::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

void FaultFileSystem::CrashAfterOps(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  ops_until_crash_ = std::max<int64_t>(n, 0);
}

void FaultFileSystem::InjectError(FileKind kind, FaultOp op, int64_t skip,
                                  bool sticky) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back(Rule{kind, op, skip, sticky});
}

void FaultFileSystem::ClearErrors() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

int64_t FaultFileSystem::injected_errors() const {
  std::lock_guard<std::mutex> lock(mu_);
  return injected_errors_;
}

uint64_t FaultFileSystem::dropped_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_bytes_;
}

uint64_t FaultFileSystem::dropped_files() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dropped_files_;
}

rocksdb::IOStatus FaultFileSystem::BeforeOp(FaultOp op,
                                            const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ && ops_until_crash_ == 0) active_ = false;
  if (!active_) {
    return rocksdb::IOStatus::IOError(
        absl::StrCat("simulated power loss: ", OpName(op), " ", path));
  }
  if (ops_until_crash_ > 0) --ops_until_crash_;
  const FileKind kind = KindOfFile(path);
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    const bool kind_matches = it->kind == FileKind::kAny ||
                              (op != FaultOp::kDirSync && it->kind == kind);
    const bool op_matches = it->op == FaultOp::kAny || it->op == op;
    if (!kind_matches || !op_matches) continue;
    if (it->skip > 0) {
      --it->skip;
      continue;
    }
    if (!it->sticky) rules_.erase(it);
    ++injected_errors_;
    return rocksdb::IOStatus::IOError(
        absl::StrCat("injected fault: ", OpName(op), " ", path));
  }
  return rocksdb::IOStatus::OK();
}

void FaultFileSystem::OnAppended(const std::string& path, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  files_[path].size += bytes;
}

void FaultFileSystem::OnTruncated(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& state = files_[path];
  state.size = size;
  state.synced = std::min(state.synced, size);
}

void FaultFileSystem::OnSynced(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& state = files_[path];
  state.synced = state.size;
}

void FaultFileSystem::OnDirSynced(const std::string& dir) {
  std::lock_guard<std::mutex> lock(mu_);
  new_files_.erase(dir);
  renames_.erase(std::remove_if(renames_.begin(), renames_.end(),
                                [&](const PendingRename& r) {
                                  return DirOf(r.target) == dir;
                                }),
                 renames_.end());
}

rocksdb::IOStatus FaultFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result,
    rocksdb::IODebugContext* dbg) {
  const std::string path = Normalize(fname);
  rocksdb::IOStatus s = BeforeOp(FaultOp::kCreate, path);
  if (!s.ok()) return s;
  const bool existed = Exists(path);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  s = target()->NewWritableFile(fname, file_opts, &file, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    files_[path] = FileState{};
    if (!existed) new_files_[DirOf(path)].insert(path);
  }
  *result = std::make_unique<TrackedFile>(std::move(file), this, path);
  return s;
}

rocksdb::IOStatus FaultFileSystem::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSWritableFile>* result,
    rocksdb::IODebugContext* dbg) {
  const std::string path = Normalize(fname);
  rocksdb::IOStatus s = BeforeOp(FaultOp::kCreate, path);
  if (!s.ok()) return s;
  const std::optional<uint64_t> size = SizeOf(path);
  std::unique_ptr<rocksdb::FSWritableFile> file;
  s = target()->ReopenWritableFile(fname, file_opts, &file, dbg);
  if (!s.ok()) return s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (files_.count(path) == 0) {
      // What was there before we saw it counts as durable.
      files_[path] = FileState{size.value_or(0), size.value_or(0)};
    }
    if (!size.has_value()) new_files_[DirOf(path)].insert(path);
  }
  *result = std::make_unique<TrackedFile>(std::move(file), this, path);
  return s;
}

rocksdb::IOStatus FaultFileSystem::ReuseWritableFile(
    const std::string&, const std::string&, const rocksdb::FileOptions&,
    std::unique_ptr<rocksdb::FSWritableFile>*, rocksdb::IODebugContext*) {
  // Only recycled WAL files use it (recycle_log_file_num > 0), which the
  // event log does not enable; refusing keeps the model honest.
  return rocksdb::IOStatus::NotSupported(
      "FaultFileSystem does not model ReuseWritableFile");
}

rocksdb::IOStatus FaultFileSystem::NewRandomRWFile(
    const std::string& fname, const rocksdb::FileOptions& file_opts,
    std::unique_ptr<rocksdb::FSRandomRWFile>* result,
    rocksdb::IODebugContext* dbg) {
  rocksdb::IOStatus s = BeforeOp(FaultOp::kCreate, Normalize(fname));
  if (!s.ok()) return s;
  return target()->NewRandomRWFile(fname, file_opts, result, dbg);
}

rocksdb::IOStatus FaultFileSystem::NewDirectory(
    const std::string& name, const rocksdb::IOOptions& io_opts,
    std::unique_ptr<rocksdb::FSDirectory>* result,
    rocksdb::IODebugContext* dbg) {
  std::unique_ptr<rocksdb::FSDirectory> dir;
  rocksdb::IOStatus s = target()->NewDirectory(name, io_opts, &dir, dbg);
  if (!s.ok()) return s;
  *result =
      std::make_unique<TrackedDirectory>(std::move(dir), this, Normalize(name));
  return s;
}

rocksdb::IOStatus FaultFileSystem::DeleteFile(const std::string& fname,
                                              const rocksdb::IOOptions& options,
                                              rocksdb::IODebugContext* dbg) {
  const std::string path = Normalize(fname);
  rocksdb::IOStatus s = BeforeOp(FaultOp::kDelete, path);
  if (!s.ok()) return s;
  s = target()->DeleteFile(fname, options, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    files_.erase(path);
    auto it = new_files_.find(DirOf(path));
    if (it != new_files_.end()) it->second.erase(path);
  }
  return s;
}

rocksdb::IOStatus FaultFileSystem::RenameFile(const std::string& src,
                                              const std::string& target_name,
                                              const rocksdb::IOOptions& options,
                                              rocksdb::IODebugContext* dbg) {
  const std::string from = Normalize(src);
  const std::string to = Normalize(target_name);
  rocksdb::IOStatus s = BeforeOp(FaultOp::kRename, to);
  if (!s.ok()) return s;
  PendingRename pending{from, to, std::nullopt};
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto dir_new = new_files_.find(DirOf(to));
    const bool target_is_new =
        dir_new != new_files_.end() && dir_new->second.count(to) > 0;
    if (!target_is_new) {
      // What a power loss would bring back: the target's synced content.
      pending.replaced = ReadAll(to, kRenameKeepBytesMax);
      auto state = files_.find(to);
      if (pending.replaced.has_value() && state != files_.end()) {
        pending.replaced->resize(
            std::min<uint64_t>(pending.replaced->size(), state->second.synced));
      }
    }
  }
  s = target()->RenameFile(src, target_name, options, dbg);
  if (!s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto state = files_.find(from);
  if (state != files_.end()) {
    files_[to] = state->second;
    files_.erase(from);
  } else {
    // Not written through us: it was there before, durable.
    const uint64_t size = SizeOf(to).value_or(0);
    files_[to] = FileState{size, size};
  }
  renames_.push_back(std::move(pending));
  return s;
}

rocksdb::IOStatus FaultFileSystem::LinkFile(const std::string& src,
                                            const std::string& target_name,
                                            const rocksdb::IOOptions& options,
                                            rocksdb::IODebugContext* dbg) {
  const std::string to = Normalize(target_name);
  rocksdb::IOStatus s = BeforeOp(FaultOp::kCreate, to);
  if (!s.ok()) return s;
  s = target()->LinkFile(src, target_name, options, dbg);
  if (s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    new_files_[DirOf(to)].insert(to);
  }
  return s;
}

absl::Status FaultFileSystem::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  // 1. Roll back renames their directory never made durable, newest first.
  for (auto it = renames_.rbegin(); it != renames_.rend(); ++it) {
    if (Exists(it->target)) {
      if (::rename(it->target.c_str(), it->src.c_str()) != 0) {
        return Errno("undo rename of", it->target);
      }
      auto state = files_.find(it->target);
      if (state != files_.end()) {
        files_[it->src] = state->second;
        files_.erase(state);
      }
    }
    if (it->replaced.has_value()) {
      if (absl::Status s = WriteAll(it->target, *it->replaced); !s.ok()) {
        return s;
      }
      files_[it->target] =
          FileState{it->replaced->size(), it->replaced->size()};
    }
    ++dropped_files_;
  }
  renames_.clear();
  // 2. Files created since their directory's last fsync were never there.
  for (const auto& [dir, names] : new_files_) {
    for (const std::string& path : names) {
      if (Exists(path)) {
        dropped_bytes_ += SizeOf(path).value_or(0);
        if (::unlink(path.c_str()) != 0) return Errno("delete", path);
        ++dropped_files_;
      }
      files_.erase(path);
    }
  }
  new_files_.clear();
  // 3. Everything else keeps its synced bytes only.
  for (const auto& [path, state] : files_) {
    const std::optional<uint64_t> size = SizeOf(path);
    if (!size.has_value() || *size <= state.synced) continue;
    if (::truncate(path.c_str(), static_cast<off_t>(state.synced)) != 0) {
      return Errno("truncate", path);
    }
    dropped_bytes_ += *size - state.synced;
  }
  // After the "reboot" every file is durable as it now is.
  files_.clear();
  return absl::OkStatus();
}

}  // namespace storeledger::testing
