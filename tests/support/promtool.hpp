#pragma once
// promtool (from Debian's prometheus package, which scripts/bootstrap installs) as the judge of the
// daemons' /metrics: `promtool check metrics` parses the text as Prometheus would scrape it and
// lints it (counters end in _total, base units, a HELP for every family, …).

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::testing {

struct PromtoolResult {
  bool found = false;  // promtool is on PATH
  int exit_code = -1;  // 0: clean; 3: lint problems; 1: the text does not parse
  std::string output;  // what it printed (its problems, one a line)
};

// Writes text to a temporary file and runs `promtool check metrics` with that file as its stdin.
PromtoolResult PromtoolCheck(const std::string& text);

// Success when promtool is installed, parses text and reports no problem except, one for one,
// lines in `tolerated` (exact lines of its output, for names kept for compatibility). A missing
// promtool is a failure that says to run scripts/bootstrap: a check that cannot run must not pass.
::testing::AssertionResult PromtoolAccepts(const std::string& text,
                                           const std::vector<std::string>& tolerated = {});

}  // namespace airlock::testing
