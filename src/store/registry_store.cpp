#include "store/registry_store.hpp"

#include <cctype>

namespace airlock::store {
namespace {

using nlohmann::json;

const SqlMigration kRegistryMigrations[] = {
    {1, "models, versions, releases, channels, deployments, gateways",
     R"sql(
CREATE TABLE models (
  name        TEXT PRIMARY KEY,
  description TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE TABLE model_versions (
  model        TEXT NOT NULL REFERENCES models(name),
  version      TEXT NOT NULL,
  repository   TEXT NOT NULL,
  index_digest TEXT NOT NULL,
  index_size   BIGINT NOT NULL,
  platforms    TEXT NOT NULL,
  description  TEXT NOT NULL,
  lineage      TEXT NOT NULL,
  pushed_by    TEXT NOT NULL,
  pushed_at    BIGINT NOT NULL,
  PRIMARY KEY (model, version)
);
CREATE TABLE releases (
  model           TEXT NOT NULL,
  version         TEXT NOT NULL,
  release_counter BIGINT NOT NULL,
  id              TEXT NOT NULL,
  index_digest    TEXT NOT NULL,
  document        TEXT NOT NULL,
  signatures      BIGINT NOT NULL,
  uploaded_by     TEXT NOT NULL,
  uploaded_at     BIGINT NOT NULL,
  PRIMARY KEY (model, version),
  UNIQUE (model, release_counter),
  FOREIGN KEY (model, version) REFERENCES model_versions(model, version)
);
CREATE TABLE channels (
  model           TEXT NOT NULL,
  channel         TEXT NOT NULL,
  version         BIGINT NOT NULL,
  current_release TEXT NOT NULL,
  document        TEXT NOT NULL,
  signatures      BIGINT NOT NULL,
  updated_by      TEXT NOT NULL,
  updated_at      BIGINT NOT NULL,
  PRIMARY KEY (model, channel)
);
CREATE TABLE channel_history (
  model           TEXT NOT NULL,
  channel         TEXT NOT NULL,
  version         BIGINT NOT NULL,
  current_release TEXT NOT NULL,
  document        TEXT NOT NULL,
  signatures      BIGINT NOT NULL,
  updated_by      TEXT NOT NULL,
  updated_at      BIGINT NOT NULL,
  PRIMARY KEY (model, channel, version)
);
CREATE TABLE channel_proposals (
  model           TEXT NOT NULL,
  channel         TEXT NOT NULL,
  version         BIGINT NOT NULL,
  current_release TEXT NOT NULL,
  document        TEXT NOT NULL,
  signatures      BIGINT NOT NULL,
  proposed_by     TEXT NOT NULL,
  proposed_at     BIGINT NOT NULL,
  PRIMARY KEY (model, channel)
);
CREATE TABLE deployments (
  id              TEXT PRIMARY KEY,
  model           TEXT NOT NULL,
  channel         TEXT NOT NULL,
  channel_version BIGINT NOT NULL,
  release_version TEXT NOT NULL,
  release_id      TEXT NOT NULL,
  gateways        TEXT NOT NULL,
  selector        TEXT NOT NULL,
  strategy        TEXT NOT NULL,
  state           TEXT NOT NULL,
  created_by      TEXT NOT NULL,
  created_at      BIGINT NOT NULL,
  updated_at      BIGINT NOT NULL
);
CREATE INDEX deployments_by_model ON deployments(model, created_at);
CREATE TABLE deployment_events (
  id          {{serial}},
  deployment  TEXT NOT NULL REFERENCES deployments(id),
  at          BIGINT NOT NULL,
  actor       TEXT NOT NULL,
  action      TEXT NOT NULL,
  detail      TEXT NOT NULL
);
CREATE INDEX deployment_events_by_deployment ON deployment_events(deployment, id);
CREATE TABLE gateway_registration_tokens (
  hash        TEXT PRIMARY KEY,
  created_by  TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL,
  used_at     BIGINT,
  used_by     TEXT
);
CREATE TABLE gateways (
  id            TEXT PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  labels        TEXT NOT NULL,
  token_name    TEXT NOT NULL,
  registered_at BIGINT NOT NULL,
  last_seen     BIGINT
);
CREATE TABLE gateway_inventory (
  gateway      TEXT PRIMARY KEY REFERENCES gateways(name),
  reported_at  BIGINT NOT NULL,
  devices      TEXT NOT NULL,
  device_count BIGINT NOT NULL
)
)sql"},
    {2, "deliveries (one per deployment and target gateway)",
     R"sql(
CREATE TABLE deliveries (
  id          TEXT PRIMARY KEY,
  deployment  TEXT NOT NULL REFERENCES deployments(id),
  gateway     TEXT NOT NULL,
  state       TEXT NOT NULL,
  final       BIGINT NOT NULL,
  record      TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  updated_at  BIGINT NOT NULL,
  UNIQUE (deployment, gateway)
);
CREATE INDEX deliveries_active ON deliveries(final, deployment)
)sql"},
    {3, "a deployment's rollouts paused from the hub",
     R"sql(
ALTER TABLE deployments ADD COLUMN paused BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN paused_changed_at BIGINT NOT NULL DEFAULT 0
)sql"},
};

std::string S(std::string_view v) { return std::string(v); }
std::int64_t I(std::uint64_t v) { return static_cast<std::int64_t>(v); }

json ParsedOr(const std::string& text, json fallback) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

constexpr char kVersionColumns[] =
    "SELECT model, version, repository, index_digest, index_size, platforms, description, "
    "lineage, pushed_by, pushed_at FROM model_versions ";

ModelVersionRecord VersionAt(const SqlRows& r, std::size_t i) {
  ModelVersionRecord v;
  v.model = r.Text(i, 0);
  v.version = r.Text(i, 1);
  v.repository = r.Text(i, 2);
  v.index_digest = r.Text(i, 3);
  v.index_size = static_cast<std::uint64_t>(r.Int(i, 4));
  v.platforms = ParsedOr(r.Text(i, 5), json::array());
  v.description = r.Text(i, 6);
  v.lineage = ParsedOr(r.Text(i, 7), json::object());
  v.pushed_by = r.Text(i, 8);
  v.pushed_at = r.Int(i, 9);
  return v;
}

constexpr char kReleaseColumns[] =
    "SELECT model, version, release_counter, id, index_digest, document, signatures, "
    "uploaded_by, uploaded_at FROM releases ";

ReleaseRecord ReleaseAt(const SqlRows& r, std::size_t i) {
  ReleaseRecord x;
  x.model = r.Text(i, 0);
  x.version = r.Text(i, 1);
  x.release_counter = static_cast<std::uint64_t>(r.Int(i, 2));
  x.id = r.Text(i, 3);
  x.index_digest = r.Text(i, 4);
  x.document = r.Text(i, 5);
  x.signatures = r.Int(i, 6);
  x.uploaded_by = r.Text(i, 7);
  x.uploaded_at = r.Int(i, 8);
  return x;
}

// Columns model, channel, version, current_release, document, signatures, by, at.
ChannelRecord ChannelAt(const SqlRows& r, std::size_t i) {
  ChannelRecord c;
  c.model = r.Text(i, 0);
  c.channel = r.Text(i, 1);
  c.version = static_cast<std::uint64_t>(r.Int(i, 2));
  c.current_release = r.Text(i, 3);
  c.document = r.Text(i, 4);
  c.signatures = r.Int(i, 5);
  c.updated_by = r.Text(i, 6);
  c.updated_at = r.Int(i, 7);
  return c;
}

constexpr char kDeploymentColumns[] =
    "SELECT id, model, channel, channel_version, release_version, release_id, gateways, "
    "selector, strategy, state, created_by, created_at, updated_at, paused, paused_changed_at "
    "FROM deployments ";

DeploymentRecord DeploymentAt(const SqlRows& r, std::size_t i) {
  DeploymentRecord d;
  d.id = r.Text(i, 0);
  d.model = r.Text(i, 1);
  d.channel = r.Text(i, 2);
  d.channel_version = static_cast<std::uint64_t>(r.Int(i, 3));
  d.release_version = r.Text(i, 4);
  d.release_id = r.Text(i, 5);
  d.gateways = ParsedOr(r.Text(i, 6), json::array());
  d.selector = ParsedOr(r.Text(i, 7), json::object());
  d.strategy = ParsedOr(r.Text(i, 8), json::object());
  d.state = r.Text(i, 9);
  d.created_by = r.Text(i, 10);
  d.created_at = r.Int(i, 11);
  d.updated_at = r.Int(i, 12);
  d.paused = r.Int(i, 13) != 0;
  d.paused_changed_at = r.Int(i, 14);
  return d;
}

Status AddEvent(SqlSession& s, std::string_view id, const DeploymentEvent& e) {
  AIRLOCK_RETURN_IF_ERROR(s.Query(
      "INSERT INTO deployment_events (deployment, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
      {S(id), e.at, e.actor, e.action, e.detail}));
  return {};
}

Result<DeploymentRecord> LoadDeployment(SqlSession& s, std::string_view id) {
  AIRLOCK_ASSIGN_OR_RETURN(SqlRows r, s.Query(std::string(kDeploymentColumns) + "WHERE id = ?",
                                              {S(id)}));
  if (r.empty()) {
    return Fail(ErrorCode::kNotFound, "no deployment " + std::string(id));
  }
  DeploymentRecord d = DeploymentAt(r, 0);
  AIRLOCK_ASSIGN_OR_RETURN(
      SqlRows events, s.Query("SELECT at, actor, action, detail FROM deployment_events WHERE "
                              "deployment = ? ORDER BY id",
                              {S(id)}));
  for (std::size_t i = 0; i < events.size(); ++i) {
    d.history.push_back(
        {events.Int(i, 0), events.Text(i, 1), events.Text(i, 2), events.Text(i, 3)});
  }
  return d;
}

constexpr char kGatewayColumns[] =
    "SELECT g.id, g.name, g.labels, g.token_name, g.registered_at, g.last_seen, "
    "COALESCE(i.device_count, 0) FROM gateways g LEFT JOIN gateway_inventory i ON i.gateway = "
    "g.name ";

GatewayRecord GatewayAt(const SqlRows& r, std::size_t i) {
  GatewayRecord g;
  g.id = r.Text(i, 0);
  g.name = r.Text(i, 1);
  g.labels = ParsedOr(r.Text(i, 2), json::object());
  g.token_name = r.Text(i, 3);
  g.registered_at = r.Int(i, 4);
  g.last_seen = r.MaybeInt(i, 5);
  g.devices = r.Int(i, 6);
  return g;
}

// The current channel version of (model, channel); 0 when it has none.
Result<std::uint64_t> CurrentChannelVersion(SqlSession& s, const ChannelRecord& c) {
  AIRLOCK_ASSIGN_OR_RETURN(
      SqlRows r, s.Query("SELECT version FROM channels WHERE model = ? AND channel = ?",
                         {c.model, c.channel}));
  return r.empty() ? 0 : static_cast<std::uint64_t>(r.Int(0, 0));
}

Status CheckChannelNewer(SqlSession& s, const ChannelRecord& c) {
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t current, CurrentChannelVersion(s, c));
  if (c.version <= current) {
    return Fail(ErrorCode::kAlreadyExists,
                "channel " + c.channel + " of " + c.model + " is at version " +
                    std::to_string(current) + " and this document has version " +
                    std::to_string(c.version) + ": a new document needs a higher one");
  }
  return {};
}

// A LIKE pattern matching text anywhere, with LIKE's own characters escaped (ESCAPE '!').
std::string ContainsPattern(std::string_view text) {
  std::string out = "%";
  for (char c : text) {
    char lower = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == '%' || lower == '_' || lower == '!') {
      out += '!';
    }
    out += lower;
  }
  return out + "%";
}

}  // namespace

