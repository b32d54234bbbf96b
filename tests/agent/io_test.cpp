// The agent's pipeline sources and sinks: folder and MQTT sources, MQTT/webhook/JSONL sinks, and
// the Route that joins them, against a real Mosquitto broker and real files.
#include "agent/io.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <set>

#include "net/mqtt.hpp"
#include "support/mosquitto.hpp"
#include "support/test_support.hpp"

namespace airlock::agent {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using airlock::testing::MosquittoBroker;
using airlock::testing::ReadAll;
using airlock::testing::TempDir;
using airlock::testing::WaitUntil;
using airlock::testing::WriteAll;

// A pipeline stand-in: reports what it saw, refuses inputs whose bytes are "bad".
class FakePipeline {
 public:
  PipelineHandler Handler() {
    return [this](const SourceInput& in) -> Result<json> {
      std::lock_guard lk(mu_);
      seen_.push_back(in);
      if (in.bytes == "bad") {
        return Fail(ErrorCode::kInvalidArgument, "not an image: " + in.name);
      }
      return json{{"label", "ok"}, {"size", in.bytes.size()}, {"content_type", in.content_type}};
    };
  }
  std::vector<SourceInput> seen() {
    std::lock_guard lk(mu_);
    return seen_;
  }
  std::size_t count() { return seen().size(); }

