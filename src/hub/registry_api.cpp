#include "hub/registry_api.hpp"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <set>

#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/rollout_strategy.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::hub {
namespace {

using nlohmann::json;

constexpr char kModelArtifact[] = "application/vnd.cncf.model.manifest.v1+json";
constexpr char kModelConfig[] = "application/vnd.cncf.model.config.v1+json";
constexpr char kReleaseArtifact[] = "application/vnd.airlock.release.v1+json";
constexpr char kImageIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr std::size_t kMaxConfigBlob = 1 << 20;

std::string Time(std::int64_t t) { return FormatRfc3339(TimePoint(std::chrono::seconds(t))); }
json OptionalTime(const std::optional<std::int64_t>& t) {
  return t ? json(Time(*t)) : json(nullptr);
}

// Reads a whole small blob (at most max bytes).
Result<std::string> ReadSmallBlob(store::BlobStore& blobs, const Digest& digest, std::size_t max) {
  AIRLOCK_ASSIGN_OR_RETURN(store::BlobFile file, blobs.OpenBlob(digest));
  if (file.size > max) {
    return Fail(ErrorCode::kCorrupt, "blob " + digest.ToString() + " is " +
                                         std::to_string(file.size) + " bytes, over the limit of " +
                                         std::to_string(max));
  }
  std::string out(file.size, '\0');
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(file.fd->get(), out.data() + done, out.size() - done,
                        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return Fail(ErrorCode::kIo, "cannot read blob " + digest.ToString());
    }
    done += static_cast<std::size_t>(n);
  }
  return out;
}

std::string AnnotationOf(const json& doc, const char* key) {
  if (!doc.contains("annotations") || !doc["annotations"].is_object()) {
    return "";
  }
  return trust::StringOr(doc["annotations"], key);
}

// The lineage annotations of a package index (airlock pack writes them from airlock.yaml).
json LineageOf(const json& index) {
  json lineage = json::object();
  for (auto [key, field] : {std::pair{"ai.airlock.lineage.training-run", "training_run"},
                            std::pair{"ai.airlock.lineage.dataset-digest", "dataset_digest"},
                            std::pair{"ai.airlock.lineage.source-revision", "source_revision"}}) {
    std::string v = AnnotationOf(index, key);
    if (!v.empty()) {
      lineage[field] = v;
    }
  }
  std::string metrics = AnnotationOf(index, "ai.airlock.lineage.metrics");
  if (!metrics.empty()) {
    json m = json::parse(metrics, nullptr, false);
    if (m.is_object()) {
      lineage["metrics"] = m;
    }
  }
  return lineage;
}

// "linux/amd64[/v8]" for each manifest of an index that names a platform.
json PlatformsOf(const json& index) {
  json out = json::array();
  if (!index.contains("manifests") || !index["manifests"].is_array()) {
    return out;
  }
  for (const auto& m : index["manifests"]) {
    if (!m.is_object() || !m.contains("platform") || !m["platform"].is_object()) {
      continue;
    }
    const json& p = m["platform"];
    std::string text = trust::StringOr(p, "os") + "/" + trust::StringOr(p, "architecture");
    if (!trust::StringOr(p, "variant").empty()) {
      text += "/" + trust::StringOr(p, "variant");
    }
    out.push_back(text);
  }
  return out;
}

// How a store error reads as HTTP.
void SendStoreError(httplib::Response& res, const Error& e, std::string_view unknown_code) {
  switch (e.code()) {
    case ErrorCode::kNotFound:
      return SendError(res, 404, unknown_code, "not found", e.message());
    case ErrorCode::kAlreadyExists:
      return SendError(res, 409, "CONFLICT", "conflicts with the hub's state", e.message());
    case ErrorCode::kInvalidArgument:
      return SendError(res, 422, "UNPROCESSABLE", "does not match the hub's records",
                       e.message());
    default:
      return SendInternal(res, e);
  }
}

}  // namespace

// The documents a verifier walks to reach root: the pinned one (the first rotation's
// predecessor is not kept, so the newest when there are none), then the rotations.
std::vector<trust::SignedDocument> ChainOf(const std::optional<trust::TrustedRoot>& root) {
  if (!root) {
    return {};
  }
  return root->rotations.empty() ? std::vector<trust::SignedDocument>{root->document}
                                 : root->rotations;
}

Result<trust::TrustedRoot> LoadHubRoot(const std::filesystem::path& path,
                                       const std::filesystem::path& rotations, TimePoint now) {
  return WithContext(trust::LoadTrustedRoot(path, rotations, now), "the hub's root");
}

// The route handlers; a view of the API's members.
struct RegistryApi::Handlers {
  RegistryApi& api;

  std::int64_t Now() const { return api.access_.Now(); }
  TimePoint NowTime() const { return TimePoint(std::chrono::seconds(Now())); }
  static std::string Who(const Principal& p) { return p.name.empty() ? "anonymous" : p.name; }

