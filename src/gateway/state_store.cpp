#include "gateway/state_store.hpp"

#include <array>
#include <limits>
#include <utility>

#include "core/digest.hpp"
#include "core/encoding.hpp"

namespace airlock::gateway {
namespace {

using nlohmann::json;
using store::SqlParam;
using store::SqlRows;
using store::SqlSession;

const store::SqlMigration kMigrations[] = {
    {1, "deliveries and operator tokens", R"sql(
CREATE TABLE gw_deliveries (
  id          TEXT PRIMARY KEY,
  record      TEXT NOT NULL,
  updated_at  BIGINT NOT NULL
);
CREATE TABLE gw_operator_tokens (
  name        TEXT PRIMARY KEY,
  hash        TEXT NOT NULL UNIQUE,
  created_at  BIGINT NOT NULL
))sql"},
    {2, "devices and enrollment tokens", R"sql(
CREATE TABLE gw_devices (
  id                  TEXT PRIMARY KEY,
  labels              TEXT NOT NULL,
  cert_serial         TEXT NOT NULL,
  cert_not_after      BIGINT NOT NULL,
  mqtt_password_hash  TEXT NOT NULL,
  revoked_at          BIGINT,
  enrolled_at         BIGINT NOT NULL
);
CREATE TABLE gw_enrollment_tokens (
  hash        TEXT PRIMARY KEY,
  labels      TEXT NOT NULL,
  created_at  BIGINT NOT NULL,
  expires_at  BIGINT NOT NULL,
  used_by     TEXT
))sql"},
    {3, "device states, directives and rollouts", R"sql(
CREATE TABLE gw_device_states (
  device      TEXT PRIMARY KEY,
  state       TEXT,
  seq         BIGINT NOT NULL,
  online      BIGINT NOT NULL,
  last_seen   BIGINT
);
CREATE TABLE gw_device_directives (
  device      TEXT PRIMARY KEY,
  version     BIGINT NOT NULL,
  desired     TEXT NOT NULL,
  message     TEXT NOT NULL
);
CREATE TABLE gw_rollouts (
  deployment  TEXT PRIMARY KEY,
  model       TEXT NOT NULL,
  started     BIGINT NOT NULL,
  record      TEXT NOT NULL,
  updated_at  BIGINT NOT NULL
))sql"},
    {4, "what each operator token may do", R"sql(
ALTER TABLE gw_operator_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'operator')sql"},
    {5, "the hub's latest rollout command per deployment", R"sql(
CREATE TABLE gw_hub_commands (
  deployment  TEXT PRIMARY KEY,
  command     TEXT NOT NULL,
  reason      TEXT NOT NULL,
  message_id  TEXT NOT NULL,
  sent_at     BIGINT NOT NULL,
  received_at BIGINT NOT NULL
))sql"},
};

constexpr std::array<std::pair<DeliveryPhase, const char*>, 7> kPhases = {{
    {DeliveryPhase::kHeld, "held"},
    {DeliveryPhase::kReady, "ready"},
    {DeliveryPhase::kRejected, "rejected"},
    {DeliveryPhase::kDownloading, "downloading"},
    {DeliveryPhase::kFailed, "failed"},
    {DeliveryPhase::kAvailable, "available"},
    {DeliveryPhase::kCancelled, "cancelled"},
}};

constexpr std::array<std::pair<Approval, const char*>, 6> kApprovals = {{
    {Approval::kNone, "none"},
    {Approval::kOfferPending, "offer-pending"},
    {Approval::kOfferApproved, "offer-approved"},
    {Approval::kRolloutPending, "rollout-pending"},
    {Approval::kRolloutApproved, "rollout-approved"},
    {Approval::kRejected, "rejected"},
}};

std::int64_t Unix(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}
TimePoint FromUnix(std::int64_t s) { return TimePoint(std::chrono::seconds(s)); }

std::string HashToken(std::string_view token) { return Sha256Of(token).hex(); }

Status Ok(const Result<SqlRows>& r) {
  if (!r) {
    return Fail(r.error());
  }
  return {};
}

}  // namespace

const char* DeliveryPhaseName(DeliveryPhase phase) {
  for (const auto& [p, name] : kPhases) {
    if (p == phase) {
      return name;
    }
  }
  return "?";
}
std::optional<DeliveryPhase> ParseDeliveryPhase(std::string_view name) {
  for (const auto& [p, n] : kPhases) {
    if (name == n) {
      return p;
    }
  }
  return std::nullopt;
}
const char* ApprovalName(Approval approval) {
  for (const auto& [a, name] : kApprovals) {
    if (a == approval) {
      return name;
    }
  }
  return "?";
}
std::optional<Approval> ParseApproval(std::string_view name) {
  for (const auto& [a, n] : kApprovals) {
    if (name == n) {
      return a;
    }
  }
  return std::nullopt;
}

json DeliveryRecord::ToJson() const {
  return json{{"id", id},
              {"deployment", deployment},
              {"model", model},
              {"version", version},
              {"offer", offer},
              {"phase", DeliveryPhaseName(phase)},
              {"platforms", platforms},
              {"reason", reason},
              {"message", message},
              {"failure", failure},
              {"attempt", attempt},
              {"grant", grant},
              {"repository", repository},
              {"source", source},
              {"bytes_done", bytes_done},
              {"bytes_total", bytes_total},
              {"approval", ApprovalName(approval)},
              {"decided_by", decided_by},
              {"comment", comment},
              {"decided_at", Unix(decided_at)},
              {"created_at", Unix(created_at)},
              {"updated_at", Unix(updated_at)}};
}

Result<DeliveryRecord> DeliveryRecord::FromJson(const json& j) {
  try {
    DeliveryRecord r;
    r.id = j.at("id").get<std::string>();
    r.deployment = j.at("deployment").get<std::string>();
    r.model = j.at("model").get<std::string>();
    r.version = j.at("version").get<std::string>();
    r.offer = j.at("offer");
    auto phase = ParseDeliveryPhase(j.at("phase").get<std::string>());
    auto approval = ParseApproval(j.at("approval").get<std::string>());
    if (!phase || !approval) {
      return Fail(ErrorCode::kCorrupt, "delivery record " + r.id + ": unknown phase or approval");
    }
    r.phase = *phase;
    r.approval = *approval;
    r.platforms = j.at("platforms").get<std::vector<std::string>>();
    r.reason = j.at("reason").get<std::string>();
    r.message = j.at("message").get<std::string>();
    r.failure = j.at("failure").get<std::string>();
    r.attempt = j.at("attempt").get<std::uint32_t>();
    r.grant = j.at("grant");
    r.repository = j.at("repository").get<std::string>();
    r.source = j.value("source", "");  // records written before imports existed have none
    r.bytes_done = j.at("bytes_done").get<std::uint64_t>();
    r.bytes_total = j.at("bytes_total").get<std::uint64_t>();
    r.decided_by = j.at("decided_by").get<std::string>();
    r.comment = j.at("comment").get<std::string>();
    r.decided_at = FromUnix(j.at("decided_at").get<std::int64_t>());
    r.created_at = FromUnix(j.at("created_at").get<std::int64_t>());
    r.updated_at = FromUnix(j.at("updated_at").get<std::int64_t>());
    return r;
  } catch (const json::exception& e) {
    return Fail(ErrorCode::kCorrupt, std::string("malformed delivery record: ") + e.what());
  }
}

Result<std::unique_ptr<GatewayStateStore>> GatewayStateStore::Open(const std::filesystem::path& dir,
                                                                   TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(auto db, store::SqliteDatabase::Open(dir / "gateway.db"));
  AIRLOCK_RETURN_IF_ERROR(store::MigrateComponent(*db, "gateway_state", kMigrations, Unix(now)));
  return std::unique_ptr<GatewayStateStore>(new GatewayStateStore(std::move(db)));
}

Result<DeliveryRecord> GatewayStateStore::Get(std::string_view id) {
  AIRLOCK_ASSIGN_OR_RETURN(
      std::string text,
      store::SqlQueryOne<std::string>(
          *db_, "SELECT record FROM gw_deliveries WHERE id = ?", {std::string(id)},
          [](const SqlRows& rows, std::size_t i) { return rows.Text(i, 0); },
          "no delivery " + std::string(id)));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return Fail(ErrorCode::kCorrupt, "the record of " + std::string(id) + " is not JSON");
  }
  return DeliveryRecord::FromJson(j);
}

