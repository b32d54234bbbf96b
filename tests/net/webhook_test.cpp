// WebhookClient against a cpp-httplib server on 127.0.0.1.
#include "net/webhook.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "support/mosquitto.hpp"

namespace airlock::net {
namespace {
using namespace std::chrono_literals;

// An HTTP server on a free loopback port, stopped and joined on destruction.
class TestServer {
 public:
  TestServer() {
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) {
      throw std::runtime_error("cannot bind a test HTTP server");
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() does nothing until the server runs, so the destructor needs it running.
    if (!airlock::testing::WaitUntil([this] { return server_.is_running(); })) {
      throw std::runtime_error("test HTTP server did not start");
    }
  }
  ~TestServer() {
    server_.stop();
    thread_.join();
  }
  httplib::Server& server() { return server_; }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

WebhookOptions Options(std::string url) {
  WebhookOptions o;
  o.url = std::move(url);
  o.timeout = 2s;
  o.retry_delay = 10ms;
  return o;
}

TEST(ParseHttpUrl, SplitsHostPortAndTarget) {
  auto u = ParseHttpUrl("http://example.com:8080/hooks/a?x=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->target, "/hooks/a?x=1");
  u = ParseHttpUrl("http://h");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/");
  u = ParseHttpUrl("http://h?q");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?q");
  EXPECT_EQ(ParseHttpUrl("https://h/").error().code(), ErrorCode::kUnsupported);
  EXPECT_EQ(ParseHttpUrl("ftp://h/").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(ParseHttpUrl("http://:80/"));
  EXPECT_FALSE(ParseHttpUrl("http://h:0/"));
  EXPECT_FALSE(ParseHttpUrl("http://h:x/"));
  EXPECT_FALSE(ParseHttpUrl("http://user:pw@h/"));
}

TEST(WebhookClient, PostsTheJsonBodyWithHeaders) {
  TestServer s;
  std::mutex mu;
  std::string body, content_type, auth, query;
  s.server().Post("/hooks/results", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lk(mu);
    body = req.body;
    content_type = req.get_header_value("Content-Type");
    auth = req.get_header_value("Authorization");
    query = req.get_param_value("line");
    res.status = 204;
  });
  auto options = Options(s.url("/hooks/results?line=3"));
  options.headers = {{"Authorization", "Bearer t0ken"}};
  auto client = WebhookClient::Create(options);
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->Post(R"({"label":"ok"})"));
  std::lock_guard lk(mu);
  EXPECT_EQ(body, R"({"label":"ok"})");
  EXPECT_EQ(content_type, "application/json");
  EXPECT_EQ(auth, "Bearer t0ken");
  EXPECT_EQ(query, "3");
}

TEST(WebhookClient, RetriesServerErrorsThenSucceeds) {
  TestServer s;
  std::atomic<int> calls{0};
  s.server().Post("/", [&](const httplib::Request&, httplib::Response& res) {
    res.status = ++calls < 3 ? 503 : 200;
  });
  auto client = WebhookClient::Create(Options(s.url("/")));
  ASSERT_TRUE(client);
  ASSERT_TRUE((*client)->Post("{}"));
  EXPECT_EQ(calls.load(), 3);
}

TEST(WebhookClient, GivesUpAfterTheLastAttempt) {
  TestServer s;
  std::atomic<int> calls{0};
  s.server().Post("/", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    res.status = 500;
    res.set_content("database down", "text/plain");
  });
  auto options = Options(s.url("/"));
  options.attempts = 2;
  auto client = WebhookClient::Create(options);
  ASSERT_TRUE(client);
  auto st = (*client)->Post("{}");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kIo);
  EXPECT_NE(st.error().message().find("HTTP 500: database down"), std::string::npos)
      << st.error().message();
  EXPECT_EQ(calls.load(), 2);
}

TEST(WebhookClient, DoesNotRetryAClientError) {
  TestServer s;
  std::atomic<int> calls{0};
  s.server().Post("/", [&](const httplib::Request&, httplib::Response& res) {
    ++calls;
    res.status = 400;
  });
  auto client = WebhookClient::Create(Options(s.url("/")));
  ASSERT_TRUE(client);
  auto st = (*client)->Post("{}");
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("HTTP 400"), std::string::npos);
  EXPECT_EQ(calls.load(), 1);
}

TEST(WebhookClient, TimesOutOnASlowServer) {
  TestServer s;
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  s.server().Post("/", [&](const httplib::Request&, httplib::Response& res) {
    std::unique_lock lk(mu);
    cv.wait_for(lk, 10s, [&] { return release; });  // held until the test is done
    res.status = 200;
  });
  auto options = Options(s.url("/"));
  options.timeout = 300ms;
  options.attempts = 1;
  auto client = WebhookClient::Create(options);
  ASSERT_TRUE(client);
  auto start = std::chrono::steady_clock::now();
  auto st = (*client)->Post("{}");
  auto took = std::chrono::steady_clock::now() - start;
  {
    std::lock_guard lk(mu);
    release = true;
  }
  cv.notify_all();
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kIo);
  EXPECT_LT(took, 5s);
}

TEST(WebhookClient, FailsWhenNothingListens) {
  auto options = Options("http://127.0.0.1:" + std::to_string(airlock::testing::FreePort()) + "/");
  options.attempts = 2;
  auto client = WebhookClient::Create(options);
  ASSERT_TRUE(client);
  auto st = (*client)->Post("{}");
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code(), ErrorCode::kIo);
  EXPECT_NE(st.error().message().find("127.0.0.1"), std::string::npos);
}

TEST(WebhookClient, RefusesBadOptions) {
  auto o = Options("http://127.0.0.1:1/");
  o.attempts = 0;
  EXPECT_FALSE(WebhookClient::Create(o));
  o = Options("https://127.0.0.1/");
  EXPECT_EQ(WebhookClient::Create(o).error().code(), ErrorCode::kUnsupported);
}

}  // namespace
}  // namespace airlock::net
