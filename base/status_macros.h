// The two status macros Abseil 20220623 does not ship yet. Use them for every
// fallible call that returns absl::Status or absl::StatusOr<T>.
#ifndef STORELEDGER_BASE_STATUS_MACROS_H_
#define STORELEDGER_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SL_CONCAT_INNER_(a, b) a##b
#define SL_CONCAT_(a, b) SL_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the caller if not ok.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status sl_status_ = (expr);      \
    if (!sl_status_.ok()) return sl_status_; \
  } while (false)

// `lhs` = the value of `rexpr` (an absl::StatusOr<T>), or returns its status.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(SL_CONCAT_(sl_statusor_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // STORELEDGER_BASE_STATUS_MACROS_H_