Status GatewayStateStore::Put(const DeliveryRecord& r) {
  std::string text = r.ToJson().dump();
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_deliveries (id, record, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
        {r.id, text, Unix(r.updated_at)}));
  });
}

Result<std::vector<DeliveryRecord>> GatewayStateStore::List() {
  AIRLOCK_ASSIGN_OR_RETURN(
      std::vector<std::string> texts,
      store::SqlQueryAll<std::string>(
          *db_, "SELECT record FROM gw_deliveries ORDER BY updated_at DESC, id", {},
          [](const SqlRows& rows, std::size_t i) { return rows.Text(i, 0); }));
  std::vector<DeliveryRecord> out;
  for (const std::string& text : texts) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
      return Fail(ErrorCode::kCorrupt, "a delivery record is not JSON");
    }
    AIRLOCK_ASSIGN_OR_RETURN(DeliveryRecord r, DeliveryRecord::FromJson(j));
    out.push_back(std::move(r));
  }
  return out;
}

const char* TokenScopeName(TokenScope scope) {
  switch (scope) {
    case TokenScope::kMetrics:
      return "metrics";
    case TokenScope::kViewer:
      return "viewer";
    case TokenScope::kOperator:
      break;
  }
  return "operator";
}

std::optional<TokenScope> ParseTokenScope(std::string_view name) {
  for (TokenScope scope : {TokenScope::kOperator, TokenScope::kViewer, TokenScope::kMetrics}) {
    if (name == TokenScopeName(scope)) {
      return scope;
    }
  }
  return std::nullopt;
}

