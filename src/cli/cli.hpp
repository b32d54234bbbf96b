#pragma once
// The `airlock` command line: the SDK a data scientist and a release manager use.

namespace airlock::cli {

// Exit codes, documented in docs/cli.md.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;       // the command could not do its job (see the message)
inline constexpr int kExitUsage = 2;         // wrong flags or arguments
inline constexpr int kExitVerification = 3;  // a package or document failed verification

// Parses argv, runs the command, prints to stdout/stderr, and returns the exit code.
int Main(int argc, char** argv);

}  // namespace airlock::cli
