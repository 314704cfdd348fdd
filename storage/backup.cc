#include "storage/backup.h"

#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/checkpoint.h"

namespace storeledger {

absl::StatusOr<Head> BackupTo(const EventLog& log, const std::string& dir) {
  std::error_code error;
  if (std::filesystem::exists(dir, error)) {
    return absl::AlreadyExistsError(
        absl::StrCat("backup directory ", dir, " exists; name a new one"));
  }
  rocksdb::Checkpoint* raw = nullptr;
  rocksdb::Status s = rocksdb::Checkpoint::Create(log.db(), &raw);
  std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
  // log_size_for_flush 0: the memtables are flushed first, so the copy
  // needs little of the WAL; with several column families RocksDB copies
  // the live WAL as well, so the copy is consistent across them.
  // Between the log's writes (EventLog::RunBetweenWrites: the flush must
  // not meet a WAL file a failed write left behind).
  absl::Status copied = log.RunBetweenWrites([&] {
    if (s.ok()) s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("backup to ", dir, ": ", s.ToString()));
    }
    return absl::OkStatus();
  });
  if (!copied.ok()) {
    std::filesystem::remove_all(dir, error);
    return copied;
  }
  // The head the copy holds, read back from the copy itself.
  EventLogOptions options;
  options.read_only = true;
  options.create_if_missing = false;
  options.recover_window = false;  // only its head is read
  ASSIGN_OR_RETURN(std::unique_ptr<EventLog> copy,
                   EventLog::Open(dir, options));
  return copy->head();
}

}  // namespace storeledger
