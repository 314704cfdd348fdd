// The limits every layer shares: bytes of a command, an input line and a
// stored envelope, and the times the ledger holds. None of them is a rule
// of the business (those are in core/limits.h, which includes this file);
// storage/ checks the envelope limit without knowing any rule.
#ifndef STORELEDGER_BASE_LIMITS_H_
#define STORELEDGER_BASE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace storeledger {

// Bytes of one command, whatever the door: its protobuf encoding as
// Ledger::Execute / ExecuteBatch receive it (from gRPC's Execute and
// ExecuteStream, or parsed from an `apply` line). Past it the command is
// INVALID before anything is decided, so nothing of it is stored: the
// largest rejection envelope holds a command of at most this size.
inline constexpr size_t kCommandBytesMax = 1 << 20;  // 1 MiB
// `apply`: bytes in one input line; longer lines are INVALID before they are
// parsed. The same figure as kCommandBytesMax: a command's protobuf encoding
// is never longer than its JSON (field numbers for names, varints for
// digits, binary timestamps), so a line within it holds a command within it.
inline constexpr size_t kInputLineBytesMax = kCommandBytesMax;
// Bytes of one stored envelope; checked before write and after read.
inline constexpr size_t kEnvelopeBytesMax = 4 << 20;  // 4 MiB
// A rejection's envelope is its command plus a rule, a message and store
// ids of bounded size: it always fits.
static_assert(2 * kCommandBytesMax <= kEnvelopeBytesMax);
// Times the ledger holds (occurredAt, --as-of, --from, --to, GetStore's
// as_of): google.protobuf.Timestamp's range, 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59.999999999Z. protobuf can neither print nor parse a
// time outside it, so nothing outside it can be asked about either.
inline constexpr int64_t kTimeSecondsMin = -62'135'596'800;
inline constexpr int64_t kTimeSecondsMax = 253'402'300'799;

}  // namespace storeledger

#endif  // STORELEDGER_BASE_LIMITS_H_
