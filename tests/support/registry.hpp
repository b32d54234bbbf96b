#pragma once
// A real OCI registry for tests: Debian's docker-registry (Distribution 2.8) on a free
// 127.0.0.1 port, storing into a temporary directory, with deletes enabled.
//
// The constructor returns once GET /v2/ answers and throws std::runtime_error when it does not in
// time. The registry is killed by the destructor, and (PR_SET_PDEATHSIG) when the test process
// dies. Not thread-safe.

#include <sys/types.h>

#include <filesystem>
#include <string>

#include "support/test_support.hpp"

namespace airlock::testing {

inline constexpr const char* kDockerRegistry = "/usr/bin/docker-registry";

class DistributionRegistry {
 public:
  DistributionRegistry();
  ~DistributionRegistry();
  DistributionRegistry(const DistributionRegistry&) = delete;
  DistributionRegistry& operator=(const DistributionRegistry&) = delete;

  int port() const { return port_; }
  // "127.0.0.1:PORT", the registry part of a reference.
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Where the registry keeps the bytes of a blob (sha256 hex), to corrupt it.
  std::filesystem::path BlobDataPath(const std::string& hex) const;
  std::string Log() const;

 private:
  bool TryStart();
  void Stop();
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace airlock::testing
