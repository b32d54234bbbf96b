#pragma once
// The conformance sweeps over Debian's libonnx-testdata share one list of the models known to
// fail (tests/interop/conformance_known_failures.txt, format described there) and a few helpers.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace airlock::testing {

// One line of conformance_known_failures.txt.
struct KnownFailure {
  std::string reason;  // must occur in the first line of airlock's error message
  int line = 0;
};

struct KnownFailureList {
  std::map<std::string, KnownFailure> entries;  // by "set/name"
  std::vector<std::string> problems;            // malformed or duplicate lines
};

std::filesystem::path KnownFailuresFile();
KnownFailureList ParseKnownFailures(const std::string& text);

// A directory name as an OCI repository name: lowercase letters and digits, single separators.
std::string SanitisedName(const std::string& dir);

// The model directories (holding model.onnx) of a test-data set, sorted.
std::vector<std::filesystem::path> ModelDirs(const std::filesystem::path& set_dir);

// s without leading and trailing white space.
std::string Trim(std::string s);

}  // namespace airlock::testing