Result<std::string> GatewayStateStore::CreateToken(std::string_view name, TimePoint now,
                                                   TokenScope scope) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string secret, RandomHex(32));
  std::string token = "alkop_" + secret;
  Status stored = db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_operator_tokens (name, hash, created_at, scope) VALUES (?, ?, ?, ?)",
        {std::string(name), HashToken(token), Unix(now), std::string(TokenScopeName(scope))}));
  });
  if (!stored) {
    if (stored.error().code() == ErrorCode::kAlreadyExists) {
      return Fail(ErrorCode::kAlreadyExists,
                  "an operator token named " + std::string(name) + " exists already");
    }
    return Fail(std::move(stored.error()));
  }
  return token;
}

Result<TokenHolder> GatewayStateStore::CheckToken(std::string_view token) {
  auto found = store::SqlQueryOne<std::pair<std::string, std::string>>(
      *db_, "SELECT name, scope FROM gw_operator_tokens WHERE hash = ?", {HashToken(token)},
      [](const SqlRows& rows, std::size_t i) {
        return std::pair(rows.Text(i, 0), rows.Text(i, 1));
      },
      "unknown token");
  if (!found) {
    if (found.error().code() == ErrorCode::kNotFound) {
      return Fail(ErrorCode::kVerification, "unknown operator token");
    }
    return Fail(std::move(found.error()));
  }
  auto scope = ParseTokenScope(found->second);
  if (!scope) {
    return Fail(ErrorCode::kCorrupt,
                "the token " + found->first + " has an unknown scope " + found->second);
  }
  return TokenHolder{.name = found->first, .scope = *scope};
}

