// net::ServeLoop: a stop that comes at any moment, even before the accept loop runs, ends it.
// httplib's own stop() is lost when it comes first; these cases hung before ServeLoop existed.

#include <gtest/gtest.h>
#include <httplib.h>

#include <thread>

#include "net/http_server.hpp"

namespace airlock::net {
namespace {

TEST(ServeLoopTest, AStopBeforeServeMakesServeReturnAtOnce) {
  httplib::Server server;
  ASSERT_GT(server.bind_to_any_port("127.0.0.1"), 0);
  ServeLoop loop;
  loop.Stop(server);
  loop.Serve(server);  // returns: the stop came first
  EXPECT_FALSE(server.is_running());
}

TEST(ServeLoopTest, AStopRightAfterTheThreadStartsIsNeverLost) {
  // The race is narrow; many rounds make it likely that some stop lands before the loop runs.
  for (int round = 0; round < 300; ++round) {
    httplib::Server server;
    ASSERT_GT(server.bind_to_any_port("127.0.0.1"), 0);
    ServeLoop loop;
    std::thread serving([&] { loop.Serve(server); });
    if (round % 2 == 1) {
      std::this_thread::yield();
    }
    loop.Stop(server);
    serving.join();  // hangs here without ServeLoop
    EXPECT_FALSE(server.is_running());
  }
}

TEST(ServeLoopTest, ARunningServerAnswersUntilStopped) {
  httplib::Server server;
  server.Get("/ping", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("pong", "text/plain");
  });
  int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  ServeLoop loop;
  std::thread serving([&] { loop.Serve(server); });
  httplib::Client client("127.0.0.1", port);
  auto r = client.Get("/ping");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "pong");
  loop.Stop(server);
  serving.join();
  loop.Stop(server);  // twice is harmless
  EXPECT_FALSE(client.Get("/ping"));
}

}  // namespace
}  // namespace airlock::net