Result<std::unique_ptr<RegistryStore>> RegistryStore::Open(SqlDatabase& db, std::int64_t now) {
  AIRLOCK_RETURN_IF_ERROR(MigrateComponent(db, "registry", kRegistryMigrations, now));
  return std::unique_ptr<RegistryStore>(new RegistryStore(db));
}

Status RegistryStore::CheckVersionPush(std::string_view model, std::string_view version,
                                       std::string_view index_digest) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r, s.Query("SELECT index_digest, release_counter FROM releases WHERE model = ? "
                           "AND version = ?",
                           {S(model), S(version)}));
    if (!r.empty() && r.Text(0, 0) != index_digest) {
      return Fail(ErrorCode::kAlreadyExists,
                  "version " + std::string(version) + " of " + std::string(model) +
                      " is released (counter " + r.Text(0, 1) + ") with index " + r.Text(0, 0) +
                      "; a released version never changes: give the new package a new version");
    }
    return {};
  });
}

Status RegistryStore::RecordVersion(const ModelVersionRecord& v) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO models (name, description, created_at, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET description = excluded.description, "
        "updated_at = excluded.updated_at",
        {v.model, v.description, v.pushed_at, v.pushed_at}));
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO model_versions (model, version, repository, index_digest, index_size, "
        "platforms, description, lineage, pushed_by, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?) ON CONFLICT (model, version) DO UPDATE SET repository = excluded.repository, "
        "index_digest = excluded.index_digest, index_size = excluded.index_size, platforms = "
        "excluded.platforms, description = excluded.description, lineage = excluded.lineage, "
        "pushed_by = excluded.pushed_by, pushed_at = excluded.pushed_at",
        {v.model, v.version, v.repository, v.index_digest, I(v.index_size), v.platforms.dump(),
         v.description, v.lineage.dump(), v.pushed_by, v.pushed_at}));
    return {};
  });
}