Result<StateCounts> GatewayStateStore::Counts() {
  StateCounts c;
  Status read = db_->Transact([&](SqlSession& s) -> Status {
    c = StateCounts{};
    // The records are JSON (one document per delivery): SQLite reads the two fields in place.
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows deliveries,
        s.Query("SELECT json_extract(record, '$.phase'), json_extract(record, '$.approval'), "
                "COUNT(*) FROM gw_deliveries GROUP BY 1, 2"));
    for (std::size_t i = 0; i < deliveries.size(); ++i) {
      std::int64_t n = deliveries.Int(i, 2);
      c.deliveries[deliveries.Text(i, 0)] += n;
      std::string approval = deliveries.Text(i, 1);
      if (approval == ApprovalName(Approval::kOfferPending)) {
        c.offers_pending += n;
      } else if (approval == ApprovalName(Approval::kRolloutPending)) {
        c.rollouts_pending += n;
      }
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows devices, s.Query("SELECT revoked_at IS NULL, COUNT(*) FROM gw_devices GROUP BY 1"));
    for (std::size_t i = 0; i < devices.size(); ++i) {
      (devices.Int(i, 0) != 0 ? c.devices_enrolled : c.devices_revoked) += devices.Int(i, 1);
    }
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows online,
        s.Query("SELECT COUNT(*) FROM gw_devices d JOIN gw_device_states s ON s.device = d.id "
                "WHERE d.revoked_at IS NULL AND s.online <> 0"));
    c.devices_online = online.Int(0, 0);
    return {};
  });
  if (!read) {
    return Fail(std::move(read.error()));
  }
  return c;
}

// ---- devices ----

namespace {

std::string LabelsText(const Labels& labels) { return json(labels).dump(); }

Labels LabelsFrom(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  Labels out;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_string()) {
        out[k] = v.get<std::string>();
      }
    }
  }
  return out;
}

constexpr const char* kDeviceColumns =
    "id, labels, cert_serial, cert_not_after, mqtt_password_hash, revoked_at, enrolled_at";

DeviceRecord DeviceFrom(const SqlRows& rows, std::size_t i) {
  DeviceRecord d;
  d.id = rows.Text(i, 0);
  d.labels = LabelsFrom(rows.Text(i, 1));
  d.cert_serial = rows.Text(i, 2);
  d.cert_not_after = FromUnix(rows.Int(i, 3));
  d.mqtt_password_hash = rows.Text(i, 4);
  if (auto revoked = rows.MaybeInt(i, 5)) {
    d.revoked_at = FromUnix(*revoked);
  }
  d.enrolled_at = FromUnix(rows.Int(i, 6));
  return d;
}

}  // namespace

Result<std::string> GatewayStateStore::CreateEnrollmentToken(const Labels& labels,
                                                             TimePoint expires, TimePoint now) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string secret, RandomHex(32));
  std::string token = "alken_" + secret;
  AIRLOCK_RETURN_IF_ERROR(db_->Transact([&](SqlSession& s) -> Status {
    return Ok(
        s.Query("INSERT INTO gw_enrollment_tokens (hash, labels, created_at, expires_at) "
                "VALUES (?, ?, ?, ?)",
                {HashToken(token), LabelsText(labels), Unix(now), Unix(expires)}));
  }));
  return token;
}

json DeviceStateRecord::Models() const {
  json models = json::array();
  if (state.is_object() && state.contains("models") && state["models"].is_array()) {
    for (const json& m : state["models"]) {
      if (m.is_object()) {
        models.push_back({{"model", m.value("model", "")},
                          {"phase", m.value("phase", "")},
                          {"active_version", m.value("active_version", "")}});
      }
    }
  }
  return models;
}

// How many hex digits of a token's hash name it.
constexpr std::size_t kTokenIdLength = 12;

std::string EnrollmentTokenId(std::string_view token) {
  return HashToken(token).substr(0, kTokenIdLength);
}

Result<std::vector<EnrollmentTokenRecord>> GatewayStateStore::EnrollmentTokens() {
  return store::SqlQueryAll<EnrollmentTokenRecord>(
      *db_,
      "SELECT hash, labels, created_at, expires_at, used_by FROM gw_enrollment_tokens "
      "ORDER BY created_at DESC, hash",
      {}, [](const SqlRows& rows, std::size_t i) {
        return EnrollmentTokenRecord{.id = rows.Text(i, 0).substr(0, kTokenIdLength),
                                     .labels = LabelsFrom(rows.Text(i, 1)),
                                     .created_at = FromUnix(rows.Int(i, 2)),
                                     .expires_at = FromUnix(rows.Int(i, 3)),
                                     .used_by = rows.IsNull(i, 4) ? "" : rows.Text(i, 4)};
      });
}

