// airlock bundle export: a deployment's package, its signed release and channel document, as one
// tar to carry to a site with no network link to the hub (docs/delivery.md, "Air-gapped sites").
// The gateway side is `airlock-gateway import`.

#include <cstdio>

#include "cli/common.hpp"
#include "cli/hub_common.hpp"
#include "core/fs.hpp"
#include "delivery/protocol.hpp"
#include "net/package_transfer.hpp"
#include "pkg/layout.hpp"

namespace airlock::cli {

using nlohmann::json;

namespace {

struct ExportArgs {
  HubFlags hub;
  std::string deployment;
  std::string output;
  bool force = false;
};

std::string StringAt(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The version entry the hub lists for model@version (repository, index digest and size).
Result<json> FindVersion(net::HubClient& hub, const std::string& model,
                         const std::string& version) {
  AIRLOCK_ASSIGN_OR_RETURN(json listed, hub.ListVersions(model));
  if (listed.is_object() && listed.contains("versions") && listed["versions"].is_array()) {
    for (const json& v : listed["versions"]) {
      if (StringAt(v, "version") == version) {
        return v;
      }
    }
  }
  return Fail(ErrorCode::kNotFound, "the hub lists no version " + version + " of " + model);
}

Status Export(const ExportArgs& a, Context& ctx) {
  AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a.hub));
  AIRLOCK_ASSIGN_OR_RETURN(json dep, hub->GetDeployment(a.deployment));
  delivery::BundleManifest m;
  m.deployment_id = StringAt(dep, "id");
  m.model = StringAt(dep, "model");
  m.channel = StringAt(dep, "channel");
  m.version = dep.contains("release") ? StringAt(dep["release"], "version") : "";
  if (dep.contains("channel_version") && dep["channel_version"].is_number_unsigned()) {
    m.channel_version = dep["channel_version"].get<std::uint64_t>();
  }
  if (m.model.empty() || m.version.empty()) {
    return Fail(ErrorCode::kCorrupt, "the hub's answer for deployment " + a.deployment +
                                         " names no model and release version");
  }
  if (StringAt(dep, "state") == "cancelled") {
    return Fail(ErrorCode::kInvalidArgument,
                "deployment " + a.deployment + " is cancelled; export a deployment in force");
  }
  AIRLOCK_ASSIGN_OR_RETURN(json v, FindVersion(*hub, m.model, m.version));
  m.repository = StringAt(v, "repository");
  AIRLOCK_ASSIGN_OR_RETURN(m.index_digest, Digest::Parse(StringAt(v, "index_digest")));
  if (v.contains("index_size") && v["index_size"].is_number_unsigned()) {
    m.index_size = v["index_size"].get<std::uint64_t>();
  }
  m.exported_from = hub->base_url();
  AIRLOCK_ASSIGN_OR_RETURN(m.exported_at, ctx.Now());

  // The channel document travels when it still is the one the deployment resolved (devices check
  // that each release they run is listed in a valid channel document).
  std::string channel_text;
  if (!m.channel.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(net::HubChannelState channel, hub->GetChannel(m.model, m.channel));
    if (channel.current && channel.current->version == m.channel_version) {
      AIRLOCK_ASSIGN_OR_RETURN(channel_text, channel.current->document.Serialize());
    } else {
      ctx.Say("channel " + m.channel + " has moved on from version " +
              std::to_string(m.channel_version) + "; the bundle carries no channel document");
    }
  }

  std::filesystem::path output = std::filesystem::absolute(a.output);
  std::error_code ec;
  if (!a.force && std::filesystem::exists(output, ec)) {
    return Fail(ErrorCode::kAlreadyExists,
                output.string() + " exists; pass --force to replace it");
  }
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(output.parent_path()));
  AIRLOCK_ASSIGN_OR_RETURN(TempDirectory staging,
                           TempDirectory::Create(output.parent_path() / ".airlock-bundle-XXXXXX"));
  std::filesystem::path layout = staging.path() / "layout";
  net::PullOptions pull;
  pull.say = [&ctx](const std::string& s) { ctx.Say(s); };
  pull.progress = [&ctx](const std::string& label, std::uint64_t done, std::uint64_t total) {
    ctx.Progress(label, done, total);
  };
  AIRLOCK_ASSIGN_OR_RETURN(
      net::PullResult pulled,
      net::PullPackage(hub->registry_client(), m.repository, m.index_digest.ToString(), layout, pull));
  if (!pulled.release_manifest) {
    return Fail(ErrorCode::kNotFound, "the hub holds no signed release for " + m.model + " " +
                                          m.version + "; a bundle must carry one");
  }

  AIRLOCK_ASSIGN_OR_RETURN(auto reader, pkg::LayoutReader::Open(layout));
  pkg::LayoutWriter writer;
  AIRLOCK_RETURN_IF_ERROR(writer.AddAll(*reader));
  writer.AddBytes(delivery::kBundleManifestFile, m.ToJson().dump(2) + "\n");
  if (!channel_text.empty()) {
    writer.AddBytes(delivery::kBundleChannelFile, channel_text);
  }
  AIRLOCK_RETURN_IF_ERROR(writer.WriteTar(output, a.force));
  std::uint64_t size = std::filesystem::file_size(output, ec);
  if (a.hub.json) {
    json out = m.ToJson();
    out["output"] = output.string();
    out["bytes"] = size;
    out["blobs"] = pulled.blobs;
    out["channel_document"] = !channel_text.empty();
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("wrote %s: %s %s for deployment %s (%zu blob(s), %s%s)\n", output.c_str(),
                m.model.c_str(), m.version.c_str(), m.deployment_id.c_str(), pulled.blobs,
                HumanBytes(size).c_str(),
                channel_text.empty() ? "" : (", channel " + m.channel + " v" +
                                             std::to_string(m.channel_version))
                                                .c_str());
    std::printf("carry it to the site and run: airlock-gateway import %s\n",
                output.filename().c_str());
  }
  return {};
}

}  // namespace

void AddBundle(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "bundle", "Carry a deployment to a site with no network link to the hub (air-gapped)");
  cmd->require_subcommand(1);
  auto* exp = cmd->add_subcommand(
      "export",
      "Write a deployment's package, signed release and channel document as one tar, for "
      "airlock-gateway import");
  auto a = std::make_shared<ExportArgs>();
  AddHubFlags(exp, a->hub);
  exp->add_option("--deployment", a->deployment, "the deployment's id (dep-…)")->required();
  exp->add_option("-o,--output", a->output, "the bundle to write (a .tar)")->required();
  exp->add_flag("--force", a->force, "replace the output if it exists");
  exp->callback([&ctx, &action, a] {
    action = [&ctx, a] { return RunCommand([&] { return Export(*a, ctx); }); };
  });
}

}  // namespace airlock::cli