Result<std::vector<ModelSummary>> RegistryStore::ListModels(std::string_view query) {
  return SqlTransact<std::vector<ModelSummary>>(
      db_, [&](SqlSession& s) -> Result<std::vector<ModelSummary>> {
        std::string sql =
            "SELECT m.name, m.description, m.updated_at, (SELECT COUNT(*) FROM model_versions v "
            "WHERE v.model = m.name), (SELECT v.version FROM model_versions v WHERE v.model = "
            "m.name ORDER BY v.pushed_at DESC, v.version DESC LIMIT 1) FROM models m ";
        std::vector<SqlParam> params;
        if (!query.empty()) {
          std::string p = ContainsPattern(query);
          sql +=
              "WHERE lower(m.name) LIKE ? ESCAPE '!' OR lower(m.description) LIKE ? ESCAPE '!' "
              "OR EXISTS (SELECT 1 FROM model_versions v WHERE v.model = m.name AND "
              "(lower(v.version) LIKE ? ESCAPE '!' OR lower(v.lineage) LIKE ? ESCAPE '!')) ";
          params = {p, p, p, p};
        }
        sql += "ORDER BY m.name";
        AIRLOCK_ASSIGN_OR_RETURN(SqlRows r, s.Query(sql, params));
        AIRLOCK_ASSIGN_OR_RETURN(
            SqlRows channels,
            s.Query("SELECT model, channel, current_release FROM channels ORDER BY channel"));
        std::vector<ModelSummary> out;
        for (std::size_t i = 0; i < r.size(); ++i) {
          ModelSummary m;
          m.name = r.Text(i, 0);
          m.description = r.Text(i, 1);
          m.updated_at = r.Int(i, 2);
          m.versions = r.Int(i, 3);
          m.latest = r.Text(i, 4);
          for (std::size_t c = 0; c < channels.size(); ++c) {
            if (channels.Text(c, 0) == m.name) {
              m.channels[channels.Text(c, 1)] = channels.Text(c, 2);
            }
          }
          out.push_back(std::move(m));
        }
        return out;
      });
}