 private:
  std::mutex mu_;
  std::vector<SourceInput> seen_;
};

// Writes a file the way a careful producer does: a dotfile, renamed into place when complete.
void Drop(const fs::path& dir, const std::string& name, const std::string& bytes) {
  WriteAll(dir / ("." + name + ".part"), bytes);
  fs::rename(dir / ("." + name + ".part"), dir / name);
}

std::vector<std::string> Lines(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream in(p);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

json FolderConfig(const fs::path& dir) {
  return {{"type", "folder"},
          {"path", dir.string()},
          {"pattern", "*.jpg"},
          {"settle", "100ms"},
          {"rescan", "200ms"}};
}

std::unique_ptr<net::MqttClient> Client(const MosquittoBroker& broker, const std::string& id) {
  net::MqttOptions o;
  o.broker_url = broker.url();
  o.client_id = id;
  o.min_retry = 50ms;
  o.max_retry = 500ms;
  auto c = net::MqttClient::Create(o);
  EXPECT_TRUE(c);
  EXPECT_TRUE((*c)->WaitConnected(10s));
  return std::move(*c);
}

TEST(Sinks, RefuseBadConfigNamingTheField) {
  IoContext none;
  auto expect_error = [&](const json& config, const std::string& words) {
    auto sink = MakeSink(config, none);
    ASSERT_FALSE(sink) << config.dump();
    EXPECT_EQ(sink.error().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(sink.error().ToString().find(words), std::string::npos)
        << sink.error().ToString() << " should mention " << words;
  };
  expect_error({{"type", "kafka"}}, "unknown sink type");
  expect_error({{"type", "jsonl"}}, "'path'");
  expect_error({{"type", "jsonl"}, {"path", "/tmp/x"}, {"max_byte", 5}}, "unknown field 'max_byte'");
  expect_error({{"type", "jsonl"}, {"path", "/tmp/x"}, {"when_full", "wrap"}}, "'when_full'");
  expect_error({{"type", "mqtt"}, {"topic", "a/b"}}, "no MQTT broker");
  expect_error({{"type", "mqtt"}, {"topic", "a/#"}}, "wildcards");
  expect_error({{"type", "webhook"}, {"url", "http://h/"}, {"timeout", "soon"}}, "'timeout'");
  expect_error({{"type", "webhook"}, {"url", "ftp://h/"}}, "http://");
  expect_error(json::array(), "object");

  auto source = MakeSource({{"type", "folder"}, {"path", "/x"}, {"done", "keep"}}, none);
  ASSERT_FALSE(source);
  EXPECT_NE(source.error().message().find("'done'"), std::string::npos);
  EXPECT_FALSE(MakeSource({{"type", "mqtt"}, {"topic", "t"}}, none));
  EXPECT_FALSE(MakeSource({{"type", "camera"}}, none));
}

TEST(JsonlSink, AppendsOneCompleteLinePerResult) {
  TempDir tmp;
  fs::path path = tmp / "out/results.jsonl";
  auto sink = MakeSink({{"type", "jsonl"}, {"path", path.string()}}, {});
  ASSERT_TRUE(sink) << sink.error().ToString();
  ASSERT_TRUE((*sink)->Deliver({{"n", 1}}));
  ASSERT_TRUE((*sink)->Deliver({{"n", 2}, {"text", "line\nbreak"}}));
  auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["n"], 1);
  EXPECT_EQ(json::parse(lines[1])["text"], "line\nbreak");
  EXPECT_EQ((*sink)->Describe(), "jsonl:" + path.string());

  // Concurrent deliveries never interleave inside a line.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        EXPECT_TRUE((*sink)->Deliver({{"t", t}, {"i", i}, {"pad", std::string(500, 'x')}}));
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  lines = Lines(path);
  ASSERT_EQ(lines.size(), 202u);
  for (const auto& line : lines) {
    EXPECT_TRUE(json::accept(line)) << line;
  }
}

TEST(JsonlSink, RotatesPastMaxBytes) {
  TempDir tmp;
  fs::path path = tmp / "results.jsonl";
  auto sink = MakeSink({{"type", "jsonl"}, {"path", path.string()}, {"max_bytes", 100}, {"keep", 2}},
                       {});
  ASSERT_TRUE(sink);
  json result = {{"pad", std::string(30, 'x')}};  // 41 bytes a line
  for (int i = 0; i < 7; ++i) {
    result["i"] = i;
    ASSERT_TRUE((*sink)->Deliver(result));
  }
  // Two lines fit in 100 bytes: 0,1 | 2,3 | 4,5 | 6 — keep 2 rotated files, the oldest dropped.
  EXPECT_EQ(Lines(path).size(), 1u);
  EXPECT_EQ(Lines(path.string() + ".1").size(), 2u);
  EXPECT_EQ(json::parse(Lines(path.string() + ".2")[0])["i"], 2);
  EXPECT_FALSE(fs::exists(path.string() + ".3"));
  EXPECT_LE(fs::file_size(path.string() + ".1"), 100u);

  auto huge = (*sink)->Deliver({{"pad", std::string(200, 'x')}});
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::kInvalidArgument);
}

TEST(JsonlSink, RefusesWhenFullIfToldTo) {
  TempDir tmp;
  fs::path path = tmp / "results.jsonl";
  auto sink = MakeSink(
      {{"type", "jsonl"}, {"path", path.string()}, {"max_bytes", 20}, {"when_full", "refuse"}}, {});
  ASSERT_TRUE(sink);
  ASSERT_TRUE((*sink)->Deliver({{"a", 1}}));  // 8 bytes
  ASSERT_TRUE((*sink)->Deliver({{"b", 2}}));
  auto full = (*sink)->Deliver({{"c", 3}});
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ErrorCode::kIo);
  EXPECT_EQ(Lines(path).size(), 2u);
  EXPECT_FALSE(fs::exists(path.string() + ".1"));
}