Status GatewayStateStore::WithdrawEnrollmentToken(std::string_view id) {
  if (id.size() != kTokenIdLength ||
      id.find_first_not_of("0123456789abcdef") != std::string_view::npos) {
    return Fail(ErrorCode::kNotFound, "no enrollment token " + std::string(id.substr(0, 64)));
  }
  return db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows found, s.Query("SELECT hash FROM gw_enrollment_tokens WHERE used_by IS NULL AND "
                               "substr(hash, 1, 12) = ?",
                               {std::string(id)}));
    if (found.empty()) {
      return Fail(ErrorCode::kNotFound, "no unused enrollment token " + std::string(id));
    }
    return Ok(s.Query("DELETE FROM gw_enrollment_tokens WHERE hash = ?", {found.Text(0, 0)}));
  });
}

Result<DeviceRecord> GatewayStateStore::Enroll(
    std::string_view token, const std::function<Result<DeviceRecord>(const Labels&)>& make,
    TimePoint now) {
  std::optional<DeviceRecord> made;
  Status done = db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows found,
                             s.Query("SELECT labels, expires_at, used_by FROM gw_enrollment_tokens "
                                     "WHERE hash = ?",
                                     {HashToken(token)}));
    if (found.empty()) {
      return Fail(ErrorCode::kVerification, "unknown enrollment token");
    }
    if (!found.IsNull(0, 2)) {
      return Fail(ErrorCode::kVerification, "this enrollment token was used already (by " +
                                                found.Text(0, 2) +
                                                "); ask the gateway's operator for a new one");
    }
    if (Unix(now) >= found.Int(0, 1)) {
      return Fail(ErrorCode::kVerification, "this enrollment token expired at " +
                                                FormatRfc3339(FromUnix(found.Int(0, 1))) +
                                                "; ask the gateway's operator for a new one");
    }
    AIRLOCK_ASSIGN_OR_RETURN(DeviceRecord d, make(LabelsFrom(found.Text(0, 0))));
    AIRLOCK_RETURN_IF_ERROR(Ok(s.Query("UPDATE gw_enrollment_tokens SET used_by = ? WHERE hash = ?",
                                       {d.id, HashToken(token)})));
    AIRLOCK_RETURN_IF_ERROR(Ok(s.Query(
        std::string("INSERT INTO gw_devices (") + kDeviceColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?)",
        {d.id, LabelsText(d.labels), d.cert_serial, Unix(d.cert_not_after), d.mqtt_password_hash,
         d.revoked_at ? SqlParam(Unix(*d.revoked_at)) : SqlParam(nullptr), Unix(d.enrolled_at)})));
    made = std::move(d);
    return {};
  });
  if (!done) {
    return Fail(std::move(done).error());
  }
  return std::move(*made);
}

Result<std::vector<DeviceRecord>> GatewayStateStore::Devices() {
  return store::SqlQueryAll<DeviceRecord>(
      *db_, std::string("SELECT ") + kDeviceColumns + " FROM gw_devices ORDER BY enrolled_at, id",
      {}, DeviceFrom);
}

Result<DeviceRecord> GatewayStateStore::Device(std::string_view id) {
  return store::SqlQueryOne<DeviceRecord>(
      *db_, std::string("SELECT ") + kDeviceColumns + " FROM gw_devices WHERE id = ?",
      {std::string(id)}, DeviceFrom, "no device " + std::string(id));
}

Status GatewayStateStore::RevokeDevice(std::string_view id, TimePoint now) {
  return db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows changed,
        s.Query("UPDATE gw_devices SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
                {Unix(now), std::string(id)}));
    if (changed.affected == 0) {
      return Fail(ErrorCode::kNotFound, "no device " + std::string(id));
    }
    return {};
  });
}

