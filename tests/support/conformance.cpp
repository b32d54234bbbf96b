#include "support/conformance.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <sstream>

#include "support/test_support.hpp"

namespace airlock::testing {

namespace fs = std::filesystem;

fs::path KnownFailuresFile() {
  return SourceDir() / "tests" / "interop" / "conformance_known_failures.txt";
}

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

KnownFailureList ParseKnownFailures(const std::string& text) {
  KnownFailureList list;
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (Trim(line).empty() || line.front() == '#') {
      continue;
    }
    auto tab = line.find('\t');
    std::string model = tab == std::string::npos ? "" : Trim(line.substr(0, tab));
    std::string reason = tab == std::string::npos ? "" : Trim(line.substr(tab + 1));
    if (model.empty() || reason.empty() || model.find('/') == std::string::npos) {
      list.problems.push_back("line " + std::to_string(number) +
                              ": want `set/name<TAB>reason`, got: " + line);
      continue;
    }
    if (!list.entries.emplace(model, KnownFailure{reason, number}).second) {
      list.problems.push_back("line " + std::to_string(number) + ": " + model + " is listed twice");
    }
  }
  return list;
}

std::string SanitisedName(const std::string& dir) {
  std::string out;
  for (char raw : dir) {
    char c = static_cast<char>(std::tolower(static_cast<unsigned char>(raw)));
    bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (alnum) {
      out += c;
    } else if (!out.empty() && std::strchr("._-", out.back()) == nullptr) {
      out += (c == '.' || c == '_') ? c : '-';
    }
  }
  while (!out.empty() && std::strchr("._-", out.back()) != nullptr) {
    out.pop_back();
  }
  return out.empty() ? "model" : out;
}

std::vector<fs::path> ModelDirs(const fs::path& set_dir) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(set_dir)) {
    if (fs::is_regular_file(e.path() / "model.onnx")) {
      dirs.push_back(e.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

}  // namespace airlock::testing
