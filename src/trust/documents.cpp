#include "trust/documents.hpp"

#include <algorithm>
#include <set>

#include "core/encoding.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::trust {
namespace {

using nlohmann::json;

Error Malformed(std::string_view what) {
  return Error(ErrorCode::kCorrupt, "malformed document: " + std::string(what));
}

Result<std::string> GetString(const json& obj, const char* key, std::string_view doc) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return Fail(Malformed(std::string(doc) + " needs a string \"" + key + "\""));
  }
  return it->get<std::string>();
}

Result<std::uint64_t> GetUnsigned(const json& obj, const char* key, std::string_view doc) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer() || it->get<std::int64_t>() < 0) {
    return Fail(Malformed(std::string(doc) + " needs a non-negative integer \"" + key + "\""));
  }
  return it->get<std::uint64_t>();
}

Result<TimePoint> GetTime(const json& obj, const char* key, std::string_view doc) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, GetString(obj, key, doc));
  auto t = ParseRfc3339(text);
  if (!t) {
    return Fail(Malformed(std::string(doc) + " \"" + key + "\": " + t.error().message()));
  }
  return *t;
}

Status CheckType(const json& body, std::string_view want) {
  auto it = body.find("_type");
  if (it == body.end() || !it->is_string() || *it != want) {
    return Fail(ErrorCode::kVerification, "document is not a " + std::string(want) + " document");
  }
  auto spec = body.find("spec_version");
  if (spec == body.end() || !spec->is_number_integer() || *spec != kSpecVersion) {
    return Fail(ErrorCode::kUnsupported,
                std::string(want) +
                    " document has an unsupported spec_version (this Airlock "
                    "understands " +
                    std::to_string(kSpecVersion) + ")");
  }
  return {};
}

std::string ShortId(const std::string& id) { return id.substr(0, 12); }

}  // namespace

Result<SignedDocument> SignedDocument::Parse(std::string_view text) {
  AIRLOCK_ASSIGN_OR_RETURN(json doc, ParseJson(text, kMaxDocumentSize, "signed document"));
  if (!doc.is_object() || !doc.contains("signed") || !doc["signed"].is_object() ||
      !doc.contains("signatures") || !doc["signatures"].is_array()) {
    return Fail(Malformed("want an object with \"signed\" and \"signatures\""));
  }
  SignedDocument out;
  out.body_ = std::move(doc["signed"]);
  if (!out.body_.contains("_type") || !out.body_["_type"].is_string()) {
    return Fail(Malformed("\"signed\" has no \"_type\""));
  }
  for (const auto& s : doc["signatures"]) {
    if (!s.is_object() || !s.contains("keyid") || !s["keyid"].is_string() || !s.contains("sig") ||
        !s["sig"].is_string()) {
      return Fail(Malformed("a signature needs string \"keyid\" and \"sig\""));
    }
    auto raw = Base64Decode(s["sig"].get<std::string>());
    if (!raw) {
      return Fail(Malformed("signature by " + s["keyid"].get<std::string>() + " is not base64"));
    }
    out.signatures_.push_back({s["keyid"].get<std::string>(), std::move(*raw)});
  }
  return out;
}

SignedDocument SignedDocument::Wrap(json body) {
  SignedDocument out;
  out.body_ = std::move(body);
  return out;
}

std::string SignedDocument::type() const { return StringOr(body_, "_type"); }

Result<std::string> SignedDocument::SignedBytes() const { return Canonicalize(body_); }

Status SignedDocument::Sign(const PrivateKey& key) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, SignedBytes());
  AIRLOCK_ASSIGN_OR_RETURN(std::string signature, key.Sign(bytes));  // a token may fail
  std::erase_if(signatures_, [&](const Signature& s) { return s.keyid == key.id(); });
  signatures_.push_back({key.id(), std::move(signature)});
  return {};
}

Status SignedDocument::MergeSignatures(const SignedDocument& other) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string mine, SignedBytes());
  AIRLOCK_ASSIGN_OR_RETURN(std::string theirs, other.SignedBytes());
  if (mine != theirs) {
    return Fail(ErrorCode::kInvalidArgument,
                "the documents differ: only signatures of the same " + type() +
                    " body can be merged");
  }
  for (const Signature& s : other.signatures_) {
    bool known = std::any_of(signatures_.begin(), signatures_.end(),
                             [&](const Signature& m) { return m.keyid == s.keyid; });
    if (!known) {
      signatures_.push_back(s);
    }
  }
  return {};
}

