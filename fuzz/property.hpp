#pragma once
// AIRLOCK_FUZZ_REQUIRE(cond): a property the fuzz target checks on accepted input. A failure
// prints the condition and aborts, which libFuzzer reports as a crash and saves the input for.

#include <cstdio>
#include <cstdlib>

#define AIRLOCK_FUZZ_REQUIRE(cond)                                                     \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                    \
    }                                                                                  \
  } while (false)