TEST(Route, FolderToHandlerToMqttSink) {
  MosquittoBroker broker;
  auto agent = Client(broker, "agent");
  auto watcher = Client(broker, "watcher");
  std::mutex mu;
  std::vector<net::MqttMessage> results;
  ASSERT_TRUE(watcher->Subscribe("dev/d1/results/#", 1, [&](const net::MqttMessage& m) {
    std::lock_guard lk(mu);
    results.push_back(m);
  }));

  TempDir tmp;
  fs::path in = tmp / "in";
  fs::create_directories(in);
  WriteAll(in / "early.jpg", "EARLY");  // there before the agent starts
  fs::last_write_time(in / "early.jpg", fs::file_time_type::clock::now() - 1h);
  WriteAll(in / ".hidden.jpg", "dotfile");
  WriteAll(in / "notes.txt", "not matching");

  FakePipeline pipeline;
  json config = {{"name", "inspect"},
                 {"sources", {FolderConfig(in)}},
                 {"sinks", {{{"type", "mqtt"}, {"topic", "dev/d1/results/inspect"}}}}};
  IoContext ctx{.mqtt = agent.get(), .clock = nullptr};
  auto route = Route::Create(config, pipeline.Handler(), ctx);
  ASSERT_TRUE(route) << route.error().ToString();
  ASSERT_TRUE((*route)->Start());
  Drop(in, "part-001.jpg", std::string(1234, 'j'));

  ASSERT_TRUE(WaitUntil([&] {
    std::lock_guard lk(mu);
    return results.size() >= 2;
  }));
  std::set<std::string> inputs;
  {
    std::lock_guard lk(mu);
    for (const auto& m : results) {
      auto doc = json::parse(m.payload);
      inputs.insert(doc["input"].get<std::string>());
      EXPECT_EQ(doc["label"], "ok");
      EXPECT_EQ(doc["id"].get<std::string>().size(), 32u);
      EXPECT_TRUE(doc.contains("timestamp"));
      EXPECT_EQ(m.content_type, "application/json");
      if (doc["input"] == "part-001.jpg") {
        EXPECT_EQ(doc["size"], 1234);
        EXPECT_EQ(doc["content_type"], "image/jpeg");
      }
    }
  }
  EXPECT_EQ(inputs, (std::set<std::string>{"early.jpg", "part-001.jpg"}));
  EXPECT_TRUE(WaitUntil([&] { return fs::exists(in / "processed/part-001.jpg"); }));
  EXPECT_TRUE(fs::exists(in / "processed/early.jpg"));
  EXPECT_FALSE(fs::exists(in / "part-001.jpg"));
  EXPECT_TRUE(fs::exists(in / ".hidden.jpg"));
  EXPECT_TRUE(fs::exists(in / "notes.txt"));
  auto c = (*route)->counters();
  EXPECT_EQ(c.processed, 2u);
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.delivered, 2u);
  EXPECT_EQ(c.delivery_failures, 0u);
  EXPECT_EQ(pipeline.count(), 2u);
}

TEST(Route, ResultsCanBeReadWithMosquittoSub) {
  MosquittoBroker broker;
  auto agent = Client(broker, "agent");
  TempDir tmp;
  FakePipeline pipeline;
  json config = {{"sources", {FolderConfig(tmp.path())}},
                 {"sinks", {{{"type", "mqtt"}, {"topic", "dev/d1/results/m"}, {"retain", true}}}}};
  auto route = Route::Create(config, pipeline.Handler(), {.mqtt = agent.get(), .clock = nullptr});
  ASSERT_TRUE(route);
  ASSERT_TRUE((*route)->Start());
  Drop(tmp.path(), "a.jpg", "abc");
  ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().delivered == 1; }));
  // The result is retained, so a subscriber that comes later still gets it.
  auto sub = airlock::testing::RunCommand(
      {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker.port()), "-V", "mqttv5",
       "-t", "dev/d1/results/#", "-C", "1", "-W", "10", "-F", "%t|%p"},
      {}, 30);
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  auto bar = sub.out.find('|');
  ASSERT_NE(bar, std::string::npos) << sub.out;
  EXPECT_EQ(sub.out.substr(0, bar), "dev/d1/results/m");
  auto doc = json::parse(sub.out.substr(bar + 1));
  EXPECT_EQ(doc["input"], "a.jpg");
  EXPECT_EQ(doc["size"], 3);
}

TEST(Route, FailedInputGoesToFailedWithItsReason) {
  TempDir tmp;
  FakePipeline pipeline;
  json config = {{"sources", {FolderConfig(tmp.path())}},
                 {"sinks", {{{"type", "jsonl"}, {"path", (tmp / "out/results.jsonl").string()}}}}};
  auto route = Route::Create(config, pipeline.Handler(), {});
  ASSERT_TRUE(route);
  ASSERT_TRUE((*route)->Start());
  Drop(tmp.path(), "broken.jpg", "bad");
  Drop(tmp.path(), "fine.jpg", "good");
  ASSERT_TRUE(WaitUntil([&] {
    return fs::exists(tmp / "failed/broken.jpg") && fs::exists(tmp / "processed/fine.jpg");
  }));
  std::string reason = ReadAll(tmp / "failed/broken.jpg.error.txt");
  EXPECT_NE(reason.find("not an image: broken.jpg"), std::string::npos) << reason;
  EXPECT_EQ(ReadAll(tmp / "failed/broken.jpg"), "bad");  // the input, untouched
  auto c = (*route)->counters();
  EXPECT_EQ(c.failed, 1u);
  EXPECT_EQ(c.processed, 1u);
  EXPECT_EQ(Lines(tmp / "out/results.jsonl").size(), 1u);

  // The same name again does not overwrite the first failure.
  Drop(tmp.path(), "broken.jpg", "bad");
  // The reason is written before the input is moved beside it: wait for both.
  ASSERT_TRUE(WaitUntil([&] {
    return fs::exists(tmp / "failed/broken.1.jpg.error.txt") &&
           fs::exists(tmp / "failed/broken.1.jpg");
  }));
  EXPECT_TRUE(fs::exists(tmp / "failed/broken.jpg"));
}

