// RegistryClient against a scripted HTTP server on 127.0.0.1: resumed downloads (a connection
// dropped midway, a server that ignores Range, 416), endless and wrong data, and the Basic and
// bearer-token authentication flows. The docker-registry interop is in tests/interop/.

#include "net/registry_client.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/digest.hpp"
#include "core/encoding.hpp"
#include "support/test_support.hpp"

namespace airlock::testing {
namespace {

namespace fs = std::filesystem;
using net::RegistryClient;
using net::RegistryOptions;
using net::RegistryReference;

// What the server sends for one request: raw bytes (status line, headers, body), after which it
// closes the connection. A body shorter than its Content-Length is a connection cut midway.
using Script = std::function<std::string(int n, const std::string& request)>;

// One request per connection, answered in order by a script, on a thread of its own.
class ScriptedServer {
 public:
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> requests() const {
    std::lock_guard lk(mu_);
    return requests_;
  }

 private:
  void Run() {
    for (int n = 0; !stop_; ++n) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        return;
      }
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t got = ::recv(c, buf, sizeof(buf), 0);
        if (got <= 0) {
          break;
        }
        request.append(buf, static_cast<std::size_t>(got));
      }
      {
        std::lock_guard lk(mu_);
        requests_.push_back(request);
      }
      std::string answer = script_(n, request);
      ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_RDWR);
      ::close(c);
    }
  }
  Script script_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

std::string Answer(int status, const std::string& reason, const std::string& body,
                   const std::vector<std::string>& headers = {},
                   std::optional<std::size_t> content_length = std::nullopt) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  for (const auto& h : headers) {
    out += h + "\r\n";
  }
  out += "Content-Length: " + std::to_string(content_length.value_or(body.size())) + "\r\n";
  out += "Connection: close\r\n\r\n" + body;
  return out;
}

std::string Blob() {
  std::string blob;
  for (int i = 0; i < 100000; ++i) {
    blob += static_cast<char>('a' + i % 26);
  }
  return blob;
}

// Full headers, half the body, then the connection closes.
std::string HalfAnswer(const std::string& blob) {
  return Answer(200, "OK", blob.substr(0, blob.size() / 2), {}, blob.size());
}

std::string RangeAnswer(const std::string& blob, std::size_t from) {
  return Answer(206, "Partial Content", blob.substr(from),
                {"Content-Range: bytes " + std::to_string(from) + "-" +
                 std::to_string(blob.size() - 1) + "/" + std::to_string(blob.size())});
}

net::RegistryCredentials Creds(std::string user, std::string password) {
  net::RegistryCredentials c;
  c.username = std::move(user);
  c.password = std::move(password);
  return c;
}

RegistryOptions Options(std::string registry, bool plain_http = false) {
  RegistryOptions o;
  o.registry = std::move(registry);
  o.plain_http = plain_http;
  return o;
}

class RegistryClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<RegistryClient> Client(const std::string& address,
                                         net::RegistryCredentials creds = {}) {
    RegistryOptions options;
    options.registry = address;
    options.credentials = std::move(creds);
    options.retry_delay = std::chrono::milliseconds(1);
    options.max_attempts = 4;
    auto c = RegistryClient::Create(options);
    EXPECT_TRUE(c.has_value()) << c.error().ToString();
    return std::move(*c);
  }
  fs::path file() const { return dir_ / "blob"; }

  TempDir dir_;
  std::string blob_ = Blob();
  Digest digest_ = Sha256Of(blob_);
};

TEST_F(RegistryClientTest, ResumesWithRangeAfterTheConnectionBreaks) {
  std::size_t half = blob_.size() / 2;
  ScriptedServer server([&](int n, const std::string&) {
    return n == 0 ? HalfAnswer(blob_) : RangeAnswer(blob_, half);
  });
  auto client = Client(server.address());
  std::uint64_t last_progress = 0;
  auto s = client->DownloadBlob("models/affine", digest_, blob_.size(), file(),
                                [&](std::uint64_t done, std::uint64_t) { last_progress = done; });
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(ReadAll(file()), blob_);
  EXPECT_EQ(last_progress, blob_.size());
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_NE(requests[0].find("GET /v2/models/affine/blobs/" + digest_.ToString()),
            std::string::npos);
  EXPECT_EQ(requests[0].find("Range:"), std::string::npos);
  EXPECT_NE(requests[1].find("Range: bytes=" + std::to_string(half) + "-"), std::string::npos)
      << requests[1];
}

TEST_F(RegistryClientTest, StartsAgainWhenTheServerIgnoresRange) {
  ScriptedServer server([&](int n, const std::string&) {
    return n == 0 ? HalfAnswer(blob_) : Answer(200, "OK", blob_);
  });
  auto client = Client(server.address());
  auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(ReadAll(file()), blob_);
}

TEST_F(RegistryClientTest, StartsAgainAfter416) {
  ScriptedServer server([&](int n, const std::string&) {
    if (n == 0) {
      return HalfAnswer(blob_);
    }
    return n == 1 ? Answer(416, "Range Not Satisfiable", "") : Answer(200, "OK", blob_);
  });
  auto client = Client(server.address());
  auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  EXPECT_EQ(ReadAll(file()), blob_);
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[2].find("Range:"), std::string::npos) << "the restart asked for a range";
}

