// SL_CHECK(condition, message): an invariant of our own logic, checked in
// every build type (release included). When `condition` is false it prints
// "file:line: invariant broken: <condition>: <message>" to stderr and aborts:
// a broken invariant is a crash, never a wrong balance (TigerBeetle's rule,
// STYLE.md). `message` is a string literal or anything streamable to
// std::cerr, evaluated only when the check fails.
//
// Only for what our code guarantees (positions it assigned, postings it
// derived). What comes from users or disks is validated and answered with a
// status, never checked here. Header-only, no dependencies; thread-safe.
#ifndef STORELEDGER_BASE_CHECK_H_
#define STORELEDGER_BASE_CHECK_H_

#include <cstdlib>
#include <iostream>

#define SL_CHECK(condition, message)                                 \
  do {                                                               \
    if (__builtin_expect(!(condition), 0)) {                         \
      std::cerr << __FILE__ << ":" << __LINE__                       \
                << ": invariant broken: " #condition ": " << message \
                << std::endl;                                        \
      std::abort();                                                  \
    }                                                                \
  } while (false)

#endif  // STORELEDGER_BASE_CHECK_H_
