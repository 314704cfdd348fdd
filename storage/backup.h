// An online, consistent copy of a ledger's database (docs/cluster.md
// "Backup"): a RocksDB checkpoint -- SST files hard-linked where the file
// system allows, copied otherwise, with the WAL -- taken while appends go on.
// The copy is the database as of one instant: a crash image at an append
// boundary, which Ledger::Open recovers as it recovers any crash (the
// projections written behind the log are replayed from it), which `audit`
// verifies, and which can seed a follower (replication/replica.h finds the
// copy's head in the partition's stream and replays only what follows).
#ifndef STORELEDGER_STORAGE_BACKUP_H_
#define STORELEDGER_STORAGE_BACKUP_H_

#include <string>

#include "absl/status/statusor.h"
#include "storage/event_log.h"

namespace storeledger {

// Writes the copy into `dir`, which must not exist (its parent must): the
// head the copy holds. kAlreadyExists when `dir` exists; kUnavailable for
// an I/O error (the partial copy is removed). Safe while `log` is appended
// to from other threads.
absl::StatusOr<Head> BackupTo(const EventLog& log, const std::string& dir);

}  // namespace storeledger

#endif  // STORELEDGER_STORAGE_BACKUP_H_