Result<std::vector<ModelVersionRecord>> RegistryStore::ListVersions(std::string_view model) {
  return SqlTransact<std::vector<ModelVersionRecord>>(
      db_, [&](SqlSession& s) -> Result<std::vector<ModelVersionRecord>> {
        AIRLOCK_ASSIGN_OR_RETURN(SqlRows m,
                                 s.Query("SELECT 1 FROM models WHERE name = ?", {S(model)}));
        if (m.empty()) {
          return Fail(ErrorCode::kNotFound, "no model " + std::string(model));
        }
        AIRLOCK_ASSIGN_OR_RETURN(
            SqlRows r, s.Query(std::string(kVersionColumns) +
                                   "WHERE model = ? ORDER BY pushed_at DESC, version DESC",
                               {S(model)}));
        std::vector<ModelVersionRecord> out;
        for (std::size_t i = 0; i < r.size(); ++i) {
          out.push_back(VersionAt(r, i));
        }
        return out;
      });
}

Result<ModelVersionRecord> RegistryStore::GetVersion(std::string_view model,
                                                     std::string_view version) {
  return SqlQueryOne<ModelVersionRecord>(
      db_, std::string(kVersionColumns) + "WHERE model = ? AND version = ?", {S(model), S(version)},
      VersionAt, "no version " + std::string(version) + " of model " + std::string(model));
}

