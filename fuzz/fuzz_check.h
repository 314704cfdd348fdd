// FUZZ_CHECK: an invariant of a fuzz target. A violation prints what failed
// and aborts, which libFuzzer (and fuzz/standalone_main.cc) report as a crash
// with the input that caused it.
#ifndef STORELEDGER_FUZZ_FUZZ_CHECK_H_
#define STORELEDGER_FUZZ_FUZZ_CHECK_H_

#include <cstdlib>
#include <iostream>

#define FUZZ_CHECK(condition, message)                                 \
  do {                                                                 \
    if (!(condition)) {                                                \
      std::cerr << __FILE__ << ":" << __LINE__ << ": FUZZ_CHECK("      \
                << #condition << ") failed: " << message << std::endl; \
      std::abort();                                                    \
    }                                                                  \
  } while (false)

#endif  // STORELEDGER_FUZZ_FUZZ_CHECK_H_