Result<std::string> SignedDocument::Serialize() const {
  json sigs = json::array();
  for (const auto& s : signatures_) {
    sigs.push_back({{"keyid", s.keyid}, {"sig", Base64Encode(s.sig)}});
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string text,
                           Canonicalize(json{{"signed", body_}, {"signatures", sigs}}));
  return text + "\n";
}

json Root::ToJson() const {
  json keys_json = json::object();
  for (const auto& [id, key] : keys) {
    keys_json[id] = {{"keytype", "ed25519"}, {"public", HexEncode(key.raw())}};
  }
  json roles_json = json::object();
  for (const auto& [name, spec] : roles) {
    roles_json[name] = {{"keyids", spec.keyids}, {"threshold", spec.threshold}};
  }
  return {{"_type", "root"},    {"spec_version", kSpecVersion},
          {"version", version}, {"expires", FormatRfc3339(expires)},
          {"keys", keys_json},  {"roles", roles_json}};
}

Result<Root> Root::FromJson(const json& body) {
  AIRLOCK_RETURN_IF_ERROR(CheckType(body, "root"));
  Root root;
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t version, GetUnsigned(body, "version", "root"));
  root.version = static_cast<std::int64_t>(version);
  AIRLOCK_ASSIGN_OR_RETURN(root.expires, GetTime(body, "expires", "root"));
  if (!body.contains("keys") || !body["keys"].is_object()) {
    return Fail(Malformed("root needs an object \"keys\""));
  }
  for (const auto& [id, k] : body["keys"].items()) {
    if (!k.is_object() || StringOr(k, "keytype") != "ed25519" || !k.contains("public") ||
        !k["public"].is_string()) {
      return Fail(
          Malformed("root key " + id + " must be {\"keytype\": \"ed25519\", \"public\": hex}"));
    }
    auto raw = HexDecode(k["public"].get<std::string>());
    if (!raw) {
      return Fail(Malformed("root key " + id + " is not hex"));
    }
    AIRLOCK_ASSIGN_OR_RETURN(PublicKey key, PublicKey::FromRaw(*raw));
    // The id is derived from the key, so one key cannot appear under two ids.
    if (key.id() != id) {
      return Fail(ErrorCode::kVerification,
                  "root lists key " + ShortId(id) + "… under an id that is not its SHA-256");
    }
    root.keys.emplace(id, std::move(key));
  }
  if (!body.contains("roles") || !body["roles"].is_object()) {
    return Fail(Malformed("root needs an object \"roles\""));
  }
  for (const auto& [name, r] : body["roles"].items()) {
    if (!r.is_object() || !r.contains("keyids") || !r["keyids"].is_array() ||
        !r.contains("threshold") || !r["threshold"].is_number_integer()) {
      return Fail(Malformed("role " + name + " needs \"keyids\" and \"threshold\""));
    }
    RoleSpec spec;
    // Read wide and range-check before narrowing: get<int>() would turn 2^32 + 1 into 1.
    const std::int64_t threshold = r["threshold"].get<std::int64_t>();
    std::set<std::string> seen;
    for (const auto& id : r["keyids"]) {
      if (!id.is_string() || !root.keys.contains(id.get<std::string>())) {
        return Fail(Malformed("role " + name + " names a key that the root does not list"));
      }
      if (seen.insert(id.get<std::string>()).second) {
        spec.keyids.push_back(id.get<std::string>());
      }
    }
    if (threshold < 1 || static_cast<std::uint64_t>(threshold) > spec.keyids.size()) {
      return Fail(ErrorCode::kVerification,
                  "role " + name + " has threshold " + r["threshold"].dump() + " but " +
                      std::to_string(spec.keyids.size()) + " distinct keys");
    }
    spec.threshold = static_cast<int>(threshold);
    root.roles.emplace(name, std::move(spec));
  }
  if (!root.roles.contains(kRoleRoot)) {
    return Fail(Malformed("root has no \"root\" role"));
  }
  return root;
}