Result<ReleaseRecord> RegistryStore::PutRelease(const ReleaseRecord& x, bool* created) {
  *created = false;
  return SqlTransact<ReleaseRecord>(db_, [&](SqlSession& s) -> Result<ReleaseRecord> {
    *created = false;
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows v, s.Query("SELECT index_digest FROM model_versions WHERE "
                                                 "model = ? AND version = ?",
                                                 {x.model, x.version}));
    if (v.empty()) {
      return Fail(ErrorCode::kInvalidArgument,
                  "version " + x.version + " of " + x.model +
                      " is not on the hub: push the package before its release");
    }
    if (v.Text(0, 0) != x.index_digest) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the release names index " + x.index_digest + " but version " + x.version +
                      " of " + x.model + " on the hub has index " + v.Text(0, 0));
    }
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows same, s.Query(std::string(kReleaseColumns) +
                                                       "WHERE model = ? AND version = ?",
                                                   {x.model, x.version}));
    if (!same.empty()) {
      ReleaseRecord stored = ReleaseAt(same, 0);
      if (stored.id != x.id) {
        return Fail(ErrorCode::kAlreadyExists,
                    "version " + x.version + " of " + x.model + " has another release (" +
                        stored.id + ", counter " + std::to_string(stored.release_counter) +
                        "); a release is immutable: co-sign that one, or release a new version");
      }
      if (x.signatures > stored.signatures) {
        AIRLOCK_RETURN_IF_ERROR(s.Query(
            "UPDATE releases SET document = ?, signatures = ? WHERE model = ? AND version = ?",
            {x.document, x.signatures, x.model, x.version}));
        stored.document = x.document;
        stored.signatures = x.signatures;
      }
      return stored;
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows top, s.Query("SELECT version, release_counter FROM releases WHERE model = ? "
                             "ORDER BY release_counter DESC LIMIT 1",
                             {x.model}));
    if (!top.empty() && static_cast<std::uint64_t>(top.Int(0, 1)) >= x.release_counter) {
      return Fail(ErrorCode::kAlreadyExists,
                  "release counter " + std::to_string(x.release_counter) + " of " + x.model +
                      " is not above " + top.Text(0, 1) + " (version " + top.Text(0, 0) +
                      "): sign the new release with --counter " +
                      std::to_string(top.Int(0, 1) + 1) + " or higher");
    }
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("INSERT INTO releases (model, version, release_counter, id, index_digest, "
                "document, signatures, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                {x.model, x.version, I(x.release_counter), x.id, x.index_digest, x.document,
                 x.signatures, x.uploaded_by, x.uploaded_at}));
    *created = true;
    return x;
  });
}

Result<std::vector<ReleaseRecord>> RegistryStore::ListReleases(std::string_view model) {
  return SqlQueryAll<ReleaseRecord>(
      db_, std::string(kReleaseColumns) + "WHERE model = ? ORDER BY release_counter DESC",
      {S(model)}, ReleaseAt);
}

Result<ReleaseRecord> RegistryStore::GetRelease(std::string_view model, std::string_view version) {
  return SqlQueryOne<ReleaseRecord>(
      db_, std::string(kReleaseColumns) + "WHERE model = ? AND version = ?", {S(model), S(version)},
      ReleaseAt,
      "version " + std::string(version) + " of " + std::string(model) +
          " has no release on the hub");
}

Result<ReleaseRecord> RegistryStore::GetReleaseById(std::string_view model, std::string_view id) {
  return SqlQueryOne<ReleaseRecord>(
      db_, std::string(kReleaseColumns) + "WHERE model = ? AND id = ?", {S(model), S(id)},
      ReleaseAt, "model " + std::string(model) + " has no release " + std::string(id));
}

Result<ChannelState> RegistryStore::GetChannel(std::string_view model, std::string_view channel) {
  return SqlTransact<ChannelState>(db_, [&](SqlSession& s) -> Result<ChannelState> {
    ChannelState out;
    const std::vector<SqlParam> key = {S(model), S(channel)};
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows cur, s.Query("SELECT model, channel, version, current_release, document, "
                             "signatures, updated_by, updated_at FROM channels WHERE model = ? "
                             "AND channel = ?",
                             key));
    if (!cur.empty()) {
      out.current = ChannelAt(cur, 0);
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows pending,
        s.Query("SELECT model, channel, version, current_release, document, signatures, "
                "proposed_by, proposed_at FROM channel_proposals WHERE model = ? AND channel = ?",
                key));
    if (!pending.empty()) {
      out.pending = ChannelAt(pending, 0);
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows history,
        s.Query("SELECT model, channel, version, current_release, '', signatures, updated_by, "
                "updated_at FROM channel_history WHERE model = ? AND channel = ? ORDER BY "
                "version DESC",
                key));
    for (std::size_t i = 0; i < history.size(); ++i) {
      out.history.push_back(ChannelAt(history, i));
    }
    return out;
  });
}