Result<Labels> GatewayStateStore::UpdateDeviceLabels(std::string_view id, const Labels& set,
                                                     const std::vector<std::string>& remove) {
  Labels labels;
  AIRLOCK_RETURN_IF_ERROR(db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(
        SqlRows rows, s.Query("SELECT labels FROM gw_devices WHERE id = ?", {std::string(id)}));
    if (rows.size() == 0) {
      return Fail(ErrorCode::kNotFound, "no device " + std::string(id));
    }
    labels = LabelsFrom(rows.Text(0, 0));
    for (const std::string& key : remove) {
      labels.erase(key);
    }
    for (const auto& [k, v] : set) {
      labels[k] = v;
    }
    if (labels.size() > kMaxDeviceLabels) {
      return Fail(ErrorCode::kInvalidArgument,
                  "a device has at most " + std::to_string(kMaxDeviceLabels) + " labels");
    }
    return Ok(s.Query("UPDATE gw_devices SET labels = ? WHERE id = ?",
                      {LabelsText(labels), std::string(id)}));
  }));
  return labels;
}

// ---- device states, directives, rollouts ----

namespace {

json JsonOr(const std::string& text, json fallback) {
  json j = json::parse(text, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

DeviceStateRecord StateFrom(const SqlRows& rows, std::size_t i) {
  DeviceStateRecord r;
  r.device = rows.Text(i, 0);
  r.state = rows.IsNull(i, 1) ? json(nullptr) : JsonOr(rows.Text(i, 1), nullptr);
  r.seq = static_cast<std::uint64_t>(rows.Int(i, 2));
  r.online = rows.Int(i, 3) != 0;
  if (auto seen = rows.MaybeInt(i, 4)) {
    r.last_seen = FromUnix(*seen);
  }
  return r;
}

constexpr const char* kStateColumns = "device, state, seq, online, last_seen";

}  // namespace

Result<DeviceStateRecord> GatewayStateStore::DeviceState(std::string_view id) {
  auto found = store::SqlQueryOne<DeviceStateRecord>(
      *db_, std::string("SELECT ") + kStateColumns + " FROM gw_device_states WHERE device = ?",
      {std::string(id)}, StateFrom, "no state");
  if (!found && found.error().code() == ErrorCode::kNotFound) {
    DeviceStateRecord none;
    none.device = std::string(id);
    return none;
  }
  return found;
}

Result<std::vector<DeviceStateRecord>> GatewayStateStore::DeviceStates() {
  return store::SqlQueryAll<DeviceStateRecord>(
      *db_, std::string("SELECT ") + kStateColumns + " FROM gw_device_states ORDER BY device", {},
      StateFrom);
}

Result<bool> GatewayStateStore::PutDeviceState(std::string_view id, std::uint64_t seq,
                                               const json& state, TimePoint now) {
  if (seq > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return Fail(ErrorCode::kInvalidArgument, "seq " + std::to_string(seq) + " is out of range");
  }
  bool taken = false;
  AIRLOCK_RETURN_IF_ERROR(db_->Transact([&](SqlSession& s) -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(SqlRows rows, s.Query("SELECT seq FROM gw_device_states WHERE "
                                                   "device = ?",
                                                   {std::string(id)}));
    if (!rows.empty() && static_cast<std::uint64_t>(rows.Int(0, 0)) >= seq) {
      return {};
    }
    taken = true;
    return Ok(s.Query(
        "INSERT INTO gw_device_states (device, state, seq, online, last_seen) VALUES (?, ?, ?, "
        "0, ?) ON CONFLICT (device) DO UPDATE SET state = excluded.state, seq = excluded.seq, "
        "last_seen = excluded.last_seen",
        {std::string(id), state.dump(), static_cast<std::int64_t>(seq), Unix(now)}));
  }));
  return taken;
}

Status GatewayStateStore::SetDeviceOnline(std::string_view id, bool online, TimePoint now) {
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_device_states (device, state, seq, online, last_seen) VALUES (?, NULL, 0, "
        "?, ?) ON CONFLICT (device) DO UPDATE SET online = excluded.online, "
        "last_seen = excluded.last_seen",
        {std::string(id), std::int64_t{online ? 1 : 0}, Unix(now)}));
  });
}