Result<SignatureTally> TallySignatures(const SignedDocument& doc, const Root& root,
                                       std::string_view role) {
  auto it = root.roles.find(role);
  if (it == root.roles.end()) {
    return Fail(ErrorCode::kVerification, "the root defines no \"" + std::string(role) +
                                              "\" role to check signatures against");
  }
  const RoleSpec& spec = it->second;
  auto canonical = doc.SignedBytes();
  if (!canonical) {
    // Nothing Airlock signs has a canonical form problem; such a document was not made by us.
    return Fail(ErrorCode::kVerification,
                doc.type() + " document cannot have been signed: " + canonical.error().message());
  }
  const std::string& bytes = *canonical;
  SignatureTally tally;
  tally.threshold = spec.threshold;
  std::set<std::string> valid;
  for (const auto& sig : doc.signatures()) {
    if (std::find(spec.keyids.begin(), spec.keyids.end(), sig.keyid) == spec.keyids.end()) {
      tally.notes.push_back("key " + ShortId(sig.keyid) + "… is not a " + std::string(role) +
                            " key");
      continue;
    }
    if (!root.keys.at(sig.keyid).Verify(bytes, sig.sig)) {
      tally.notes.push_back("signature by " + ShortId(sig.keyid) + "… does not verify");
      continue;
    }
    if (!valid.insert(sig.keyid).second) {
      tally.notes.push_back("key " + ShortId(sig.keyid) + "… signed more than once (counted once)");
    }
  }
  tally.valid = static_cast<int>(valid.size());
  return tally;
}

Status CheckThreshold(const SignedDocument& doc, const Root& root, std::string_view role) {
  AIRLOCK_ASSIGN_OR_RETURN(SignatureTally tally, TallySignatures(doc, root, role));
  if (tally.met()) {
    return {};
  }
  std::string msg = doc.type() + " document has " + std::to_string(tally.valid) + " valid " +
                    std::string(role) + " signature(s), needs " + std::to_string(tally.threshold);
  for (const auto& n : tally.notes) {
    msg += "; " + n;
  }
  return Fail(ErrorCode::kVerification, msg);
}

Result<Root> VerifyRoot(const SignedDocument& doc, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(Root root, Root::FromJson(doc.body()));
  AIRLOCK_RETURN_IF_ERROR(CheckThreshold(doc, root, kRoleRoot));
  if (root.expires <= now) {
    return Fail(ErrorCode::kVerification, "root version " + std::to_string(root.version) +
                                              " expired at " + FormatRfc3339(root.expires));
  }
  return root;
}

namespace {

// The roles of before that lost a key in after (or that after no longer has).
std::set<std::string, std::less<>> RolesThatLostAKey(const Root& before, const Root& after) {
  std::set<std::string, std::less<>> lost;
  for (const auto& [name, spec] : before.roles) {
    auto it = after.roles.find(name);
    if (it == after.roles.end()) {
      lost.insert(name);
      continue;
    }
    for (const auto& id : spec.keyids) {
      if (std::find(it->second.keyids.begin(), it->second.keyids.end(), id) ==
          it->second.keyids.end()) {
        lost.insert(name);
        break;
      }
    }
  }
  return lost;
}

}  // namespace

