// `airlock captures export`: the requests the devices captured (docs/monitoring.md, "Captures"),
// from the hub into a directory a data scientist can retrain on: per capture the picture as the
// device received it (PNG or JPEG), every input and output tensor as NumPy .npy, and a
// manifest.json that lists them with where and when each was taken.

#include <cstdio>
#include <memory>
#include <string>

#include "cli/common.hpp"
#include "cli/hub_common.hpp"
#include "core/encoding.hpp"
#include "core/fs.hpp"
#include "core/time.hpp"
#include "net/hub_client.hpp"
#include "runtime/npy.hpp"

namespace airlock::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The file extension for a raw input's content type.
std::string Extension(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  if (t == "image/png") {
    return ".png";
  }
  if (t == "image/jpeg") {
    return ".jpg";
  }
  if (t == "application/x-npy") {
    return ".npy";
  }
  if (t == "application/json") {
    return ".json";
  }
  return ".bin";
}

// A file name from a tensor name: letters, digits, '-', '_', '.'; anything else becomes '_'.
std::string Safe(const std::string& name) {
  std::string out;
  for (char c : name.substr(0, 100)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || (c == '.' && !out.empty());
    out += ok ? c : '_';
  }
  return out.empty() ? "tensor" : out;
}

// Writes the capture's tensors of one side as .npy files under dir; their names relative to
// out_dir, by tensor name.
Result<json> WriteTensors(const json& tensors, const fs::path& out_dir, const fs::path& dir,
                          const std::string& prefix) {
  json files = json::object();
  if (!tensors.is_array()) {
    return files;
  }
  for (const auto& t : tensors) {
    runtime::Tensor tensor;
    try {
      tensor.name = t.at("name").get<std::string>();
      AIRLOCK_ASSIGN_OR_RETURN(tensor.dtype,
                               runtime::ParseDataType(t.at("datatype").get<std::string>()));
      tensor.shape = t.at("shape").get<std::vector<std::int64_t>>();
      auto data = Base64Decode(t.at("data_b64").get<std::string>());
      if (!data) {
        return Fail(ErrorCode::kCorrupt, "tensor " + tensor.name + ": data_b64 is not base64");
      }
      tensor.data = std::move(*data);
    } catch (const json::exception& e) {
      return Fail(ErrorCode::kCorrupt, std::string("a captured tensor: ") + e.what());
    }
    AIRLOCK_RETURN_IF_ERROR(tensor.CheckConsistent());
    AIRLOCK_ASSIGN_OR_RETURN(std::string npy, runtime::SerializeNpy(tensor));
    fs::path file = dir / (prefix + Safe(tensor.name) + ".npy");
    AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(file, npy));
    files[tensor.name] = fs::relative(file, out_dir).string();
  }
  return files;
}

Status Export(net::HubClient& hub, const std::string& model, const std::string& since,
              const std::string& site, const std::string& device, const fs::path& out, bool quiet) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_empty(out, ec)) {
    return Fail(ErrorCode::kAlreadyExists,
                out.string() + " is not empty: export into a new directory (-o)");
  }
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(out));
  json manifest_captures = json::array();
  std::int64_t after_ms = 0;
  std::string after_id;
  std::size_t n = 0;
  while (true) {
    AIRLOCK_ASSIGN_OR_RETURN(json page,
                             hub.ListCaptures(model, since, site, device, after_ms, after_id, 20));
    for (const auto& entry : page.value("captures", json::array())) {
      const json& c = entry.contains("capture") ? entry["capture"] : json();
      if (!c.is_object()) {
        continue;
      }
      char name[16];
      std::snprintf(name, sizeof name, "%06zu", ++n);
      fs::path dir = out / name;
      AIRLOCK_RETURN_IF_ERROR(MakeDirectories(dir));
      json files = json::object();
      if (c.contains("raw") && c["raw"].is_object()) {
        auto bytes = Base64Decode(c["raw"].value("data_b64", ""));
        if (!bytes) {
          return Fail(ErrorCode::kCorrupt,
                      "capture " + entry.value("id", "?") + ": its raw input is not base64");
        }
        fs::path file = dir / ("input" + Extension(c["raw"].value("content_type", "")));
        AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(file, *bytes));
        files["raw"] = fs::relative(file, out).string();
      }
      auto inputs = WriteTensors(c.value("inputs", json::array()), out, dir, "input-");
      auto outputs = inputs ? WriteTensors(c.value("outputs", json::array()), out, dir, "output-")
                            : inputs;
      if (!outputs) {
        return Fail(std::move(outputs.error())
                        .WithContext("capture " + entry.value("id", "?")));
      }
      files["inputs"] = *inputs;
      files["outputs"] = *outputs;
      std::int64_t at_ms = entry.value("at_ms", std::int64_t{0});
      manifest_captures.push_back(
          {{"id", entry.value("id", "")},
           {"site", entry.value("site", "")},
           {"device", c.value("device", "")},
           {"version", c.value("version", "")},
           {"at", FormatRfc3339(TimePoint(std::chrono::milliseconds(at_ms)))},
           {"files", std::move(files)}});
    }
    if (!quiet && n > 0) {
      std::fprintf(stderr, "\rexported %zu capture(s)", n);
    }
    const json& next = page.contains("next") ? page["next"] : json();
    if (!next.is_object()) {
      break;
    }
    after_ms = next.value("after_ms", std::int64_t{0});
    after_id = next.value("after_id", "");
  }
  json manifest = {{"schema", "airlock.captures-export.v1"},
                   {"model", model},
                   {"since", since},
                   {"site", site},
                   {"device", device},
                   {"exported_at", FormatRfc3339(std::chrono::floor<std::chrono::seconds>(
                                       std::chrono::system_clock::now()))},
                   {"count", n},
                   {"captures", std::move(manifest_captures)}};
  AIRLOCK_RETURN_IF_ERROR(WriteFileAtomic(out / "manifest.json", manifest.dump(2) + "\n"));
  if (!quiet) {
    std::fprintf(stderr, "%s", n > 0 ? "\n" : "");
    std::printf("%zu capture(s) of %s in %s (manifest.json lists them)\n", n, model.c_str(),
                out.string().c_str());
    if (n == 0) {
      std::printf(
          "none yet: a site allows capture with telemetry.capture in its gateway's configuration "
          "(upload: true sends them to the hub)\n");
    }
  }
  return {};
}

}  // namespace

void AddCaptures(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand("captures", "Requests the devices captured (site policy)");
  cmd->require_subcommand(1);
  struct Args {
    std::string model;
    std::string since = "24h";
    std::string site;
    std::string device;
    std::string out;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  auto* exp = cmd->add_subcommand(
      "export", "Write the captures of a model to a directory: pictures, .npy tensors, manifest");
  exp->add_option("--model", a->model, "the model")->required();
  exp->add_option("--since", a->since,
                  "how far back: a duration (30m, 6h, 7d) or an RFC 3339 time")
      ->capture_default_str();
  exp->add_option("--site", a->site, "only this site (a gateway's name)");
  exp->add_option("--device", a->device, "only this device");
  exp->add_option("-o,--output", a->out, "the directory to write (new or empty)")->required();
  AddHubFlags(exp, a->hub);
  exp->callback([&action, &ctx, a] {
    action = [a, &ctx]() -> int {
      return RunCommand([&]() -> Status {
        if (auto since = ParseSince(a->since, std::chrono::system_clock::now()); !since) {
          return Fail(std::move(since.error()).WithContext("--since"));
        }
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        return Export(*hub, a->model, a->since, a->site, a->device, a->out, ctx.quiet);
      });
    };
  });
}

}  // namespace airlock::cli