TEST_F(RegistryClientTest, RefusesMoreBytesThanExpectedAndLeavesNoFile) {
  // A Content-Length that says more, and an answer without one that just keeps going.
  for (bool with_length : {true, false}) {
    SCOPED_TRACE(with_length ? "Content-Length" : "close-delimited");
    std::string endless = blob_ + std::string(1 << 20, 'x');
    ScriptedServer server([&](int, const std::string&) {
      return with_length ? Answer(200, "OK", endless)
                         : "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + endless;
    });
    auto client = Client(server.address());
    auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error().code(), ErrorCode::kCorrupt) << s.error().ToString();
    EXPECT_FALSE(fs::exists(file()));
    EXPECT_EQ(server.requests().size(), 1u) << "endless data is not retried";
  }
}

TEST_F(RegistryClientTest, RefusesBytesThatDoNotMatchTheDigest) {
  std::string other = blob_;
  other[1234] ^= 1;
  ScriptedServer server([&](int, const std::string&) { return Answer(200, "OK", other); });
  auto client = Client(server.address());
  auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kCorrupt);
  EXPECT_NE(s.error().ToString().find("does not match its digest"), std::string::npos)
      << s.error().ToString();
  EXPECT_FALSE(fs::exists(file()));
}

TEST_F(RegistryClientTest, GivesUpAfterMaxAttempts) {
  // Breaks every time, and ignores Range.
  ScriptedServer server([&](int, const std::string&) { return HalfAnswer(blob_); });
  auto client = Client(server.address());
  auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable) << s.error().ToString();
  EXPECT_NE(s.error().ToString().find("gave up after 4 attempts"), std::string::npos)
      << s.error().ToString();
  EXPECT_EQ(server.requests().size(), 4u);
  EXPECT_FALSE(fs::exists(file()));
}

// With a minimum rate, a download has a deadline (the grace, and its size at that rate) for all
// its attempts together: a server too slow for it is given up on, not tried again, and whatever
// it would send later is not waited for. Here the server answers only after the deadline.
TEST_F(RegistryClientTest, AServerTooSlowForTheDeadlineIsGivenUpOnWithoutMoreAttempts) {
  ScriptedServer server([&](int, const std::string&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return Answer(200, "OK", blob_);
  });
  RegistryOptions options = Options(server.address());
  options.min_download_rate = 1 << 20;
  options.download_grace = std::chrono::milliseconds(300);
  auto client = RegistryClient::Create(options).value();
  auto s = client->DownloadBlob("m", digest_, blob_.size(), file());
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kTimeout) << s.error().ToString();
  EXPECT_NE(s.error().ToString().find("not done by its deadline"), std::string::npos)
      << s.error().ToString();
  EXPECT_NE(s.error().ToString().find("gave up when its deadline passed"), std::string::npos)
      << s.error().ToString();
  EXPECT_FALSE(fs::exists(file()));
  EXPECT_EQ(server.requests().size(), 1u) << "a download past its deadline is not tried again";

  auto m = client->FetchManifest("m", digest_.ToString(), 1024);
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code(), ErrorCode::kTimeout) << m.error().ToString();
  EXPECT_NE(m.error().ToString().find("not done by its deadline"), std::string::npos)
      << m.error().ToString();
}

TEST_F(RegistryClientTest, FetchBlobRefusesAnAnswerLongerThanTheSize) {
  ScriptedServer server([&](int, const std::string&) { return Answer(200, "OK", blob_ + "x"); });
  auto client = Client(server.address());
  auto r = client->FetchBlob("m", digest_, blob_.size());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), ErrorCode::kCorrupt) << r.error().ToString();
}