Result<std::vector<ChannelRecord>> RegistryStore::ListChannels(std::string_view model) {
  return SqlQueryAll<ChannelRecord>(
      db_,
      "SELECT model, channel, version, current_release, document, signatures, updated_by, "
      "updated_at FROM channels WHERE model = ? ORDER BY channel",
      {S(model)}, ChannelAt);
}

Status RegistryStore::SetChannel(const ChannelRecord& c) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(CheckChannelNewer(s, c));
    const std::vector<SqlParam> row = {c.model,    c.channel,    I(c.version), c.current_release,
                                       c.document, c.signatures, c.updated_by, c.updated_at};
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO channels (model, channel, version, current_release, document, signatures, "
        "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, channel) DO "
        "UPDATE SET version = excluded.version, current_release = excluded.current_release, "
        "document = excluded.document, signatures = excluded.signatures, updated_by = "
        "excluded.updated_by, updated_at = excluded.updated_at",
        row));
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("INSERT INTO channel_history (model, channel, version, current_release, "
                "document, signatures, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row));
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "DELETE FROM channel_proposals WHERE model = ? AND channel = ? AND version <= ?",
        {c.model, c.channel, I(c.version)}));
    return {};
  });
}

Status RegistryStore::ProposeChannel(const ChannelRecord& c) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(CheckChannelNewer(s, c));
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO channel_proposals (model, channel, version, current_release, document, "
        "signatures, proposed_by, proposed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
        "(model, channel) DO UPDATE SET version = excluded.version, current_release = "
        "excluded.current_release, document = excluded.document, signatures = "
        "excluded.signatures, proposed_by = excluded.proposed_by, proposed_at = "
        "excluded.proposed_at",
        {c.model, c.channel, I(c.version), c.current_release, c.document, c.signatures,
         c.updated_by, c.updated_at}));
    return {};
  });
}

Status RegistryStore::CreateDeployment(const DeploymentRecord& d) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO deployments (id, model, channel, channel_version, release_version, "
        "release_id, gateways, selector, strategy, state, created_by, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {d.id, d.model, d.channel, I(d.channel_version), d.release_version, d.release_id,
         d.gateways.dump(), d.selector.dump(), d.strategy.dump(), d.state, d.created_by,
         d.created_at, d.updated_at}));
    for (const auto& e : d.history) {
      AIRLOCK_RETURN_IF_ERROR(AddEvent(s, d.id, e));
    }
    return {};
  });
}

Result<std::vector<DeploymentRecord>> RegistryStore::ListDeployments(std::string_view model,
                                                                     std::string_view state) {
  return SqlQueryAll<DeploymentRecord>(
      db_,
      std::string(kDeploymentColumns) +
          "WHERE (? = '' OR model = ?) AND (? = '' OR state = ?) ORDER BY created_at DESC, id DESC",
      {S(model), S(model), S(state), S(state)}, DeploymentAt);
}

Result<DeploymentRecord> RegistryStore::GetDeployment(std::string_view id) {
  return SqlTransact<DeploymentRecord>(
      db_, [&](SqlSession& s) -> Result<DeploymentRecord> { return LoadDeployment(s, id); });
}

Result<DeploymentRecord> RegistryStore::TransitionDeployment(std::string_view id,
                                                             std::string_view state,
                                                             const DeploymentEvent& event,
                                                             const std::set<std::string>& final) {
  return SqlTransact<DeploymentRecord>(db_, [&](SqlSession& s) -> Result<DeploymentRecord> {
    AIRLOCK_ASSIGN_OR_RETURN(DeploymentRecord d, LoadDeployment(s, id));
    if (final.contains(d.state)) {
      return Fail(ErrorCode::kAlreadyExists,
                  "deployment " + d.id + " is " + d.state + " already; it cannot become " +
                      std::string(state));
    }
    AIRLOCK_RETURN_IF_ERROR(s.Query("UPDATE deployments SET state = ?, updated_at = ? WHERE id = ?",
                                    {S(state), event.at, S(id)}));
    AIRLOCK_RETURN_IF_ERROR(AddEvent(s, id, event));
    return LoadDeployment(s, id);
  });
}