Result<DeviceDirectiveRecord> GatewayStateStore::DeviceDirective(std::string_view id) {
  auto found = store::SqlQueryOne<DeviceDirectiveRecord>(
      *db_, "SELECT device, version, desired, message FROM gw_device_directives WHERE device = ?",
      {std::string(id)},
      [](const SqlRows& rows, std::size_t i) {
        DeviceDirectiveRecord r;
        r.device = rows.Text(i, 0);
        r.version = static_cast<std::uint64_t>(rows.Int(i, 1));
        r.desired = JsonOr(rows.Text(i, 2), json::object());
        r.message = rows.Text(i, 3);
        return r;
      },
      "never directed");
  if (!found && found.error().code() == ErrorCode::kNotFound) {
    DeviceDirectiveRecord none;
    none.device = std::string(id);
    return none;
  }
  return found;
}

Status GatewayStateStore::PutDeviceDirective(const DeviceDirectiveRecord& r) {
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_device_directives (device, version, desired, message) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (device) DO UPDATE SET version = excluded.version, desired = "
        "excluded.desired, message = excluded.message",
        {r.device, static_cast<std::int64_t>(r.version), r.desired.dump(), r.message}));
  });
}

Status GatewayStateStore::PutRollout(std::string_view deployment, std::string_view model,
                                     const json& record, TimePoint updated_at) {
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_rollouts (deployment, model, started, record, updated_at) VALUES (?, ?, "
        "(SELECT COALESCE(MAX(started), 0) + 1 FROM gw_rollouts), ?, ?) ON CONFLICT (deployment) "
        "DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
        {std::string(deployment), std::string(model), record.dump(), Unix(updated_at)}));
  });
}

Result<std::vector<StoredRollout>> GatewayStateStore::Rollouts() {
  AIRLOCK_ASSIGN_OR_RETURN(
      auto rows, store::SqlQueryAll<StoredRollout>(
                     *db_,
                     "SELECT deployment, model, started, record FROM gw_rollouts ORDER BY "
                     "started",
                     {}, [](const SqlRows& r, std::size_t i) {
                       return StoredRollout{.deployment = r.Text(i, 0),
                                            .model = r.Text(i, 1),
                                            .started = static_cast<std::uint64_t>(r.Int(i, 2)),
                                            .record = JsonOr(r.Text(i, 3), nullptr)};
                     }));
  for (const StoredRollout& r : rows) {
    if (r.record.is_null()) {
      return Fail(ErrorCode::kCorrupt, "the rollout record of " + r.deployment + " is not JSON");
    }
  }
  return rows;
}

Result<std::optional<HubCommandRecord>> GatewayStateStore::HubCommand(std::string_view deployment) {
  auto found = store::SqlQueryOne<HubCommandRecord>(
      *db_,
      "SELECT deployment, command, reason, message_id, sent_at, received_at FROM "
      "gw_hub_commands WHERE deployment = ?",
      {std::string(deployment)},
      [](const SqlRows& rows, std::size_t i) {
        return HubCommandRecord{.deployment = rows.Text(i, 0),
                                .command = rows.Text(i, 1),
                                .reason = rows.Text(i, 2),
                                .message_id = rows.Text(i, 3),
                                .sent_at = FromUnix(rows.Int(i, 4)),
                                .received_at = FromUnix(rows.Int(i, 5))};
      },
      "no command from the hub");
  if (!found) {
    if (found.error().code() == ErrorCode::kNotFound) {
      return std::optional<HubCommandRecord>();
    }
    return Fail(std::move(found.error()));
  }
  return std::optional<HubCommandRecord>(std::move(*found));
}

Status GatewayStateStore::PutHubCommand(const HubCommandRecord& r) {
  return db_->Transact([&](SqlSession& s) -> Status {
    return Ok(s.Query(
        "INSERT INTO gw_hub_commands (deployment, command, reason, message_id, sent_at, "
        "received_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (deployment) DO UPDATE SET command = "
        "excluded.command, reason = excluded.reason, message_id = excluded.message_id, sent_at = "
        "excluded.sent_at, received_at = excluded.received_at",
        {r.deployment, r.command, r.reason, r.message_id, Unix(r.sent_at), Unix(r.received_at)}));
  });
}

}  // namespace airlock::gateway