TEST(Route, RestartDoesNotReprocess) {
  TempDir tmp;
  json config = {{"sources", {FolderConfig(tmp.path())}},
                 {"sinks", {{{"type", "jsonl"}, {"path", (tmp / "results.jsonl").string()}}}}};
  {
    FakePipeline first;
    auto route = Route::Create(config, first.Handler(), {});
    ASSERT_TRUE(route);
    ASSERT_TRUE((*route)->Start());
    Drop(tmp.path(), "one.jpg", "1");
    Drop(tmp.path(), "two.jpg", "bad");
    ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().processed + (*route)->counters().failed == 2; }));
  }
  FakePipeline second;
  auto route = Route::Create(config, second.Handler(), {});
  ASSERT_TRUE(route);
  ASSERT_TRUE((*route)->Start());
  Drop(tmp.path(), "three.jpg", "3");
  ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().processed == 1; }));
  // Let at least two more rescans pass: nothing else may be picked up.
  auto rescans = std::chrono::steady_clock::now() + 500ms;
  WaitUntil([&] { return std::chrono::steady_clock::now() >= rescans; }, 2s);
  ASSERT_EQ(second.count(), 1u);
  EXPECT_EQ(second.seen()[0].name, "three.jpg");
  EXPECT_EQ(Lines(tmp / "results.jsonl").size(), 2u);
}

TEST(Route, WaitsForAFileStillBeingWritten) {
  TempDir tmp;
  FakePipeline pipeline;
  json folder = FolderConfig(tmp.path());
  folder["settle"] = "1s";
  auto route = Route::Create({{"sources", {folder}}}, pipeline.Handler(), {});
  ASSERT_TRUE(route);
  ASSERT_TRUE((*route)->Start());
  // A writer that has not closed the file yet: neither inotify nor the rescan may take it.
  int fd = ::open((tmp / "slow.jpg").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "first half ", 11), 11);
  auto a_while = std::chrono::steady_clock::now() + 500ms;  // two rescans, under the settle time
  WaitUntil([&] { return std::chrono::steady_clock::now() >= a_while; }, 2s);
  EXPECT_EQ(pipeline.count(), 0u);
  ASSERT_EQ(::write(fd, "second half", 11), 11);
  ::close(fd);  // IN_CLOSE_WRITE
  ASSERT_TRUE(WaitUntil([&] { return pipeline.count() == 1; }));
  EXPECT_EQ(pipeline.seen()[0].bytes, "first half second half");
}

TEST(Route, AFailingSinkDoesNotStopTheSource) {
  TempDir tmp;
  FakePipeline pipeline;
  std::string dead = "http://127.0.0.1:" + std::to_string(airlock::testing::FreePort()) + "/hook";
  json config = {
      {"sources", {FolderConfig(tmp.path())}},
      {"sinks",
       {{{"type", "webhook"}, {"url", dead}, {"attempts", 1}, {"timeout", "500ms"}},
        {{"type", "jsonl"}, {"path", (tmp / "out/results.jsonl").string()}}}}};
  auto route = Route::Create(config, pipeline.Handler(), {});
  ASSERT_TRUE(route) << route.error().ToString();
  ASSERT_TRUE((*route)->Start());
  Drop(tmp.path(), "a.jpg", "a");
  Drop(tmp.path(), "b.jpg", "b");
  ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().delivery_failures == 2; }));
  auto c = (*route)->counters();
  EXPECT_EQ(c.processed, 2u);
  EXPECT_EQ(c.delivered, 2u);
  EXPECT_TRUE(fs::exists(tmp / "processed/a.jpg"));
  EXPECT_TRUE(fs::exists(tmp / "processed/b.jpg"));
  EXPECT_EQ(Lines(tmp / "out/results.jsonl").size(), 2u);
  auto per_sink = (*route)->sink_counters();
  ASSERT_EQ(per_sink.size(), 2u);
  EXPECT_EQ(per_sink[0].sink, "webhook:" + dead);
  EXPECT_EQ(per_sink[0].failures, 2u);
  EXPECT_EQ(per_sink[1].delivered, 2u);
}

