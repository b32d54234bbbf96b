#pragma once
// The `airlock-agent` command line. So far: install, list (the serving half comes next).

namespace airlock::agent {

// Parses argv, runs the command, returns the exit code (0 ok, 1 failure, 2 usage,
// 3 verification failed: the same codes as `airlock`).
int Main(int argc, char** argv);

}  // namespace airlock::agent