  // A read-only route: the viewer check, then render (store calls made JSON). A store error
  // becomes its status, with unknown_code for a 404.
  template <typename F>
  void Read(const httplib::Request& req, httplib::Response& res, std::string_view unknown_code,
            F render) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kReadRegistry, &who)) {
      return;
    }
    Result<json> out = render();
    if (!out) {
      return SendStoreError(res, out.error(), unknown_code);
    }
    SendJson(res, 200, *out);
  }

  // {key: [to_json(x) for x in list]}.
  template <typename T, typename F>
  static Result<json> ListJson(const char* key, Result<std::vector<T>> list, F to_json) {
    if (!list) {
      return Fail(list.error());
    }
    json out = json::array();
    for (const auto& x : *list) {
      out.push_back(to_json(x));
    }
    return json{{key, out}};
  }

  bool HasRoot(httplib::Response& res) const {
    if (!api.root_) {
      SendError(res, 409, "NO_ROOT", "the hub has no root",
                "the hub verifies releases and channel documents against a root document: start "
                "it with --root root.json (or `root:` in its configuration)");
      return false;
    }
    return true;
  }

  // ---- the root ----

  // GET /api/v1/roots: the root the hub trusts, as the chain a verifier walks: the pinned
  // document, then every rotation accepted since (trust/root_store.hpp). Whoever may pull a
  // package may fetch the roots that verify it: gateways fetch them at start.
  void ListRoots(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kPull, &who) || !HasRoot(res)) {
      return;
    }
    json roots = json::array();
    for (const trust::SignedDocument& doc : api.root_chain_) {
      auto text = doc.Serialize();
      if (!text) {
        return SendInternal(res, text.error());
      }
      roots.push_back(json::parse(*text));
    }
    SendJson(res, 200, {{"version", api.root_->root.version}, {"roots", roots}});
  }

  // ---- models and versions ----

  json ReleaseJson(const store::ReleaseRecord& r) const {
    return {{"version", r.version},
            {"release_counter", r.release_counter},
            {"id", r.id},
            {"signatures", r.signatures},
            {"uploaded_by", r.uploaded_by},
            {"uploaded_at", Time(r.uploaded_at)}};
  }

  json VersionJson(const store::ModelVersionRecord& v,
                   const std::vector<store::ReleaseRecord>& releases,
                   const std::vector<store::ChannelRecord>& channels) const {
    json release = nullptr;
    for (const auto& r : releases) {
      if (r.version == v.version) {
        release = ReleaseJson(r);
        release.erase("version");
      }
    }
    json in = json::array();
    for (const auto& c : channels) {
      if (c.current_release == v.version) {
        in.push_back(c.channel);
      }
    }
    return {{"model", v.model},
            {"version", v.version},
            {"repository", v.repository},
            {"index_digest", v.index_digest},
            {"index_size", v.index_size},
            {"platforms", v.platforms},
            {"description", v.description},
            {"lineage", v.lineage},
            {"pushed_by", v.pushed_by},
            {"pushed_at", Time(v.pushed_at)},
            {"release", release},
            {"channels", in}};
  }

  // The versions of model as JSON, newest first.
  Result<json> Versions(const std::string& model) {
    AIRLOCK_ASSIGN_OR_RETURN(auto versions, api.registry_.ListVersions(model));
    AIRLOCK_ASSIGN_OR_RETURN(auto releases, api.registry_.ListReleases(model));
    AIRLOCK_ASSIGN_OR_RETURN(auto channels, api.registry_.ListChannels(model));
    json out = json::array();
    for (const auto& v : versions) {
      out.push_back(VersionJson(v, releases, channels));
    }
    return out;
  }

  void ListModels(const httplib::Request& req, httplib::Response& res) {
    Read(req, res, "MODEL_UNKNOWN", [&] {
      return ListJson("models", api.registry_.ListModels(req.get_param_value("q")),
                      [](const store::ModelSummary& m) {
                        return json{{"name", m.name},
                                    {"description", m.description},
                                    {"versions", m.versions},
                                    {"latest", m.latest.empty() ? json(nullptr) : json(m.latest)},
                                    {"channels", m.channels},
                                    {"updated_at", Time(m.updated_at)}};
                      });
    });
  }

  void GetModel(const httplib::Request& req, httplib::Response& res, const std::string& model) {
    Read(req, res, "MODEL_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(json versions, Versions(model));
      AIRLOCK_ASSIGN_OR_RETURN(auto channels, api.registry_.ListChannels(model));
      json by_channel = json::object();
      for (const auto& c : channels) {
        by_channel[c.channel] = c.current_release;
      }
      std::string description = versions.empty() ? "" : versions[0].value("description", "");
      return json{{"name", model},
                  {"description", description},
                  {"versions", versions},
                  {"channels", by_channel}};
    });
  }

  void ListVersions(const httplib::Request& req, httplib::Response& res,
                    const std::string& model) {
    Read(req, res, "MODEL_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(json versions, Versions(model));
      return json{{"versions", versions}};
    });
  }

  void GetVersion(const httplib::Request& req, httplib::Response& res, const std::string& model,
                  const std::string& version) {
    Read(req, res, "VERSION_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(json versions, Versions(model));
      for (const auto& v : versions) {
        if (v["version"] == version) {
          return v;
        }
      }
      return Fail(ErrorCode::kNotFound, "no version " + version + " of model " + model);
    });
  }

  // ---- releases ----

  void PostRelease(const httplib::Request& req, httplib::Response& res, const std::string& model) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kPublishRelease, &who)) {
      return;
    }
    auto record = [&]() -> Result<store::ReleaseRecord> {
      AIRLOCK_ASSIGN_OR_RETURN(auto doc, trust::SignedDocument::Parse(req.body));
      return api.CheckRelease(who, doc, model);
    }();
    bool created = false;
    Result<store::ReleaseRecord> stored =
        record ? api.registry_.PutRelease(*record, &created) : Fail(record.error());
    if (!record) {
      bool malformed = record.error().code() == ErrorCode::kCorrupt ||
                       record.error().code() == ErrorCode::kInvalidArgument;
      if (record.error().code() == ErrorCode::kUnsupported && !api.root_) {
        HasRoot(res);
      } else {
        SendError(res, malformed ? 400 : 422,
                  malformed ? "DOCUMENT_INVALID" : "VERIFICATION_FAILED",
                  malformed ? "the release document is malformed"
                            : "the release does not verify against the hub's root",
                  record.error().message());
      }
    } else if (!stored) {
      SendStoreError(res, stored.error(), "MODEL_UNKNOWN");
    } else {
      SendJson(res, created ? 201 : 200, {{"release", ReleaseJson(*stored)}});
    }
    api.gate_.Audit(req, res, who, "release.upload",
                    model.substr(0, 100) + (record ? ":" + record->version : std::string()));
  }

  void ListReleases(const httplib::Request& req, httplib::Response& res,
                    const std::string& model) {
    Read(req, res, "MODEL_UNKNOWN", [&] {
      return ListJson("releases", api.registry_.ListReleases(model),
                      [this](const store::ReleaseRecord& r) { return ReleaseJson(r); });
    });
  }

  void GetRelease(const httplib::Request& req, httplib::Response& res, const std::string& model,
                  const std::string& version) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kReadRegistry, &who)) {
      return;
    }
    auto r = api.registry_.GetRelease(model, version);
    if (!r) {
      return SendStoreError(res, r.error(), "RELEASE_UNKNOWN");
    }
    res.status = 200;
    res.set_content(r->document, kJsonType);
  }

  // ---- channels ----

  static json ParsedDocument(const std::string& text) {
    json j = json::parse(text, nullptr, false);
    return j.is_discarded() ? json(nullptr) : j;
  }

  void GetChannel(const httplib::Request& req, httplib::Response& res, const std::string& model,
                  const std::string& channel) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kReadRegistry, &who)) {
      return;
    }
    auto state = api.registry_.GetChannel(model, channel);
    if (!state) {
      return SendInternal(res, state.error());
    }
    json out = {{"model", model}, {"channel", channel}, {"current", nullptr},
                {"pending", nullptr}, {"history", json::array()}};
    if (api.root_) {
      std::string_view role = trust::ChannelSigningRole(api.root_->root);
      out["signing_role"] = role;
      auto spec = api.root_->root.roles.find(role);
      out["threshold"] = spec == api.root_->root.roles.end() ? 0 : spec->second.threshold;
    }
    if (state->current) {
      const auto& c = *state->current;
      out["current"] = {{"document", ParsedDocument(c.document)},
                        {"version", c.version},
                        {"release", c.current_release},
                        {"signatures", c.signatures},
                        {"updated_by", c.updated_by},
                        {"updated_at", Time(c.updated_at)}};
    }
    if (state->pending) {
      const auto& p = *state->pending;
      out["pending"] = {{"document", ParsedDocument(p.document)},
                        {"version", p.version},
                        {"release", p.current_release},
                        {"signatures", p.signatures},
                        {"proposed_by", p.updated_by},
                        {"proposed_at", Time(p.updated_at)}};
    }
    for (const auto& h : state->history) {
      out["history"].push_back({{"version", h.version},
                                {"current_release", h.current_release},
                                {"signatures", h.signatures},
                                {"updated_by", h.updated_by},
                                {"updated_at", Time(h.updated_at)}});
    }
    SendJson(res, 200, out);
  }

  // The proposal's checks: everything but the threshold. Merges the signatures of a pending
  // proposal of the same body. 422/400 errors as Error codes kVerification/kCorrupt.
  Result<std::pair<trust::SignedDocument, trust::Channel>> CheckChannel(
      trust::SignedDocument doc, const std::string& model, const std::string& channel,
      const store::ChannelState& state, trust::SignatureTally* tally) {
    const trust::Root& root = api.root_->root;
    AIRLOCK_ASSIGN_OR_RETURN(trust::Channel c, trust::Channel::FromJson(doc.body()));
    if (c.model != model || c.name != channel) {
      return Fail(ErrorCode::kVerification,
                  "the document is for channel " + c.name + " of " + c.model + ", not " +
                      channel + " of " + model);
    }
    if (c.expires <= NowTime()) {
      return Fail(ErrorCode::kVerification,
                  "the document expired at " + FormatRfc3339(c.expires));
    }
    std::string_view role = trust::ChannelSigningRole(root);
    AIRLOCK_ASSIGN_OR_RETURN(*tally, trust::TallySignatures(doc, root, role));
    if (!tally->notes.empty() || tally->valid == 0) {
      std::string why = tally->valid == 0 ? "no valid " + std::string(role) + " signature" : "";
      for (const auto& n : tally->notes) {
        why += (why.empty() ? "" : "; ") + n;
      }
      return Fail(ErrorCode::kVerification, why);
    }
    for (const auto& entry : c.releases) {
      auto r = api.registry_.GetReleaseById(model, entry.release.ToString());
      if (!r || r->version != entry.version || r->release_counter != entry.release_counter) {
        return Fail(ErrorCode::kVerification,
                    "the channel lists release " + entry.version + " (" +
                        entry.release.ToString().substr(0, 19) +
                        "…), which the hub does not have with that version and counter: upload "
                        "the release first");
      }
    }
    if (state.pending && state.pending->version == c.version) {
      auto pending = trust::SignedDocument::Parse(state.pending->document);
      if (pending && doc.MergeSignatures(*pending)) {
        AIRLOCK_ASSIGN_OR_RETURN(*tally, trust::TallySignatures(doc, root, role));
      }
    }
    return std::pair{std::move(doc), std::move(c)};
  }

  void PutChannel(const httplib::Request& req, httplib::Response& res, const std::string& model,
                  const std::string& channel) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kPromote, &who)) {
      return;
    }
    std::string action = "channel.promote";
    [&] {
      if (!HasRoot(res)) {
        return;
      }
      auto doc = trust::SignedDocument::Parse(req.body);
      if (!doc) {
        return SendError(res, 400, "DOCUMENT_INVALID", "the channel document is malformed",
                         doc.error().message());
      }
      auto state = api.registry_.GetChannel(model, channel);
      if (!state) {
        return SendInternal(res, state.error());
      }
      trust::SignatureTally tally;
      auto checked = CheckChannel(std::move(*doc), model, channel, *state, &tally);
      if (!checked) {
        bool malformed = checked.error().code() == ErrorCode::kCorrupt;
        return SendError(res, malformed ? 400 : 422,
                         malformed ? "DOCUMENT_INVALID" : "VERIFICATION_FAILED",
                         malformed ? "the channel document is malformed"
                                   : "the channel document does not verify",
                         checked.error().message());
      }
      auto& [signed_doc, c] = *checked;
      auto text = signed_doc.Serialize();
      if (!text) {
        return SendInternal(res, text.error());
      }
      store::ChannelRecord record{model,      channel,     c.version, c.releases[0].version,
                                  *text,      tally.valid, Who(who),  Now()};
      bool current = tally.met();
      Status stored = current ? api.registry_.SetChannel(record)
                              : api.registry_.ProposeChannel(record);
      if (!stored) {
        return SendStoreError(res, stored.error(), "CHANNEL_UNKNOWN");
      }
      if (!current) {
        action = "channel.propose";
      }
      SendJson(res, current ? 200 : 202,
               {{"state", current ? "current" : "pending"},
                {"version", c.version},
                {"release", c.releases[0].version},
                {"signatures", tally.valid},
                {"threshold", tally.threshold}});
    }();
    api.gate_.Audit(req, res, who, action, model.substr(0, 100) + "/" + channel.substr(0, 63));
  }

  // ---- deployments ----

  static json DeploymentJson(const store::DeploymentRecord& d, bool history) {
    json out = {{"id", d.id},
                {"model", d.model},
                {"channel", d.channel},
                {"channel_version", d.channel_version},
                {"release", {{"version", d.release_version}, {"id", d.release_id}}},
                {"gateways", d.gateways},
                {"selector", d.selector},
                {"strategy", d.strategy},
                {"state", d.state},
                {"paused", d.paused},
                {"created_by", d.created_by},
                {"created_at", Time(d.created_at)},
                {"updated_at", Time(d.updated_at)}};
    if (history) {
      out["history"] = json::array();
      for (const auto& e : d.history) {
        out["history"].push_back(
            {{"at", Time(e.at)}, {"actor", e.actor}, {"action", e.action}, {"detail", e.detail}});
      }
    }
    return out;
  }

  // One delivery as the API shows it: its record (docs/delivery.md) without the deployment.
  static json DeliveryJson(const store::DeliveryRow& row) {
    json record = json::parse(row.record, nullptr, false);
    if (!record.is_object()) {
      record = json::object();
    }
    json out = {{"delivery_id", row.id},
                {"gateway", row.gateway},
                {"state", row.state},
                {"updated_at", Time(row.updated_at)}};
    for (const char* key : {"wait", "deadline", "offers", "attempt", "retries", "platforms",
                            "bytes_done", "bytes_total", "urls_expire_at", "last_error",
                            "created_at"}) {
      out[key] = record.contains(key) ? record[key] : json(nullptr);
    }
    out["held"] = record.value("held", false);
    return out;
  }

  // The deployment with its deliveries, one per target gateway ([] until the orchestrator made
  // them).
  Result<json> DeploymentWithDeliveries(const store::DeploymentRecord& d) {
    json out = DeploymentJson(d, true);
    AIRLOCK_ASSIGN_OR_RETURN(auto rows, api.registry_.ListDeliveries(d.id, false));
    out["deliveries"] = json::array();
    for (const auto& row : rows) {
      out["deliveries"].push_back(DeliveryJson(row));
    }
    out["fleet"] = api.deployments_ != nullptr ? api.deployments_->Fleet(d.id) : json::array();
    return out;
  }

  // GET /api/v1/deliveries?deployment=ID[&active=true]
  void ListDeliveries(const httplib::Request& req, httplib::Response& res) {
    Read(req, res, "DEPLOYMENT_UNKNOWN", [&]() -> Result<json> {
      std::string deployment = req.get_param_value("deployment");
      if (!deployment.empty()) {
        AIRLOCK_RETURN_IF_ERROR(api.registry_.GetDeployment(deployment));
      }
      AIRLOCK_ASSIGN_OR_RETURN(
          auto rows, api.registry_.ListDeliveries(deployment, req.get_param_value("active") == "true"));
      json out = {{"deliveries", json::array()}};
      for (const auto& row : rows) {
        json j = DeliveryJson(row);
        j["deployment"] = row.deployment;
        out["deliveries"].push_back(j);
      }
      return out;
    });
  }

  // The deployment a POST body asks for, checked; kInvalidArgument (400) for a malformed body,
  // kVerification (422) when it contradicts the registry.
  Result<store::DeploymentRecord> DeploymentFrom(const json& body, const Principal& who) {
    auto bad = [](std::string why) { return Fail(ErrorCode::kInvalidArgument, std::move(why)); };
    store::DeploymentRecord d;
    d.model = trust::StringOr(body, "model");
    d.channel = trust::StringOr(body, "channel");
    if (d.model.empty() || d.channel.empty()) {
      return bad("a deployment needs \"model\" and \"channel\"");
    }
    if (!body.contains("gateways") || !body["gateways"].is_array() || body["gateways"].empty()) {
      return bad("\"gateways\" must be a non-empty array of gateway names");
    }
    for (const auto& g : body["gateways"]) {
      if (!g.is_string()) {
        return bad("\"gateways\" must be a non-empty array of gateway names");
      }
    }
    // The rules are shared with the gateway, which reads the same selector and strategy back when
    // it runs the rollout (core/rollout_strategy.hpp); absent strategy keys take their defaults.
    d.selector = body.value("selector", json::object());
    AIRLOCK_RETURN_IF_ERROR(ParseSelector(d.selector));
    AIRLOCK_ASSIGN_OR_RETURN(RolloutStrategy strategy,
                             RolloutStrategy::FromJson(body.value("strategy", json::object())));
    d.strategy = strategy.ToJson();
    auto state = api.registry_.GetChannel(d.model, d.channel);
    if (!state) {
      return Fail(state.error());
    }
    if (!state->current) {
      return Fail(ErrorCode::kVerification,
                  "channel " + d.channel + " of " + d.model +
                      " has no current document: promote a release into it first (airlock "
                      "promote)");
    }
    auto doc = trust::SignedDocument::Parse(state->current->document);
    if (!doc) {
      return Fail(doc.error());
    }
    AIRLOCK_ASSIGN_OR_RETURN(trust::Channel channel, trust::Channel::FromJson(doc->body()));
    d.channel_version = channel.version;
    d.release_version = channel.releases[0].version;
    d.release_id = channel.releases[0].release.ToString();
    std::set<std::string> seen;
    std::string unknown;
    for (const auto& g : body["gateways"]) {
      std::string name = g.get<std::string>();
      if (!seen.insert(name).second) {
        continue;
      }
      auto found = api.registry_.GetGateway(name);
      if (!found && found.error().code() != ErrorCode::kNotFound) {
        return Fail(found.error());
      }
      if (!found) {
        unknown += (unknown.empty() ? "" : ", ") + name.substr(0, 64);
      }
      d.gateways.push_back(name);
    }
    if (!unknown.empty()) {
      return Fail(ErrorCode::kVerification,
                  "not registered with the hub: " + unknown + " (airlock gateways ls lists them)");
    }
    AIRLOCK_ASSIGN_OR_RETURN(std::string id, RandomHex(8));
    d.id = "dep-" + id;
    d.state = "pending";
    d.created_by = Who(who);
    d.created_at = d.updated_at = Now();
    d.history.push_back({d.created_at, d.created_by, "created",
                         d.channel + " v" + std::to_string(d.channel_version) + " (" +
                             d.release_version + ") to " + std::to_string(d.gateways.size()) +
                             " gateway(s)"});
    return d;
  }

  void CreateDeployment(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kDeploy, &who)) {
      return;
    }
    auto body = JsonBody(req, res);
    if (!body) {
      return;
    }
    std::string target;
    auto d = DeploymentFrom(*body, who);
    if (!d) {
      ErrorCode code = d.error().code();
      if (code == ErrorCode::kInvalidArgument) {
        SendError(res, 400, "INVALID_REQUEST", "invalid request", d.error().message());
      } else if (code == ErrorCode::kVerification) {
        SendError(res, 422, "UNPROCESSABLE", "does not match the hub's records",
                  d.error().message());
      } else {
        SendInternal(res, d.error());
      }
    } else if (Status s = api.registry_.CreateDeployment(*d); !s) {
      SendStoreError(res, s.error(), "DEPLOYMENT_UNKNOWN");
    } else {
      target = d->id + " ";
      if (api.deployments_ != nullptr) {
        api.deployments_->DeploymentCreated(d->id);
      }
      json out = DeploymentJson(*d, true);
      out["deliveries"] = json::array();
      SendJson(res, 201, out);
    }
    api.gate_.Audit(req, res, who, "deployment.create",
                    target + trust::StringOr(*body, "model").substr(0, 100) + "/" +
                        trust::StringOr(*body, "channel").substr(0, 63));
  }

  // POST /api/v1/deployments/preview: what POST /api/v1/deployments would do with this body,
  // creating nothing; the same validation and errors as create.
  void PreviewDeployment(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kReadRegistry, &who)) {
      return;
    }
    auto body = JsonBody(req, res);
    if (!body) {
      return;
    }
    auto d = DeploymentFrom(*body, who);
    if (!d) {
      ErrorCode code = d.error().code();
      if (code == ErrorCode::kInvalidArgument) {
        return SendError(res, 400, "INVALID_REQUEST", "invalid request", d.error().message());
      }
      if (code == ErrorCode::kVerification) {
        return SendError(res, 422, "UNPROCESSABLE", "does not match the hub's records",
                         d.error().message());
      }
      return SendStoreError(res, d.error(), "DEPLOYMENT_UNKNOWN");
    }
    auto preview = Preview(*d);
    if (!preview) {
      return SendInternal(res, preview.error());
    }
    SendJson(res, 200, *preview);
  }

  // The preview of a checked deployment d (DeploymentFrom): per gateway, the devices of its last
  // inventory that d's selector selects, by platform, those without a platform of the release,
  // and the waves the gateway would make of them (RolloutStrategy::WaveEnds, as the gateway's
  // rollout engine sizes them); then the totals.
  Result<json> Preview(const store::DeploymentRecord& d) {
    AIRLOCK_ASSIGN_OR_RETURN(Selector selector, ParseSelector(d.selector));
    AIRLOCK_ASSIGN_OR_RETURN(RolloutStrategy strategy, RolloutStrategy::FromJson(d.strategy));
    json platforms = json::array();
    if (auto v = api.registry_.GetVersion(d.model, d.release_version); v) {
      platforms = v->platforms;
    } else if (v.error().code() != ErrorCode::kNotFound) {
      return Fail(v.error());
    }
    // A device's platform is served by the release when the release has it, or a variant of it
    // ("linux/arm64" takes "linux/arm64/v8"), as the gateway picks platforms.
    auto served = [&](const std::string& platform) {
      return std::any_of(platforms.begin(), platforms.end(), [&](const json& p) {
        if (!p.is_string()) {
          return false;
        }
        const std::string& have = p.get_ref<const std::string&>();
        return have == platform || have.starts_with(platform + "/");
      });
    };
    auto sizes = [](const std::vector<std::size_t>& ends) {
      json out = json::array();
      std::size_t before = 0;
      for (std::size_t end : ends) {
        out.push_back(end - before);
        before = end;
      }
      return out;
    };
    json gateways = json::array();
    std::size_t total = 0, total_unsupported = 0;
    std::map<std::string, std::size_t> total_platforms;
    std::vector<std::size_t> total_waves(strategy.waves.size(), 0);
    for (const json& g : d.gateways) {
      std::string name = g.get<std::string>();
      AIRLOCK_ASSIGN_OR_RETURN(store::InventoryRecord inv, api.registry_.GetInventory(name));
      std::size_t matched = 0, unsupported = 0, listed = 0;
      std::map<std::string, std::size_t> by_platform;
      for (const json& device : inv.devices.is_array() ? inv.devices : json::array()) {
        if (!device.is_object()) {
          continue;
        }
        ++listed;
        std::map<std::string, std::string> labels;
        if (device.contains("labels") && device["labels"].is_object()) {
          for (const auto& [k, v] : device["labels"].items()) {
            if (v.is_string()) {
              labels[k] = v.get<std::string>();
            }
          }
        }
        if (!Selects(selector, labels)) {
          continue;
        }
        ++matched;
        std::string platform = trust::StringOr(device, "platform");
        by_platform[platform.empty() ? "unknown" : platform] += 1;
        if (platform.empty() || !served(platform)) {
          ++unsupported;
        }
      }
      std::vector<std::size_t> ends = strategy.WaveEnds(matched);
      json waves = sizes(ends);
      for (std::size_t w = 0; w < waves.size(); ++w) {
        total_waves[w] += waves[w].get<std::size_t>();
      }
      total += matched;
      total_unsupported += unsupported;
      for (const auto& [p, n] : by_platform) {
        total_platforms[p] += n;
      }
      gateways.push_back(
          {{"gateway", name},
           {"inventory_reported_at", inv.reported_at == 0 ? json(nullptr) : json(Time(inv.reported_at))},
           {"inventory_devices", listed},
           {"devices", matched},
           {"platforms", by_platform},
           {"unsupported", unsupported},
           {"waves", waves},
           {"failure_limit", matched == 0 ? 0 : strategy.FailureLimit(matched)}});
    }
    json waves = json::array();
    for (std::size_t n : total_waves) {
      waves.push_back(n);
    }
    return json{{"model", d.model},
                {"channel", d.channel},
                {"channel_version", d.channel_version},
                {"release", {{"version", d.release_version}, {"id", d.release_id},
                             {"platforms", platforms}}},
                {"selector", d.selector},
                {"strategy", d.strategy},
                {"gateways", gateways},
                {"totals", {{"devices", total},
                            {"platforms", total_platforms},
                            {"unsupported", total_unsupported},
                            {"waves", waves}}}};
  }

  void ListDeployments(const httplib::Request& req, httplib::Response& res) {
    Read(req, res, "DEPLOYMENT_UNKNOWN", [&] {
      return ListJson("deployments",
                      api.registry_.ListDeployments(req.get_param_value("model"),
                                                    req.get_param_value("state")),
                      [](const store::DeploymentRecord& d) { return DeploymentJson(d, false); });
    });
  }

  void GetDeployment(const httplib::Request& req, httplib::Response& res, const std::string& id) {
    Read(req, res, "DEPLOYMENT_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(auto d, api.registry_.GetDeployment(id));
      return DeploymentWithDeliveries(d);
    });
  }

  // Whether a complete deployment (every gateway holds the package) has ended for good: every
  // one of its gateways reported its rollout of it finished (complete, aborted or cancelled).
  // Until then it can still be paused, resumed and cancelled, since the rollouts still run.
  bool RolloutsFinished(const store::DeploymentRecord& d) const {
    if (d.state != "complete" || api.deployments_ == nullptr) {
      return d.state == "complete";
    }
    json fleet = api.deployments_->Fleet(d.id);
    for (const json& g : d.gateways) {
      bool finished = std::any_of(fleet.begin(), fleet.end(), [&](const json& r) {
        std::string state = trust::StringOr(r, "state");
        return r.value("gateway", json()) == g &&
               (state == "complete" || state == "aborted" || state == "cancelled");
      });
      if (!finished) {
        return false;
      }
    }
    return true;
  }

  // The states in which a deployment can no longer be paused, resumed or cancelled.
  std::set<std::string> EndedStates(const store::DeploymentRecord& d) const {
    if (RolloutsFinished(d)) {
      return store::FinalDeploymentStates();
    }
    return {"cancelled", "failed"};
  }

  // The optional {"reason": "…"} of a pause, resume or cancel; nullopt after sending the 400.
  std::optional<std::string> ReasonBody(const httplib::Request& req, httplib::Response& res) {
    if (req.body.empty()) {
      return std::string();
    }
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || (body.contains("reason") && !body["reason"].is_string())) {
      SendError(res, 400, "INVALID_REQUEST", "invalid request",
                "the body, when there is one, must be {\"reason\": \"…\"}");
      return std::nullopt;
    }
    return trust::StringOr(body, "reason").substr(0, 500);
  }

  // POST /api/v1/deployments/ID/pause and …/resume.
  void PauseDeployment(const httplib::Request& req, httplib::Response& res, const std::string& id,
                       bool pause) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kDeploy, &who)) {
      return;
    }
    [&] {
      auto reason = ReasonBody(req, res);
      if (!reason) {
        return;
      }
      auto current = api.registry_.GetDeployment(id);
      if (!current) {
        return SendStoreError(res, current.error(), "DEPLOYMENT_UNKNOWN");
      }
      if (RolloutsFinished(*current)) {
        return SendError(res, 409, "CONFLICT", "conflicts with the hub's state",
                         "deployment " + id + " has ended: every gateway's rollout of it "
                         "finished; it cannot be " + (pause ? "paused" : "resumed"));
      }
      auto d = api.registry_.SetDeploymentPaused(
          id, pause, {Now(), Who(who), pause ? "paused" : "resumed", *reason},
          EndedStates(*current));
      if (!d) {
        return SendStoreError(res, d.error(), "DEPLOYMENT_UNKNOWN");
      }
      if (api.deployments_ != nullptr) {
        api.deployments_->DeploymentPauseChanged(id);
      }
      auto shown = DeploymentWithDeliveries(*d);
      SendJson(res, 200, shown ? *shown : DeploymentJson(*d, true));
    }();
    api.gate_.Audit(req, res, who, pause ? "deployment.pause" : "deployment.resume",
                    id.substr(0, 64));
  }

  void CancelDeployment(const httplib::Request& req, httplib::Response& res,
                        const std::string& id) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kDeploy, &who)) {
      return;
    }
    json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    std::string reason = body.is_object() ? trust::StringOr(body, "reason") : "";
    // A complete deployment (delivered everywhere) can still be cancelled while a gateway's
    // rollout of it runs: the gateways are told to cancel their rollouts.
    auto current = api.registry_.GetDeployment(id);
    auto d = !current ? Result<store::DeploymentRecord>(Fail(current.error()))
                      : api.registry_.TransitionDeployment(
                            id, "cancelled", {Now(), Who(who), "cancelled", reason.substr(0, 500)},
                            EndedStates(*current));
    if (!d) {
      SendStoreError(res, d.error(), "DEPLOYMENT_UNKNOWN");
    } else {
      if (api.deployments_ != nullptr) {
        api.deployments_->DeploymentCancelled(
            id, "deployment " + id + " cancelled by " + Who(who) +
                    (reason.empty() ? "" : ": " + reason.substr(0, 500)));
      }
      auto shown = DeploymentWithDeliveries(*d);
      SendJson(res, 200, shown ? *shown : DeploymentJson(*d, true));
    }
    api.gate_.Audit(req, res, who, "deployment.cancel", id.substr(0, 64));
  }

  // ---- gateways ----

  static json GatewayJson(const store::GatewayRecord& g) {
    return {{"id", g.id},
            {"name", g.name},
            {"labels", g.labels},
            {"registered_at", Time(g.registered_at)},
            {"last_seen", OptionalTime(g.last_seen)},
            {"devices", g.devices}};
  }

  void CreateRegistrationToken(const httplib::Request& req, httplib::Response& res) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kManageGateways, &who)) {
      return;
    }
    json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
    std::string expires_in = body.is_object() ? trust::StringOr(body, "expires_in", "24h") : "";
    auto ttl = ParseDuration(expires_in);
    if (!ttl || ttl->count() <= 0) {
      return SendError(res, 400, "INVALID_REQUEST", "invalid request",
                       "expires_in must be a duration such as \"24h\"");
    }
    auto hex = RandomHex(32);
    if (!hex) {
      return SendInternal(res, hex.error());
    }
    std::string token = "alkreg_" + *hex;
    std::int64_t expires =
        Now() + std::chrono::duration_cast<std::chrono::seconds>(*ttl).count();
    if (Status s = api.registry_.AddRegistrationToken(HashToken(token), Who(who), Now(), expires);
        !s) {
      return SendInternal(res, s.error());
    }
    SendJson(res, 201, {{"token", token}, {"expires_at", Time(expires)}});
    api.gate_.Audit(req, res, who, "gateway.token", "expires " + Time(expires));
  }

  // POST /api/v1/gateways/register: the one-time token is the credential.
  void Register(const httplib::Request& req, httplib::Response& res) {
    Principal who{"", Role::kViewer, true};
    auto body = JsonBody(req, res);
    if (!body) {
      return;
    }
    std::string token = trust::StringOr(*body, "token");
    std::string name = trust::StringOr(*body, "name");
    json labels = body->value("labels", json::object());
    [&] {
      // The name becomes an MQTT topic level (delivery/protocol.hpp): no "." or "..".
      if (!IsTokenName(name) || name.size() > 48 || !std::isalnum(static_cast<unsigned char>(name[0]))) {
        return SendError(res, 400, "INVALID_REQUEST", "invalid request",
                         "name: 1-48 of letters, digits, '.', '_' and '-', starting with a letter "
                         "or digit");
      }
      if (!labels.is_object() ||
          !std::all_of(labels.begin(), labels.end(), [](const json& v) { return v.is_string(); })) {
        return SendError(res, 400, "INVALID_REQUEST", "invalid request",
                         "labels must be an object of string values");
      }
      if (!token.starts_with("alkreg_")) {
        return SendError(res, 401, "UNAUTHORIZED", "authentication required",
                         "\"token\" must be a registration token (alkreg_…) from the hub's admin");
      }
      // Checked before the one-time token is used up: a gateway refused for its certificate
      // registers with the same token once it has the right one.
      AccessDecision certified =
          api.access_.CheckRegistration(name, net::VerifiedClientOf(req).name);
      if (!certified.allowed()) {
        return certified.status == 401
                   ? SendError(res, 401, "UNAUTHORIZED", "authentication required",
                               certified.reason)
                   : SendError(res, 403, "DENIED", "requested access to the resource is denied",
                               certified.reason);
      }
      auto suffix = RandomHex(4);
      auto id = RandomHex(8);
      if (!suffix || !id) {
        return SendInternal(res, !suffix ? suffix.error() : id.error());
      }
      // The gateway's own credential, named so that it is unique even when a registration of
      // the same name failed before.
      auto minted = api.access_.CreateToken("gateway-" + name + "-" + *suffix, Role::kGateway,
                                            "registration", std::nullopt);
      if (!minted) {
        return SendInternal(res, minted.error());
      }
      store::GatewayRecord g{.id = "gw-" + *id, .name = name, .labels = labels,
                             .token_name = minted->record.name, .registered_at = Now(),
                             .last_seen = std::nullopt, .devices = 0};
      Status registered = api.registry_.RegisterGateway(HashToken(token), g);
      if (!registered) {
        (void)api.access_.store().RevokeToken(minted->record.name, Now());
        ErrorCode code = registered.error().code();
        if (code == ErrorCode::kNotFound || code == ErrorCode::kInvalidArgument) {
          return SendError(res, 401, "UNAUTHORIZED", "authentication required",
                           registered.error().message());
        }
        return SendStoreError(res, registered.error(), "GATEWAY_UNKNOWN");
      }
      who = {minted->record.name, Role::kGateway, false};
      SendJson(res, 201,
               {{"id", g.id}, {"name", g.name}, {"credential", minted->token}, {"role", "gateway"}});
    }();
    api.gate_.Audit(req, res, who, "gateway.register", name.substr(0, 64));
  }

  void ListGateways(const httplib::Request& req, httplib::Response& res) {
    Read(req, res, "GATEWAY_UNKNOWN",
         [&] { return ListJson("gateways", api.registry_.ListGateways(), GatewayJson); });
  }

  void GetGateway(const httplib::Request& req, httplib::Response& res, const std::string& name) {
    Read(req, res, "GATEWAY_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(auto g, api.registry_.GetGateway(name));
      return GatewayJson(g);
    });
  }

  void PutInventory(const httplib::Request& req, httplib::Response& res, const std::string& name) {
    Principal who;
    if (!api.gate_.ApiAllowed(req, res, Permission::kReportInventory, &who)) {
      return;
    }
    [&] {
      auto g = api.registry_.GetGateway(name);
      if (!g) {
        return SendStoreError(res, g.error(), "GATEWAY_UNKNOWN");
      }
      if (who.role == Role::kGateway && who.name != g->token_name) {
        return SendError(res, 403, "DENIED", "requested access to the resource is denied",
                         "the credential " + who.name + " belongs to another gateway than " + name);
      }
      auto body = JsonBody(req, res, 8 << 20);
      if (!body) {
        return;
      }
      if (!body->contains("devices") || !(*body)["devices"].is_array()) {
        return SendError(res, 400, "INVALID_REQUEST", "invalid request",
                         "the body must be {\"devices\": [ … ]}");
      }
      Status s = api.registry_.PutInventory(name, (*body)["devices"], Now());
      if (!s) {
        return SendStoreError(res, s.error(), "GATEWAY_UNKNOWN");
      }
      res.status = 204;
    }();
    if (res.status >= 400) {
      api.gate_.Audit(req, res, who, "gateway.inventory", name.substr(0, 64));
    }
  }

  void GetInventory(const httplib::Request& req, httplib::Response& res, const std::string& name) {
    Read(req, res, "GATEWAY_UNKNOWN", [&]() -> Result<json> {
      AIRLOCK_ASSIGN_OR_RETURN(auto inv, api.registry_.GetInventory(name));
      return json{{"gateway", name},
                  {"reported_at", inv.reported_at == 0 ? json(nullptr) : json(Time(inv.reported_at))},
                  {"devices", inv.devices}};
    });
  }
};