TEST(Route, DeleteModeRemovesProcessedInputs) {
  TempDir tmp;
  FakePipeline pipeline;
  json folder = FolderConfig(tmp.path());
  folder["done"] = "delete";
  auto route = Route::Create({{"sources", {folder}}}, pipeline.Handler(), {});
  ASSERT_TRUE(route);
  ASSERT_TRUE((*route)->Start());
  Drop(tmp.path(), "gone.jpg", "x");
  Drop(tmp.path(), "kept.jpg", "bad");
  ASSERT_TRUE(WaitUntil([&] {
    return !fs::exists(tmp / "gone.jpg") && fs::exists(tmp / "failed/kept.jpg");
  }));
  EXPECT_FALSE(fs::exists(tmp / "processed"));
  EXPECT_EQ(pipeline.count(), 2u);
}

TEST(Route, MqttTopicSourceToJsonlSink) {
  MosquittoBroker broker;
  auto agent = Client(broker, "agent");
  auto camera = Client(broker, "camera");
  TempDir tmp;
  FakePipeline pipeline;
  json config = {{"sources", {{{"type", "mqtt"}, {"topic", "cell/3/images"}}}},
                 {"sinks", {{{"type", "jsonl"}, {"path", (tmp / "results.jsonl").string()}}}}};
  auto route = Route::Create(config, pipeline.Handler(), {.mqtt = agent.get(), .clock = nullptr});
  ASSERT_TRUE(route) << route.error().ToString();
  ASSERT_TRUE((*route)->Start());
  net::PublishOptions png;
  png.content_type = "image/png";
  ASSERT_TRUE(camera->Publish("cell/3/images", std::string("\x89PNG\r\n\x1a\n", 8), png));
  ASSERT_TRUE(camera->Publish("cell/3/images", "bad", {}));
  ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().failed == 1; }));
  ASSERT_TRUE(WaitUntil([&] { return (*route)->counters().delivered == 1; }));
  auto seen = pipeline.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].content_type, "image/png");
  EXPECT_EQ(seen[0].name, "cell/3/images");
  EXPECT_EQ(seen[0].bytes.size(), 8u);
  EXPECT_EQ(seen[1].content_type, "");
  auto lines = Lines(tmp / "results.jsonl");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(json::parse(lines[0])["input"], "cell/3/images");

  // After Stop, messages are no longer taken.
  (*route)->Stop();
  ASSERT_TRUE(camera->Publish("cell/3/images", "late", {}));
  EXPECT_EQ(pipeline.count(), 2u);
}

TEST(Route, CreateRefusesBadRoutes) {
  FakePipeline pipeline;
  EXPECT_FALSE(Route::Create({{"sinks", json::array()}}, pipeline.Handler(), {}));
  EXPECT_FALSE(Route::Create({{"name", 7}, {"sources", {{{"type", "folder"}, {"path", "/x"}}}}},
                             pipeline.Handler(), {}));
  auto r = Route::Create({{"name", "x"}, {"sources", {{{"type", "folder"}}}}}, pipeline.Handler(),
                         {});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().ToString().find("route x, source 1"), std::string::npos)
      << r.error().ToString();
}

TEST(ContentTypeForName, KnowsTheCommonInputs) {
  EXPECT_EQ(ContentTypeForName("a.JPG"), "image/jpeg");
  EXPECT_EQ(ContentTypeForName("a.png"), "image/png");
  EXPECT_EQ(ContentTypeForName("a.npy"), "application/x-npy");
  EXPECT_EQ(ContentTypeForName("a"), "");
}

}  // namespace
}  // namespace airlock::agent
