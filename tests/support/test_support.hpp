#pragma once
// Helpers for Airlock's tests: temporary directories, running the airlock binary, test models.

#include <filesystem>
#include <string>
#include <vector>

namespace airlock::testing {

// A fresh directory under $TMPDIR, removed with its contents when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv (argv[0] looked up in PATH if it has no slash) in cwd, with stdin from /dev/null, and
// collects its output. A command still running after timeout_seconds is killed (exit_code -1).
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::filesystem::path& cwd = {}, int timeout_seconds = 300);

// Runs the airlock binary built with the tests.
CommandResult RunAirlock(const std::vector<std::string>& args,
                         const std::filesystem::path& cwd = {});

// Paths of things the tests use.
std::filesystem::path AirlockBinary();
std::filesystem::path AgentBinary();  // airlock-agent, beside airlock
std::filesystem::path SourceDir();
// Debian's libonnx-testdata (installed by scripts/bootstrap).
std::filesystem::path OnnxTestData();

std::string ReadAll(const std::filesystem::path& p);
void WriteAll(const std::filesystem::path& p, const std::string& data);

}  // namespace airlock::testing