RegistryApi::RegistryApi(ApiGate& gate, AccessControl& access, store::RegistryStore& registry,
                         store::MetadataStore& meta, store::BlobStore& blobs,
                         std::optional<trust::TrustedRoot> root, DeploymentObserver* deployments)
    : gate_(gate),
      access_(access),
      registry_(registry),
      meta_(meta),
      blobs_(blobs),
      root_(std::move(root)),
      root_chain_(ChainOf(root_)),
      deployments_(deployments) {}

Result<store::ReleaseRecord> RegistryApi::CheckRelease(const Principal& who,
                                                       const trust::SignedDocument& doc,
                                                       std::string_view model) {
  if (!root_) {
    return Fail(ErrorCode::kUnsupported, "the hub has no root to verify releases against");
  }
  TimePoint now(std::chrono::seconds(access_.Now()));
  AIRLOCK_ASSIGN_OR_RETURN(trust::Release release, trust::VerifyRelease(doc, root_->root, now, 0));
  if (release.model != model) {
    return Fail(ErrorCode::kVerification,
                "the release is for model " + release.model + ", not " + std::string(model));
  }
  AIRLOCK_ASSIGN_OR_RETURN(trust::SignatureTally tally,
                           trust::TallySignatures(doc, root_->root, trust::kRolePublisher));
  AIRLOCK_ASSIGN_OR_RETURN(Digest id, trust::ReleaseId(doc));
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, doc.Serialize());
  return store::ReleaseRecord{release.model,
                              release.version,
                              release.release_counter,
                              id.ToString(),
                              release.index_digest.ToString(),
                              std::move(text),
                              tally.valid,
                              who.name.empty() ? "anonymous" : who.name,
                              access_.Now()};
}