Result<RootUpdate> UpdateRoot(const Root& trusted, const std::vector<SignedDocument>& chain,
                              TimePoint now) {
  if (chain.size() > kMaxRootChain) {
    return Fail(ErrorCode::kInvalidArgument,
                std::to_string(chain.size()) + " roots at once; at most " +
                    std::to_string(kMaxRootChain) + " are walked in one update");
  }
  // Parse once, order by version, skip what is already trusted.
  std::vector<std::pair<Root, const SignedDocument*>> newer;
  for (const SignedDocument& doc : chain) {
    AIRLOCK_ASSIGN_OR_RETURN(Root r, Root::FromJson(doc.body()));
    if (r.version > trusted.version) {
      newer.emplace_back(std::move(r), &doc);
    }
  }
  std::sort(newer.begin(), newer.end(),
            [](const auto& a, const auto& b) { return a.first.version < b.first.version; });

  RootUpdate update{.root = trusted, .accepted = {}, .rotated_roles = {},
                    .channel_keys_rotated = false};
  for (auto& [next, doc] : newer) {
    const std::string name = "root version " + std::to_string(next.version);
    if (next.version != update.root.version + 1) {
      return Fail(ErrorCode::kVerification,
                  name + " does not follow the trusted version " +
                      std::to_string(update.root.version) + ": version " +
                      std::to_string(update.root.version + 1) +
                      " is missing (roots are applied one version at a time)");
    }
    AIRLOCK_RETURN_IF_ERROR(WithContext(CheckThreshold(*doc, update.root, kRoleRoot),
                                        name + ", by the keys of the root it replaces"));
    AIRLOCK_RETURN_IF_ERROR(
        WithContext(CheckThreshold(*doc, next, kRoleRoot), name + ", by its own keys"));
    for (auto& role : RolesThatLostAKey(update.root, next)) {
      update.rotated_roles.insert(std::move(role));
    }
    if (ChannelSigningRole(update.root) != ChannelSigningRole(next)) {
      update.channel_keys_rotated = true;
    }
    update.root = std::move(next);
    update.accepted.push_back(*doc);
  }
  if (update.root.expires <= now) {
    return Fail(ErrorCode::kVerification,
                "root version " + std::to_string(update.root.version) + " expired at " +
                    FormatRfc3339(update.root.expires) +
                    ": sign a new root with a later --expires and distribute it");
  }
  if (update.rotated_roles.contains(ChannelSigningRole(update.root))) {
    update.channel_keys_rotated = true;
  }
  return update;
}

json Release::ToJson() const {
  return {{"_type", "release"},
          {"spec_version", kSpecVersion},
          {"model", model},
          {"version", version},
          {"release_counter", release_counter},
          {"index",
           {{"mediaType", index_media_type},
            {"digest", index_digest.ToString()},
            {"size", index_size}}},
          {"platforms", platforms},
          {"created", FormatRfc3339(created)},
          {"expires", FormatRfc3339(expires)}};
}

Result<Release> Release::FromJson(const json& body) {
  AIRLOCK_RETURN_IF_ERROR(CheckType(body, "release"));
  Release r;
  AIRLOCK_ASSIGN_OR_RETURN(r.model, GetString(body, "model", "release"));
  AIRLOCK_ASSIGN_OR_RETURN(r.version, GetString(body, "version", "release"));
  AIRLOCK_ASSIGN_OR_RETURN(r.release_counter, GetUnsigned(body, "release_counter", "release"));
  AIRLOCK_ASSIGN_OR_RETURN(r.created, GetTime(body, "created", "release"));
  AIRLOCK_ASSIGN_OR_RETURN(r.expires, GetTime(body, "expires", "release"));
  if (!body.contains("index") || !body["index"].is_object()) {
    return Fail(Malformed("release needs an object \"index\""));
  }
  const json& index = body["index"];
  AIRLOCK_ASSIGN_OR_RETURN(r.index_media_type, GetString(index, "mediaType", "release index"));
  AIRLOCK_ASSIGN_OR_RETURN(std::string digest, GetString(index, "digest", "release index"));
  AIRLOCK_ASSIGN_OR_RETURN(r.index_digest, Digest::Parse(digest));
  AIRLOCK_ASSIGN_OR_RETURN(r.index_size, GetUnsigned(index, "size", "release index"));
  if (!body.contains("platforms") || !body["platforms"].is_array()) {
    return Fail(Malformed("release needs an array \"platforms\""));
  }
  for (const auto& p : body["platforms"]) {
    if (!p.is_string()) {
      return Fail(Malformed("release platforms must be strings"));
    }
    r.platforms.push_back(p.get<std::string>());
  }
  return r;
}

Result<Release> VerifyRelease(const SignedDocument& doc, const Root& root, TimePoint now,
                              std::uint64_t trusted_counter) {
  AIRLOCK_ASSIGN_OR_RETURN(Release release, Release::FromJson(doc.body()));
  AIRLOCK_RETURN_IF_ERROR(CheckThreshold(doc, root, kRolePublisher));
  if (release.expires <= now) {
    return Fail(ErrorCode::kVerification, "release " + release.model + " " + release.version +
                                              " expired at " + FormatRfc3339(release.expires));
  }
  if (release.release_counter < trusted_counter) {
    return Fail(ErrorCode::kVerification,
                "release counter " + std::to_string(release.release_counter) + " of " +
                    release.model + " is below the trusted counter " +
                    std::to_string(trusted_counter) + " (a rollback to an older release)");
  }
  return release;
}