Result<DeploymentRecord> RegistryStore::SetDeploymentPaused(std::string_view id, bool paused,
                                                            const DeploymentEvent& event,
                                                            const std::set<std::string>& ended) {
  return SqlTransact<DeploymentRecord>(db_, [&](SqlSession& s) -> Result<DeploymentRecord> {
    AIRLOCK_ASSIGN_OR_RETURN(DeploymentRecord d, LoadDeployment(s, id));
    const char* verb = paused ? "paused" : "resumed";
    if (ended.contains(d.state)) {
      return Fail(ErrorCode::kAlreadyExists, "deployment " + d.id + " is " + d.state +
                                                 ": it has ended and cannot be " + verb);
    }
    if (d.paused == paused) {
      return Fail(ErrorCode::kAlreadyExists,
                  "deployment " + d.id + (paused ? " is paused already" : " is not paused") +
                      (paused ? " (airlock deployments resume continues it)" : ""));
    }
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "UPDATE deployments SET paused = ?, paused_changed_at = ?, updated_at = ? WHERE id = ?",
        {std::int64_t{paused ? 1 : 0}, event.at, event.at, S(id)}));
    AIRLOCK_RETURN_IF_ERROR(AddEvent(s, id, event));
    return LoadDeployment(s, id);
  });
}

Status RegistryStore::AddRegistrationToken(std::string_view hash, std::string_view created_by,
                                           std::int64_t created_at, std::int64_t expires_at) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_RETURN_IF_ERROR(
        s.Query("INSERT INTO gateway_registration_tokens (hash, created_by, created_at, "
                "expires_at) VALUES (?, ?, ?, ?)",
                {S(hash), S(created_by), created_at, expires_at}));
    return {};
  });
}

Status RegistryStore::RegisterGateway(std::string_view token_hash, const GatewayRecord& g) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows t, s.Query("SELECT expires_at, used_at, used_by FROM gateway_registration_tokens "
                           "WHERE hash = ?",
                           {S(token_hash)}));
    if (t.empty()) {
      return Fail(ErrorCode::kNotFound, "the registration token is not one this hub issued");
    }
    if (!t.IsNull(0, 1)) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the registration token was used already (by gateway " + t.Text(0, 2) +
                      "); ask the hub's admin for a new one");
    }
    if (t.Int(0, 0) <= g.registered_at) {
      return Fail(ErrorCode::kInvalidArgument,
                  "the registration token expired; ask the hub's admin for a new one");
    }
    auto inserted = s.Query(
        "INSERT INTO gateways (id, name, labels, token_name, registered_at) VALUES (?, ?, ?, ?, ?)",
        {g.id, g.name, g.labels.dump(), g.token_name, g.registered_at});
    if (!inserted) {
      if (inserted.error().code() == ErrorCode::kAlreadyExists) {
        return Fail(ErrorCode::kAlreadyExists, "a gateway named " + g.name + " is registered");
      }
      return Fail(std::move(inserted.error()));
    }
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "UPDATE gateway_registration_tokens SET used_at = ?, used_by = ? WHERE hash = ?",
        {g.registered_at, g.name, S(token_hash)}));
    return {};
  });
}

Result<std::vector<GatewayRecord>> RegistryStore::ListGateways() {
  return SqlQueryAll<GatewayRecord>(db_, std::string(kGatewayColumns) + "ORDER BY g.name", {},
                                    GatewayAt);
}

Result<GatewayRecord> RegistryStore::GetGateway(std::string_view name) {
  return SqlQueryOne<GatewayRecord>(db_, std::string(kGatewayColumns) + "WHERE g.name = ?",
                                    {S(name)}, GatewayAt, "no gateway named " + std::string(name));
}

Result<RegistryCounts> RegistryStore::Counts() {
  RegistryCounts c;
  Status read = db_.Transact([&](SqlSession& s) -> Status {
    c = RegistryCounts{};  // a retried transaction starts over
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows deployments,
                             s.Query("SELECT state, COUNT(*) FROM deployments GROUP BY state"));
    for (std::size_t i = 0; i < deployments.size(); ++i) {
      c.deployments[deployments.Text(i, 0)] = deployments.Int(i, 1);
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows deliveries,
        s.Query("SELECT gateway, state, final, COUNT(*) FROM deliveries GROUP BY gateway, state, "
                "final"));
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
      std::string state = deliveries.Text(i, 1);
      std::int64_t n = deliveries.Int(i, 3);
      c.deliveries[state] += n;
      if (deliveries.Int(i, 2) == 0) {
        c.active_deliveries[{deliveries.Text(i, 0), state}] += n;
      }
    }
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows gateways, s.Query("SELECT name FROM gateways ORDER BY name"));
    for (std::size_t i = 0; i < gateways.size(); ++i) {
      c.gateways.push_back(gateways.Text(i, 0));
    }
    return {};
  });
  if (!read) {
    return Fail(std::move(read.error()));
  }
  return c;
}