Result<RegistryApi::ManifestEffect> RegistryApi::InspectManifest(const Principal& who,
                                                                 std::string_view repository,
                                                                 std::string_view bytes,
                                                                 const Digest& digest) {
  ManifestEffect effect;
  json doc = json::parse(bytes, nullptr, false);
  if (!doc.is_object()) {
    return effect;
  }
  std::string artifact = trust::StringOr(doc, "artifactType");
  std::string media = trust::StringOr(doc, "mediaType");
  if (media == kImageIndex && artifact == kModelArtifact) {
    std::string model = AnnotationOf(doc, "ai.airlock.model");
    std::string version = AnnotationOf(doc, "org.opencontainers.image.version");
    if (model.empty() || version.empty()) {
      return effect;
    }
    AIRLOCK_RETURN_IF_ERROR(registry_.CheckVersionPush(model, version, digest.ToString()));
    store::ModelVersionRecord v;
    v.model = model;
    v.version = version;
    v.repository = std::string(repository);
    v.index_digest = digest.ToString();
    v.index_size = bytes.size();
    v.platforms = PlatformsOf(doc);
    v.lineage = LineageOf(doc);
    v.description = AnnotationOf(doc, "org.opencontainers.image.description");
    if (v.description.empty()) {
      v.description = DescriptionOf(repository, doc);
    }
    v.pushed_by = who.name.empty() ? "anonymous" : who.name;
    v.pushed_at = access_.Now();
    effect.version = std::move(v);
    return effect;
  }
  if (artifact == kReleaseArtifact && doc.contains("layers") && doc["layers"].is_array() &&
      doc["layers"].size() == 1 && root_) {
    auto layer = Digest::Parse(trust::StringOr(doc["layers"][0], "digest"));
    if (!layer) {
      return effect;
    }
    auto text = ReadSmallBlob(blobs_, *layer, trust::kMaxDocumentSize);
    if (!text) {
      return Fail(ErrorCode::kVerification,
                  "the release referrer's document cannot be read: " + text.error().message());
    }
    auto release_doc = trust::SignedDocument::Parse(*text);
    if (!release_doc) {
      return Fail(ErrorCode::kVerification,
                  "the release referrer's document: " + release_doc.error().message());
    }
    auto model = trust::StringOr(release_doc->body(), "model");
    auto record = CheckRelease(who, *release_doc, model);
    if (!record) {
      return Fail(ErrorCode::kVerification,
                  "the release does not verify against the hub's root: " +
                      record.error().message());
    }
    effect.release = std::move(*record);
  }
  return effect;
}

