#pragma once
// The `airlock` command line: the SDK a data scientist and a release manager use.

#include "core/exit_codes.hpp"

namespace airlock::cli {

// Parses argv, runs the command, prints to stdout/stderr, and returns the exit code.
int Main(int argc, char** argv);

}  // namespace airlock::cli