Result<Digest> ReleaseId(const SignedDocument& release) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string bytes, release.SignedBytes());
  return Sha256Of(bytes);
}

bool ValidChannelName(std::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-') {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::string_view ChannelSigningRole(const Root& root) {
  return root.roles.contains(kRoleReleaseManager) ? kRoleReleaseManager : kRolePublisher;
}

json Channel::ToJson() const {
  json entries = json::array();
  for (const auto& e : releases) {
    entries.push_back({{"version", e.version},
                       {"release_counter", e.release_counter},
                       {"release", e.release.ToString()}});
  }
  return {{"_type", "channel"},   {"spec_version", kSpecVersion},
          {"model", model},       {"channel", name},
          {"version", version},   {"expires", FormatRfc3339(expires)},
          {"releases", entries}};
}

Result<Channel> Channel::FromJson(const json& body) {
  AIRLOCK_RETURN_IF_ERROR(CheckType(body, "channel"));
  Channel c;
  AIRLOCK_ASSIGN_OR_RETURN(c.model, GetString(body, "model", "channel"));
  AIRLOCK_ASSIGN_OR_RETURN(c.name, GetString(body, "channel", "channel"));
  if (!ValidChannelName(c.name)) {
    return Fail(Malformed("channel name \"" + c.name.substr(0, 80) +
                          "\" is not 1-63 of a-z, 0-9 and '-'"));
  }
  AIRLOCK_ASSIGN_OR_RETURN(c.version, GetUnsigned(body, "version", "channel"));
  AIRLOCK_ASSIGN_OR_RETURN(c.expires, GetTime(body, "expires", "channel"));
  if (!body.contains("releases") || !body["releases"].is_array() || body["releases"].empty()) {
    return Fail(Malformed("channel needs a non-empty array \"releases\""));
  }
  std::set<std::string> seen;
  for (const auto& e : body["releases"]) {
    if (!e.is_object()) {
      return Fail(Malformed("channel releases must be objects"));
    }
    ChannelEntry entry;
    AIRLOCK_ASSIGN_OR_RETURN(entry.version, GetString(e, "version", "channel release"));
    AIRLOCK_ASSIGN_OR_RETURN(entry.release_counter,
                             GetUnsigned(e, "release_counter", "channel release"));
    AIRLOCK_ASSIGN_OR_RETURN(std::string id, GetString(e, "release", "channel release"));
    auto digest = Digest::Parse(id);
    if (!digest) {
      return Fail(Malformed("channel release " + entry.version + ": " + digest.error().message()));
    }
    entry.release = *digest;
    if (!seen.insert(id).second) {
      return Fail(Malformed("channel lists release " + entry.version + " twice"));
    }
    c.releases.push_back(std::move(entry));
  }
  return c;
}

Result<Channel> VerifyChannel(const SignedDocument& doc, const Root& root, TimePoint now,
                              std::uint64_t trusted_version, bool allow_equal) {
  AIRLOCK_ASSIGN_OR_RETURN(Channel channel, Channel::FromJson(doc.body()));
  AIRLOCK_RETURN_IF_ERROR(CheckThreshold(doc, root, ChannelSigningRole(root)));
  std::string what = "channel " + channel.name + " of " + channel.model;
  if (channel.expires <= now) {
    return Fail(ErrorCode::kVerification,
                what + " (version " + std::to_string(channel.version) + ") expired at " +
                    FormatRfc3339(channel.expires));
  }
  bool newer = channel.version > trusted_version ||
               (allow_equal && channel.version == trusted_version);
  if (!newer) {
    return Fail(ErrorCode::kVerification,
                what + " has version " + std::to_string(channel.version) +
                    ", not above the trusted version " + std::to_string(trusted_version) +
                    " (a rollback or a replay)");
  }
  return channel;
}

}  // namespace airlock::trust