std::string RegistryApi::DescriptionOf(std::string_view repository, const json& index) {
  // The model's description is in its config (the first variant's): index → manifest → config.
  if (!index.contains("manifests") || !index["manifests"].is_array() ||
      index["manifests"].empty()) {
    return "";
  }
  auto first = Digest::Parse(trust::StringOr(index["manifests"][0], "digest"));
  if (!first) {
    return "";
  }
  auto manifest = meta_.GetManifest(repository, *first);
  if (!manifest) {
    return "";
  }
  json m = json::parse(manifest->bytes, nullptr, false);
  if (!m.is_object() || !m.contains("config") || !m["config"].is_object() ||
      trust::StringOr(m["config"], "mediaType") != kModelConfig) {
    return "";
  }
  auto config_digest = Digest::Parse(trust::StringOr(m["config"], "digest"));
  if (!config_digest) {
    return "";
  }
  auto config = ReadSmallBlob(blobs_, *config_digest, kMaxConfigBlob);
  if (!config) {
    return "";
  }
  json c = json::parse(*config, nullptr, false);
  if (!c.is_object() || !c.contains("descriptor") || !c["descriptor"].is_object()) {
    return "";
  }
  return trust::StringOr(c["descriptor"], "description");
}

void RegistryApi::ApplyManifest(const ManifestEffect& effect) {
  if (effect.version) {
    if (Status s = registry_.RecordVersion(*effect.version); !s) {
      spdlog::error("registry: cannot record version {} of {}: {}", effect.version->version,
                    effect.version->model, s.error().ToString());
    } else {
      spdlog::info("registry: version {} of {} pushed by {}", effect.version->version,
                   effect.version->model, effect.version->pushed_by);
    }
  }
  if (effect.release) {
    bool created = false;
    auto r = registry_.PutRelease(*effect.release, &created);
    if (!r) {
      spdlog::warn("registry: the release of {} {} pushed as a referrer was not recorded: {}",
                   effect.release->model, effect.release->version, r.error().ToString());
    }
  }
}