// The bearer flow as Distribution with token auth does it: 401 with a challenge, the token
// endpoint with Basic credentials, then the request again with the token.
TEST_F(RegistryClientTest, BearerTokenChallenge) {
  std::string basic = "Basic " + Base64Encode("alice:s3cret-pass");
  std::string realm;
  ScriptedServer server([&](int, const std::string& request) {
    if (request.starts_with("GET /token?")) {
      if (request.find("Authorization: " + basic) == std::string::npos ||
          request.find("service=tests") == std::string::npos ||
          request.find("scope=repository%3Amodels%2Faffine%3Apull") == std::string::npos) {
        return Answer(401, "Unauthorized", R"({"errors":[{"code":"UNAUTHORIZED"}]})");
      }
      return Answer(200, "OK", R"({"token":"tok-123","expires_in":300})");
    }
    if (request.find("Authorization: Bearer tok-123") != std::string::npos) {
      return Answer(200, "OK", blob_, {"Docker-Content-Digest: " + digest_.ToString()});
    }
    return Answer(401, "Unauthorized", R"({"errors":[{"code":"UNAUTHORIZED","message":"no"}]})",
                  {"WWW-Authenticate: Bearer realm=\"" + realm +
                   "\",service=\"tests\",scope=\"repository:models/affine:pull\""});
  });
  realm = "http://" + server.address() + "/token";

  auto client = Client(server.address(), Creds("alice", "s3cret-pass"));
  auto r = client->FetchBlob("models/affine", digest_, blob_.size());
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(*r, blob_);
  // The token is reused for the same scope: no second trip to the token service.
  auto again = client->FetchBlob("models/affine", digest_, blob_.size());
  ASSERT_TRUE(again.has_value()) << again.error().ToString();
  auto requests = server.requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_TRUE(requests[1].starts_with("GET /token?"));

  // Wrong password: a 401 that says so, and never the password itself.
  auto wrong = Client(server.address(), Creds("alice", "wrong-one"));
  auto refused = wrong->FetchBlob("models/affine", digest_, blob_.size());
  ASSERT_FALSE(refused.has_value());
  std::string message = refused.error().ToString();
  EXPECT_NE(message.find("refused the credentials"), std::string::npos) << message;
  EXPECT_EQ(message.find("wrong-one"), std::string::npos) << message;

  // No credentials at all: what to set.
  auto anonymous = Client(server.address());
  auto anon = anonymous->FetchBlob("models/affine", digest_, blob_.size());
  ASSERT_FALSE(anon.has_value());
  EXPECT_NE(anon.error().ToString().find("AIRLOCK_REGISTRY_USER"), std::string::npos)
      << anon.error().ToString();
}

TEST_F(RegistryClientTest, BasicChallenge) {
  std::string basic = "Authorization: Basic " + Base64Encode("bob:pw");
  ScriptedServer server([&](int, const std::string& request) {
    if (request.find(basic) != std::string::npos) {
      return Answer(200, "OK", "{}");
    }
    return Answer(401, "Unauthorized", "", {"WWW-Authenticate: Basic realm=\"registry\""});
  });
  auto client = Client(server.address(), Creds("bob", "pw"));
  auto s = client->Ping();
  ASSERT_TRUE(s.has_value()) << s.error().ToString();
  auto anonymous = Client(server.address());
  auto refused = anonymous->Ping();
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().ToString().find("wants credentials"), std::string::npos);
}

TEST_F(RegistryClientTest, UnreachableRegistrySaysSo) {
  int port;
  {
    ScriptedServer server([](int, const std::string&) { return std::string(); });
    port = std::stoi(server.address().substr(10));
  }
  auto client = Client("127.0.0.1:" + std::to_string(port));
  auto s = client->Ping();
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(s.error().ToString().find("cannot reach the registry"), std::string::npos)
      << s.error().ToString();
}

TEST(RegistryReferenceTest, ParsesTagsDigestsAndRefusesTheRest) {
  auto r = RegistryReference::Parse("localhost:5000/models/affine:1.0.0");
  ASSERT_TRUE(r.has_value()) << r.error().ToString();
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "models/affine");
  EXPECT_EQ(r->tag, "1.0.0");
  EXPECT_FALSE(r->digest);

  std::string hex(64, 'a');
  auto d = RegistryReference::Parse("registry.example.com/affine@sha256:" + hex);
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->registry, "registry.example.com");
  EXPECT_EQ(d->repository, "affine");
  EXPECT_TRUE(d->tag.empty());
  EXPECT_EQ(d->Reference(), "sha256:" + hex);

  auto untagged = RegistryReference::Parse("[::1]:5000/a/b");
  ASSERT_TRUE(untagged.has_value()) << untagged.error().ToString();
  EXPECT_EQ(untagged->registry, "[::1]:5000");
  EXPECT_TRUE(untagged->Reference().empty());

  for (const char* bad : {"affine:1.0", "localhost:5000/Models/affine", "localhost:5000/a//b",
                          "localhost:5000/a:", "localhost:5000/a:-x", "localhost:5000/a@sha256:1",
                          "local host/a", "localhost:5000/", "localhost:/a"}) {
    EXPECT_FALSE(RegistryReference::Parse(bad).has_value()) << bad;
  }
  EXPECT_TRUE(net::IsLoopbackRegistry("127.0.0.1:5000"));
  EXPECT_TRUE(net::IsLoopbackRegistry("localhost"));
  EXPECT_TRUE(net::IsLoopbackRegistry("[::1]:80"));
  EXPECT_FALSE(net::IsLoopbackRegistry("127.example.com"));
  EXPECT_FALSE(net::IsLoopbackRegistry("registry.example.com:443"));
}

TEST(RegistryClientCreateTest, UsesHttpsExceptOnLoopbackOrWhenAsked) {
  auto remote = RegistryClient::Create(Options("registry.example.com"));
  ASSERT_TRUE(remote.has_value());
  EXPECT_EQ((*remote)->base_url(), "https://registry.example.com");
  auto local = RegistryClient::Create(Options("127.0.0.1:5000"));
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ((*local)->base_url(), "http://127.0.0.1:5000");
  auto plain = RegistryClient::Create(Options("registry.lan:5000", true));
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ((*plain)->base_url(), "http://registry.lan:5000");
}

}  // namespace
}  // namespace airlock::testing
