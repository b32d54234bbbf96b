#include "support/promtool.hpp"

#include <algorithm>
#include <sstream>

#include "support/test_support.hpp"

namespace airlock::testing {

PromtoolResult PromtoolCheck(const std::string& text) {
  PromtoolResult result;
  CommandResult which = RunCommand({"sh", "-c", "command -v promtool"});
  if (which.exit_code != 0) {
    result.output = "promtool is not installed";
    return result;
  }
  result.found = true;
  TempDir dir;
  WriteAll(dir / "metrics.txt", text);
  CommandResult run = RunCommand(
      {"sh", "-c", "exec promtool check metrics < \"$1\"", "sh", (dir / "metrics.txt").string()},
      {}, 60);
  result.exit_code = run.exit_code;
  result.output = run.out + run.err;
  return result;
}

::testing::AssertionResult PromtoolAccepts(const std::string& text,
                                           const std::vector<std::string>& tolerated) {
  PromtoolResult r = PromtoolCheck(text);
  if (!r.found) {
    return ::testing::AssertionFailure()
           << "promtool is not installed: run scripts/bootstrap (it installs Debian's prometheus "
              "package, which has promtool)";
  }
  if (r.exit_code == 0) {
    return ::testing::AssertionSuccess();
  }
  if (r.exit_code == 3) {  // lint problems only: the text parsed
    std::vector<std::string> unexpected;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && std::find(tolerated.begin(), tolerated.end(), line) == tolerated.end()) {
        unexpected.push_back(line);
      }
    }
    if (unexpected.empty()) {
      return ::testing::AssertionSuccess();
    }
    auto failure = ::testing::AssertionFailure() << "promtool check metrics found problems:";
    for (const std::string& line : unexpected) {
      failure << "\n  " << line;
    }
    return failure << "\nin:\n" << text;
  }
  return ::testing::AssertionFailure()
         << "promtool check metrics exited " << r.exit_code << ": " << r.output << "\nin:\n"
         << text;
}

}  // namespace airlock::testing