void RegistryApi::Routes(httplib::Server& s) {
  auto h = std::make_shared<Handlers>(Handlers{*this});
  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  const std::string seg = "([^/]+)";
  const std::string models = "/api/v1/models/" + seg;
  s.Get("/api/v1/roots", [h](Req q, Res r) { h->ListRoots(q, r); });
  s.Get("/api/v1/models", [h](Req q, Res r) { h->ListModels(q, r); });
  s.Get(models, [h](Req q, Res r) { h->GetModel(q, r, q.matches[1]); });
  s.Get(models + "/versions", [h](Req q, Res r) { h->ListVersions(q, r, q.matches[1]); });
  s.Get(models + "/versions/" + seg,
        [h](Req q, Res r) { h->GetVersion(q, r, q.matches[1], q.matches[2]); });
  s.Post(models + "/releases", [h](Req q, Res r) { h->PostRelease(q, r, q.matches[1]); });
  s.Get(models + "/releases", [h](Req q, Res r) { h->ListReleases(q, r, q.matches[1]); });
  s.Get(models + "/releases/" + seg,
        [h](Req q, Res r) { h->GetRelease(q, r, q.matches[1], q.matches[2]); });
  s.Get(models + "/channels/" + seg,
        [h](Req q, Res r) { h->GetChannel(q, r, q.matches[1], q.matches[2]); });
  s.Put(models + "/channels/" + seg,
        [h](Req q, Res r) { h->PutChannel(q, r, q.matches[1], q.matches[2]); });
  s.Post("/api/v1/deployments", [h](Req q, Res r) { h->CreateDeployment(q, r); });
  s.Post("/api/v1/deployments/preview", [h](Req q, Res r) { h->PreviewDeployment(q, r); });
  s.Get("/api/v1/deployments", [h](Req q, Res r) { h->ListDeployments(q, r); });
  s.Get("/api/v1/deployments/" + seg, [h](Req q, Res r) { h->GetDeployment(q, r, q.matches[1]); });
  s.Post("/api/v1/deployments/" + seg + "/cancel",
         [h](Req q, Res r) { h->CancelDeployment(q, r, q.matches[1]); });
  s.Post("/api/v1/deployments/" + seg + "/pause",
         [h](Req q, Res r) { h->PauseDeployment(q, r, q.matches[1], true); });
  s.Post("/api/v1/deployments/" + seg + "/resume",
         [h](Req q, Res r) { h->PauseDeployment(q, r, q.matches[1], false); });
  s.Get("/api/v1/deliveries", [h](Req q, Res r) { h->ListDeliveries(q, r); });
  s.Post("/api/v1/gateways/tokens", [h](Req q, Res r) { h->CreateRegistrationToken(q, r); });
  s.Post("/api/v1/gateways/register", [h](Req q, Res r) { h->Register(q, r); });
  s.Get("/api/v1/gateways", [h](Req q, Res r) { h->ListGateways(q, r); });
  s.Get("/api/v1/gateways/" + seg, [h](Req q, Res r) { h->GetGateway(q, r, q.matches[1]); });
  s.Put("/api/v1/gateways/" + seg + "/inventory",
        [h](Req q, Res r) { h->PutInventory(q, r, q.matches[1]); });
  s.Get("/api/v1/gateways/" + seg + "/inventory",
        [h](Req q, Res r) { h->GetInventory(q, r, q.matches[1]); });
}

}  // namespace airlock::hub
