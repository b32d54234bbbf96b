#include "core/daemon.hpp"

#include <gtest/gtest.h>

namespace airlock {
namespace {

TEST(IsLoopbackHost, OnlyThisMachine) {
  for (const char* host : {"localhost", "LocalHost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
  }
  for (const char* host : {"0.0.0.0", "10.0.0.1", "127.example.com", "::", "", "hub.local"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
  }
}

}  // namespace
}  // namespace airlock
