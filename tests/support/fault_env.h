// A RocksDB file system for tests that crashes and fails on purpose
// (LevelDB's fault_injection_test.cc is the model).
//
// FaultFileSystem wraps a real file system (the files are real, in a TempDir)
// and remembers, per file written through it, how many bytes were appended
// and how many of those a Sync/Fsync made durable, which files were created
// or renamed since their directory was last fsynced, and what a rename
// replaced. On a simulated power loss:
//
//   1. SetActive(false) (or CrashAfterOps): the machine is off. Every later
//      write, sync, create, rename or delete fails with an IOError and
//      changes nothing, so whatever the database does while it closes
//      cannot make anything more durable.
//   2. The caller closes the database (its errors are expected).
//   3. DropUnsyncedData(): undoes what a power loss would undo: renames whose
//      directory was not fsynced are rolled back (the replaced file comes
//      back), files created since their directory's last fsync are deleted,
//      and every other file is truncated to its last synced size.
//   4. SetActive(true) and reopen.
//
// Not modelled: files deleted without a directory fsync do not come back
// (RocksDB only deletes obsolete files, which recovery ignores anyway), and
// unsynced bytes are dropped whole, never partly kept or garbled.
//
// Error injection (InjectError) fails chosen operations with an IOError while
// the file system stays up: a failed WAL append or sync, a failed table file
// write during a flush, ...
//
// Thread-safe: RocksDB calls it from its write and background threads.
#ifndef STORELEDGER_TESTS_SUPPORT_FAULT_ENV_H_
#define STORELEDGER_TESTS_SUPPORT_FAULT_ENV_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace storeledger::testing {

// The kind of a RocksDB file, from its name.
enum class FileKind { kAny, kWal, kTable, kManifest, kOther };
FileKind KindOfFile(absl::string_view path);

// The write-ahead log files (kWal) in the RocksDB directory `dir`: what an
// open replays. The directory may be live: a file RocksDB deletes between
// the listing and the reading of its size is not counted. Any other error
// (no such directory, a file that cannot be read) names the path.
struct WalFiles {
  int count = 0;
  uint64_t bytes = 0;
};
absl::StatusOr<WalFiles> ListWal(const std::string& dir);

// The operations that can be made to fail.
enum class FaultOp {
  kAny,
  kAppend,
  kSync,
  kCreate,
  kRename,
  kDelete,
  kDirSync
};

class FaultFileSystem : public rocksdb::FileSystemWrapper {
 public:
  explicit FaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base =
                               rocksdb::FileSystem::Default());
  ~FaultFileSystem() override;

  const char* Name() const override { return "StoreledgerFaultFileSystem"; }

  // An Env over this file system, for EventLogOptions::env /
  // LedgerOptions::env. Owned by this object. Its sleeps are capped at a
  // millisecond: RocksDB waits a second after each failed background flush
  // or compaction, which would make the error tests slow for nothing.
  rocksdb::Env* env() const { return env_.get(); }

  // ---- power loss
  // false: the machine is off (see the file comment). Default: true.
  void SetActive(bool active);
  bool active() const;
  // The machine goes off just before the (n+1)-th mutating operation from now
  // (append, sync, create, rename, delete, directory fsync); n = 0 means the
  // next one fails. Counting is global across files and threads.
  void CrashAfterOps(int64_t n);
  // Step 3 of the file comment. REQUIRES: the database is closed.
  absl::Status DropUnsyncedData();
  // Bytes DropUnsyncedData threw away, and files it deleted or restored,
  // since construction.
  uint64_t dropped_bytes() const;
  uint64_t dropped_files() const;

  // Whether Sync, Fsync and directory fsyncs reach the real disk. The model
  // above decides what survives a simulated power loss, so by default they
  // are only recorded: a test then runs at page-cache speed. Default: false.
  void SetRealSync(bool real_sync);
  bool real_sync() const;

  // ---- error injection
  // The (skip+1)-th operation `op` on a file of kind `kind` from now fails
  // with IOError("injected ..."); with `sticky`, every later matching one
  // fails too (a disk that stays broken).
  void InjectError(FileKind kind, FaultOp op, int64_t skip = 0,
                   bool sticky = false);
  void ClearErrors();
  // Operations failed by InjectError since construction.
  int64_t injected_errors() const;

  // ---- rocksdb::FileSystem
  rocksdb::IOStatus NewWritableFile(
      const std::string& fname, const rocksdb::FileOptions& file_opts,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& fname, const rocksdb::FileOptions& file_opts,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(
      const std::string& fname, const std::string& old_fname,
      const rocksdb::FileOptions& file_opts,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewRandomRWFile(
      const std::string& fname, const rocksdb::FileOptions& file_opts,
      std::unique_ptr<rocksdb::FSRandomRWFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus NewDirectory(const std::string& name,
                                 const rocksdb::IOOptions& io_opts,
                                 std::unique_ptr<rocksdb::FSDirectory>* result,
                                 rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus DeleteFile(const std::string& fname,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus RenameFile(const std::string& src,
                               const std::string& target,
                               const rocksdb::IOOptions& options,
                               rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus LinkFile(const std::string& src, const std::string& target,
                             const rocksdb::IOOptions& options,
                             rocksdb::IODebugContext* dbg) override;

  // Called by the file and directory wrappers (fault_env.cc).
  rocksdb::IOStatus BeforeOp(FaultOp op, const std::string& path);
  void OnAppended(const std::string& path, uint64_t bytes);
  void OnTruncated(const std::string& path, uint64_t size);
  void OnSynced(const std::string& path);
  void OnDirSynced(const std::string& dir);

 private:
  struct FileState {
    uint64_t size = 0;    // bytes written through us (or there at open)
    uint64_t synced = 0;  // of which made durable by Sync/Fsync
  };
  // A rename not yet made durable by an fsync of its directory.
  struct PendingRename {
    std::string src;
    std::string target;
    std::optional<std::string> replaced;  // target's durable content before
  };
  struct Rule {
    FileKind kind;
    FaultOp op;
    int64_t skip;
    bool sticky;
  };

  std::unique_ptr<rocksdb::Env> composite_env_;  // RocksDB's Env over us
  std::unique_ptr<rocksdb::Env> env_;            // the above, sleeps capped
  mutable std::mutex mu_;
  bool active_ = true;
  bool real_sync_ = false;
  int64_t ops_until_crash_ = -1;  // < 0: no crash scheduled
  std::map<std::string, FileState> files_;
  // Per directory: files created there since its last fsync.
  std::map<std::string, std::set<std::string>> new_files_;
  std::vector<PendingRename> renames_;  // in the order they happened
  std::vector<Rule> rules_;
  int64_t injected_errors_ = 0;
  uint64_t dropped_bytes_ = 0;
  uint64_t dropped_files_ = 0;
};

}  // namespace storeledger::testing

#endif  // STORELEDGER_TESTS_SUPPORT_FAULT_ENV_H_