Status RegistryStore::PutInventory(std::string_view name, const json& devices, std::int64_t at) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows seen,
                             s.Query("UPDATE gateways SET last_seen = ? WHERE name = ?",
                                     {at, S(name)}));
    if (seen.affected == 0) {
      return Fail(ErrorCode::kNotFound, "no gateway named " + std::string(name));
    }
    AIRLOCK_RETURN_IF_ERROR(s.Query(
        "INSERT INTO gateway_inventory (gateway, reported_at, devices, device_count) VALUES (?, "
        "?, ?, ?) ON CONFLICT (gateway) DO UPDATE SET reported_at = excluded.reported_at, "
        "devices = excluded.devices, device_count = excluded.device_count",
        {S(name), at, devices.dump(), static_cast<std::int64_t>(devices.size())}));
    return {};
  });
}

Result<InventoryRecord> RegistryStore::GetInventory(std::string_view name) {
  return SqlTransact<InventoryRecord>(db_, [&](SqlSession& s) -> Result<InventoryRecord> {
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows g, s.Query("SELECT 1 FROM gateways WHERE name = ?", {S(name)}));
    if (g.empty()) {
      return Fail(ErrorCode::kNotFound, "no gateway named " + std::string(name));
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r,
        s.Query("SELECT reported_at, devices FROM gateway_inventory WHERE gateway = ?", {S(name)}));
    InventoryRecord out;
    out.gateway = std::string(name);
    if (!r.empty()) {
      out.reported_at = r.Int(0, 0);
      out.devices = ParsedOr(r.Text(0, 1), json::array());
    }
    return out;
  });
}

// ---- deliveries ----

namespace {

constexpr char kDeliveryColumns[] =
    "SELECT id, deployment, gateway, state, final, record, created_at, updated_at FROM "
    "deliveries ";

DeliveryRow DeliveryAt(const SqlRows& r, std::size_t i) {
  return {.id = r.Text(i, 0),
          .deployment = r.Text(i, 1),
          .gateway = r.Text(i, 2),
          .state = r.Text(i, 3),
          .final = r.Int(i, 4) != 0,
          .record = r.Text(i, 5),
          .created_at = r.Int(i, 6),
          .updated_at = r.Int(i, 7)};
}

}  // namespace

Status RegistryStore::CreateDeliveries(const std::vector<DeliveryRow>& rows,
                                       const std::vector<DeploymentEvent>& events) {
  if (rows.empty()) {
    return {};
  }
  return db_.Transact([&](SqlSession& s) -> Status {
    for (const auto& d : rows) {
      AIRLOCK_RETURN_IF_ERROR(s.Query(
          "INSERT INTO deliveries (id, deployment, gateway, state, final, record, created_at, "
          "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          {d.id, d.deployment, d.gateway, d.state, std::int64_t{d.final ? 1 : 0}, d.record,
           d.created_at, d.updated_at}));
    }
    for (const auto& e : events) {
      AIRLOCK_RETURN_IF_ERROR(AddEvent(s, rows.front().deployment, e));
    }
    return {};
  });
}

Status RegistryStore::UpdateDelivery(const DeliveryRow& d,
                                     const std::optional<DeploymentEvent>& event) {
  return db_.Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows r, s.Query("UPDATE deliveries SET state = ?, final = ?, record = ?, updated_at = ? "
                           "WHERE id = ?",
                           {d.state, std::int64_t{d.final ? 1 : 0}, d.record, d.updated_at, d.id}));
    if (r.affected == 0) {
      return Fail(ErrorCode::kNotFound, "no delivery " + d.id);
    }
    if (event) {
      AIRLOCK_RETURN_IF_ERROR(AddEvent(s, d.deployment, *event));
    }
    return {};
  });
}

Result<std::vector<DeliveryRow>> RegistryStore::ListDeliveries(std::string_view deployment,
                                                               bool active_only) {
  return SqlQueryAll<DeliveryRow>(
      db_,
      std::string(kDeliveryColumns) +
          "WHERE (? = '' OR deployment = ?) AND (? = 0 OR final = 0) ORDER BY deployment, gateway",
      {S(deployment), S(deployment), std::int64_t{active_only ? 1 : 0}}, DeliveryAt);
}

Result<DeliveryRow> RegistryStore::GetDelivery(std::string_view id) {
  return SqlQueryOne<DeliveryRow>(db_, std::string(kDeliveryColumns) + "WHERE id = ?", {S(id)},
                                  DeliveryAt, "no delivery " + std::string(id));
}

}  // namespace airlock::store
