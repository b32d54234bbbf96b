#include "cli/hub_views.hpp"

#include <cstdio>
#include <ctime>
#include <iterator>
#include <vector>

#include "cli/table.hpp"
#include "core/text.hpp"

namespace airlock::cli {

using nlohmann::json;

namespace {

constexpr std::size_t kDescriptionWidth = 48;

// The field as a cell: "-" when it is absent or null.
std::string Field(const json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key)) {
    return "-";
  }
  return Cell(obj[key]);
}

// The value at key, null when obj is not an object or has no such key.
const json& At(const json& obj, const char* key) {
  static const json kNull;
  if (obj.is_object() && obj.contains(key)) {
    return obj[key];
  }
  return kNull;
}

const json& ArrayAt(const json& obj, const char* key) {
  static const json kEmpty = json::array();
  if (obj.is_object() && obj.contains(key) && obj[key].is_array()) {
    return obj[key];
  }
  return kEmpty;
}

// {"production": "1.0.0", "staging": "1.1.0"} → "production=1.0.0, staging=1.1.0"; a list of
// names → "production, staging".
std::string ChannelsCell(const json& channels) {
  std::vector<std::string> parts;
  if (channels.is_object()) {
    for (const auto& [name, version] : channels.items()) {
      parts.push_back(name + "=" + Cell(version));
    }
  } else if (channels.is_array()) {
    for (const auto& name : channels) {
      parts.push_back(Cell(name));
    }
  }
  return parts.empty() ? "-" : Join(parts);
}

// {"line": "3"} → "line=3".
std::string LabelsCell(const json& labels) {
  std::vector<std::string> parts;
  if (labels.is_object()) {
    for (const auto& [k, v] : labels.items()) {
      parts.push_back(k + "=" + Cell(v));
    }
  }
  return parts.empty() ? "-" : Join(parts, ",");
}

std::string ListCell(const json& list, std::string_view sep = ",") {
  std::vector<std::string> parts;
  if (list.is_array()) {
    for (const auto& v : list) {
      parts.push_back(Cell(v));
    }
  }
  return parts.empty() ? "-" : Join(parts, sep);
}

std::string ReleaseCell(const json& version) {
  if (!version.is_object() || !version.contains("release") || !version["release"].is_object()) {
    return "unsigned";
  }
  const json& r = version["release"];
  return "#" + Field(r, "release_counter") + ", " + Field(r, "signatures") + " sig";
}

std::string LineageCell(const json& version) {
  if (!version.is_object() || !version.contains("lineage") || !version["lineage"].is_object()) {
    return "-";
  }
  const json& l = version["lineage"];
  std::vector<std::string> parts;
  if (l.contains("training_run")) {
    parts.push_back(Cell(l["training_run"]));
  }
  if (l.contains("dataset_digest") && l["dataset_digest"].is_string()) {
    parts.push_back(ShortDigest(l["dataset_digest"].get<std::string>()));
  }
  return parts.empty() ? "-" : Join(parts, " / ");
}

std::string ReleaseOfDeployment(const json& d) {
  if (!d.is_object() || !d.contains("release") || !d["release"].is_object()) {
    return "-";
  }
  return Field(d["release"], "version");
}

std::string HistoryTable(const json& history, std::size_t last) {
  std::vector<std::vector<std::string>> rows;
  std::size_t start = history.size() > last ? history.size() - last : 0;
  for (std::size_t i = start; i < history.size(); ++i) {
    const json& h = history[i];
    rows.push_back({Field(h, "at"), Field(h, "actor"), Field(h, "action"),
                    h.is_object() && h.contains("detail") && !h["detail"].is_null()
                        ? Shorten(Cell(h["detail"]), 100)
                        : ""});
  }
  return FormatTable({"TIME", "WHO", "ACTION", "DETAIL"}, rows);
}

std::string StrategyCell(const json& strategy) {
  if (!strategy.is_object() || strategy.empty()) {
    return "the hub's defaults";
  }
  std::vector<std::string> parts;
  if (strategy.contains("waves")) {
    parts.push_back("waves " + ListCell(strategy["waves"]));
  }
  for (const auto& [k, v] : strategy.items()) {
    if (k != "waves") {
      std::string name = k;
      std::replace(name.begin(), name.end(), '_', ' ');
      parts.push_back(name + " " + Cell(v));
    }
  }
  return Join(parts);
}

// The spec lines of a deployment, "  label:  value", the values aligned.
// The deployment's state, with " (paused)" while it is paused from the hub.
std::string StateOf(const json& d) {
  std::string state = Field(d, "state");
  // A complete deployment is delivered; its rollouts may still be paused.
  if (d.is_object() && d.value("paused", false) && state != "cancelled" && state != "failed") {
    state += " (paused)";
  }
  return state;
}

std::string SpecLines(const json& d) {
  const json& release = At(d, "release");
  std::vector<std::pair<std::string, std::string>> lines = {
      {"model:", Field(d, "model")},
      {"channel:", Field(d, "channel") + " (version " + Field(d, "channel_version") + ")"},
      {"release:", ReleaseOfDeployment(d) + (release.is_object() && release.contains("id")
                                                 ? " (" + ShortDigest(Field(release, "id")) + ")"
                                                 : "")},
      {"gateways:", ListCell(ArrayAt(d, "gateways"), ", ")},
      {"selector:", LabelsCell(At(d, "selector"))},
      {"strategy:", StrategyCell(At(d, "strategy"))},
      {"state:", StateOf(d)},
      {"created:", Field(d, "created_at") + " by " + Field(d, "created_by")},
      {"updated:", Field(d, "updated_at")},
  };
  std::string out;
  for (const auto& [label, value] : lines) {
    out += "  " + label + std::string(10 - label.size(), ' ') + value + "\n";
  }
  return out;
}

}  // namespace

std::string ShortDigest(const std::string& digest) {
  auto colon = digest.find(':');
  std::size_t keep = colon == std::string::npos ? 12 : colon + 1 + 12;
  return digest.size() > keep ? digest.substr(0, keep) : digest;
}

std::string Cell(const json& value) {
  if (value.is_null()) {
    return "-";
  }
  if (value.is_string()) {
    return value.get<std::string>();
  }
  return value.dump();
}

std::string ModelsView(const json& answer, const std::string& search, const std::string& hub) {
  const json& models = ArrayAt(answer, "models");
  if (models.empty()) {
    if (!search.empty()) {
      return "no models on the hub match \"" + search +
             "\"; list them all with airlock models ls\n";
    }
    return "no models on the hub yet; push one with airlock push PKG " + hub +
           "/models/NAME (pack it with airlock pack, sign it with airlock sign)\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& m : models) {
    rows.push_back({Field(m, "name"), Field(m, "versions"), Field(m, "latest"),
                    ChannelsCell(At(m, "channels")),
                    m.contains("description") && m["description"].is_string()
                        ? Shorten(m["description"].get<std::string>(), kDescriptionWidth)
                        : ""});
  }
  return FormatTable({"NAME", "VERSIONS", "LATEST", "CHANNELS", "DESCRIPTION"}, rows);
}

std::string VersionsView(const json& answer, const std::string& model, const std::string& hub) {
  const json& versions = ArrayAt(answer, "versions");
  if (versions.empty()) {
    return model + " has no versions on the hub; push one with airlock push PKG " + hub +
           "/models/" + model + "\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : versions) {
    rows.push_back({Field(v, "version"), Field(v, "pushed_at"), Field(v, "pushed_by"),
                    ListCell(At(v, "platforms")), ReleaseCell(v), ChannelsCell(At(v, "channels")),
                    LineageCell(v)});
  }
  return FormatTable({"VERSION", "PUSHED", "BY", "PLATFORMS", "RELEASE", "CHANNELS", "LINEAGE"},
                     rows);
}

std::string DeploymentsView(const json& answer, bool filtered) {
  const json& deployments = ArrayAt(answer, "deployments");
  if (deployments.empty()) {
    return filtered ? "no deployments match; list them all with airlock deployments ls\n"
                    : "no deployments yet; start one with airlock deploy MODEL --channel NAME "
                      "--gateway GATEWAY\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& d : deployments) {
    rows.push_back({Field(d, "id"), Field(d, "model"), Field(d, "channel"), ReleaseOfDeployment(d),
                    StateOf(d), std::to_string(ArrayAt(d, "gateways").size()),
                    Field(d, "created_at")});
  }
  return FormatTable({"ID", "MODEL", "CHANNEL", "RELEASE", "STATE", "GATEWAYS", "CREATED"}, rows);
}

std::string DeploymentView(const json& d) {
  std::string out = "deployment " + Field(d, "id") + "\n" + SpecLines(d);
  const json& history = ArrayAt(d, "history");
  out += "\nhistory:\n";
  out += history.empty() ? "  (none)\n" : HistoryTable(history, history.size());
  return out;
}

std::string ByteProgress(std::uint64_t done, std::uint64_t total) {
  auto human = [](std::uint64_t n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    std::size_t u = 0;
    while (v >= 1024 && u + 1 < std::size(units)) {
      v /= 1024;
      ++u;
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
    return std::string(buf);
  };
  if (total == 0) {
    return "-";
  }
  return human(done) + " / " + human(total) + " (" + std::to_string(done * 100 / total) + "%)";
}

std::string DeliveriesTable(const json& deliveries) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& x : deliveries) {
    if (!x.is_object()) {
      continue;
    }
    auto count = [&](const char* key) {
      return x.contains(key) && x[key].is_number_unsigned() ? x[key].get<std::uint64_t>()
                                                            : std::uint64_t{0};
    };
    std::string state = Field(x, "state");
    if (x.value("held", false)) {
      state += " (held for the site's operator)";
    } else if (x.value("wait", "") == "retry") {
      state += " (retrying)";
    }
    std::string error;
    if (x.contains("last_error") && x["last_error"].is_object()) {
      error = Field(x["last_error"], "code") + ": " + Field(x["last_error"], "message");
    }
    rows.push_back({Field(x, "gateway"), state,
                    ByteProgress(count("bytes_done"), count("bytes_total")),
                    std::to_string(count("attempt")), std::to_string(count("retries")),
                    Field(x, "updated_at"), error.empty() ? "-" : Shorten(error, 80)});
  }
  return FormatTable({"GATEWAY", "STATE", "PROGRESS", "ATTEMPT", "RETRIES", "UPDATED",
                      "LAST ERROR"},
                     rows);
}

bool DeploymentIsFinal(const json& d) {
  std::string state = d.is_object() ? d.value("state", "") : "";
  return state == "complete" || state == "failed" || state == "cancelled";
}

// The device rollouts the gateways report for a deployment (gw/{gw}/fleet), then each device.
std::string FleetView(const json& fleet) {
  if (fleet.empty()) {
    return "";
  }
  std::string out = "\ndevices:\n";
  std::vector<std::vector<std::string>> rows;
  std::vector<std::vector<std::string>> devices;
  for (const auto& r : fleet) {
    const json counts = At(r, "devices");
    std::vector<std::string> detail;
    if (counts.is_object()) {
      for (const auto& [status, n] : counts.items()) {
        if (status != "total" && status != "done" && n.is_number() && n.get<double>() > 0) {
          detail.push_back(status + " " + Cell(n));
        }
      }
    }
    if (r.contains("reason")) {
      detail.push_back("(" + Field(r, "reason") + ")");
    }
    rows.push_back({Field(r, "gateway"), Field(r, "state"),
                    Field(r, "wave") + "/" + Field(r, "waves"),
                    Field(counts, "done") + "/" + Field(counts, "total"),
                    Field(r, "failures") + "/" + Field(r, "failure_limit"),
                    Shorten(Join(detail, ", "), 80)});
    for (const auto& dev : ArrayAt(r, "device_status")) {
      devices.push_back({Field(r, "gateway"), Field(dev, "id"), Field(dev, "wave"),
                         Field(dev, "status") +
                             (dev.value("online", true) ? "" : " (offline)"),
                         Shorten(Field(dev, "reason"), 80)});
    }
  }
  out += FormatTable({"GATEWAY", "ROLLOUT", "WAVE", "DONE", "FAILED", "DETAIL"}, rows);
  if (!devices.empty()) {
    out += "\n" + FormatTable({"GATEWAY", "DEVICE", "WAVE", "STATUS", "REASON"}, devices);
  }
  return out;
}

std::string StatusView(const json& d, std::size_t last) {
  std::string out = "deployment " + Field(d, "id") + ": " + StateOf(d) + "\n";
  out += "  " + Field(d, "model") + " " + Field(d, "channel") + " (channel version " +
         Field(d, "channel_version") + ") → release " + ReleaseOfDeployment(d) + "\n";
  out += "  created " + Field(d, "created_at") + " by " + Field(d, "created_by") + ", updated " +
         Field(d, "updated_at") + "\n";
  const json& gateways = ArrayAt(d, "gateways");
  const json status = d.is_object() ? At(d, "gateways_status") : json();
  const json& deliveries = ArrayAt(d, "deliveries");
  out += "\ngateways:\n";
  if (!deliveries.empty()) {
    out += DeliveriesTable(deliveries);
  } else if (status.is_object() && !status.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& [name, s] : status.items()) {
      std::string state = s.is_object() ? Field(s, "state") : Cell(s);
      std::vector<std::string> detail;
      if (s.is_object()) {
        for (const auto& [k, v] : s.items()) {
          if (k != "state") {
            detail.push_back(k + "=" + Cell(v));
          }
        }
      }
      rows.push_back({name, state, Shorten(Join(detail, " "), 100)});
    }
    out += FormatTable({"GATEWAY", "STATE", "DETAIL"}, rows);
  } else if (status.is_array() && !status.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : status) {
      std::string name =
          s.is_object() && s.contains("gateway") ? Field(s, "gateway") : Field(s, "name");
      std::vector<std::string> detail;
      if (s.is_object()) {
        for (const auto& [k, v] : s.items()) {
          if (k != "state" && k != "gateway" && k != "name") {
            detail.push_back(k + "=" + Cell(v));
          }
        }
      }
      rows.push_back({name, Field(s, "state"), Shorten(Join(detail, " "), 100)});
    }
    out += FormatTable({"GATEWAY", "STATE", "DETAIL"}, rows);
  } else if (gateways.empty()) {
    out += "  (none named; selector " +
           (d.contains("selector") ? LabelsCell(d["selector"]) : std::string("-")) + ")\n";
  } else {
    for (const auto& g : gateways) {
      out += "  " + Cell(g) + "\n";
    }
    out += "  (the hub reports no per-gateway delivery state yet)\n";
  }
  out += FleetView(ArrayAt(d, "fleet"));
  const json& history = ArrayAt(d, "history");
  if (!history.empty()) {
    out += "\nlast " + std::to_string(std::min(last, history.size())) + " of " +
           std::to_string(history.size()) + " event(s):\n";
    out += HistoryTable(history, last);
  }
  return out;
}

std::string DeploymentSummary(const json& d) {
  std::size_t gateways = ArrayAt(d, "gateways").size();
  return "deployment " + Field(d, "id") + ": " + Field(d, "model") + " " + Field(d, "channel") +
         " (channel version " + Field(d, "channel_version") + ", release " +
         ReleaseOfDeployment(d) + ") to " + std::to_string(gateways) + " gateway(s)" +
         (d.contains("selector") && d["selector"].is_object() && !d["selector"].empty()
              ? " and those matching " + LabelsCell(d["selector"])
              : "") +
         ", state " + Field(d, "state");
}

std::string GatewaysView(const json& answer, const std::string& hub) {
  const json& gateways = ArrayAt(answer, "gateways");
  if (gateways.empty()) {
    return "no gateways registered with the hub yet; make a registration token with airlock "
           "gateways token --hub " +
           hub + " and give it to the gateway's operator\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& g : gateways) {
    rows.push_back({Field(g, "name"), Field(g, "id"), LabelsCell(At(g, "labels")),
                    Field(g, "registered_at"), Field(g, "last_seen"), Field(g, "devices")});
  }
  return FormatTable({"NAME", "ID", "LABELS", "REGISTERED", "LAST SEEN", "DEVICES"}, rows);
}

namespace {

std::string Number(const json& v, int decimals) {
  if (!v.is_number()) {
    return "-";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v.get<double>());
  return buf;
}

std::string UnixMsCell(const json& v) {
  if (!v.is_number_integer()) {
    return "-";
  }
  std::time_t t = static_cast<std::time_t>(v.get<std::int64_t>() / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string LevelCell(const json& level) {
  std::string l = level.is_string() ? level.get<std::string>() : "-";
  return l == "alert" ? "ALERT" : l;
}

}  // namespace

std::string MonitorView(const json& answer) {
  std::string model = Field(answer, "model");
  std::string where;
  for (const char* key : {"site", "device"}) {
    if (std::string v = Field(answer, key); v != "-" && !v.empty()) {
      where += std::string(", ") + key + " " + v;
    }
  }
  std::string out = model + " since " + UnixMsCell(At(answer, "since_ms")) + where + "\n";
  const json& versions = ArrayAt(answer, "versions");
  if (versions.empty()) {
    return out + "no telemetry yet: agents report each served version every telemetry.interval "
                 "(60s by default) through their gateway\n";
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& v : versions) {
    std::string worst = "ok";
    for (const auto& f : ArrayAt(v, "drift")) {
      std::string l = Field(f, "level");
      if (l == "alert" || (l == "watch" && worst == "ok")) {
        worst = l;
      }
    }
    const json& latency = At(v, "latency_ms");
    std::string errors = Field(v, "errors");
    if (At(v, "requests").is_number() && At(v, "requests").get<double>() > 0) {
      errors += " (" + Number(At(v, "error_rate").is_number()
                                  ? json(At(v, "error_rate").get<double>() * 100)
                                  : json(nullptr),
                              1) +
                "%)";
    }
    rows.push_back({Field(v, "version"), Field(v, "devices"), Field(v, "requests"), errors,
                    Number(At(v, "throughput_rps"), 2), Number(At(latency, "p50"), 2),
                    Number(At(latency, "p95"), 2), Number(At(latency, "p99"), 2),
                    ArrayAt(v, "drift").empty() ? "-" : LevelCell(json(worst))});
  }
  out += FormatTable({"VERSION", "DEVICES", "REQUESTS", "ERRORS", "REQ/S", "P50 MS", "P95 MS",
                      "P99 MS", "DRIFT"},
                     rows);
  for (const auto& v : versions) {
    const json& drift = ArrayAt(v, "drift");
    if (!drift.empty()) {
      std::vector<std::vector<std::string>> frows;
      for (const auto& f : drift) {
        // No device judged it lately (too few requests): no figure rather than a zero.
        bool judged = At(f, "devices").is_number() && At(f, "devices").get<double>() > 0;
        frows.push_back({Field(f, "feature"), Field(f, "devices"),
                         judged ? Number(At(f, "psi_mean"), 3) : "-",
                         judged ? Number(At(f, "psi_max"), 3) : "-",
                         judged ? LevelCell(At(f, "level")) : "-", Field(f, "worst_level")});
      }
      out += "\ndrift of " + Field(v, "version") + " (each device's latest interval):\n" +
             FormatTable({"FEATURE", "DEVICES", "PSI MEAN", "PSI MAX", "LEVEL", "WORST"}, frows);
    }
    const json& p = At(v, "predictions");
    if (p.is_object() && Field(p, "kind") == "class") {
      const json& labels = ArrayAt(p, "labels");
      const json& counts = ArrayAt(p, "counts");
      double total = 0;
      for (const auto& c : counts) {
        total += c.is_number() ? c.get<double>() : 0;
      }
      std::string line;
      for (std::size_t i = 0; i < labels.size() && i < counts.size(); ++i) {
        line += (line.empty() ? "" : ", ") + Cell(labels[i]) + " " + Cell(counts[i]);
        if (total > 0) {
          line += " (" + Number(json(counts[i].get<double>() * 100 / total), 1) + "%)";
        }
      }
      out += "\npredictions of " + Field(v, "version") + " (of " + Field(v, "observed") +
             " observed requests): " + line + "\n";
    }
  }
  const json& alerts = ArrayAt(answer, "alerts");
  if (!alerts.empty()) {
    std::vector<std::vector<std::string>> arows;
    for (const auto& a : alerts) {
      arows.push_back({UnixMsCell(At(a, "at_ms")), Field(a, "site"), Field(a, "device"),
                       Field(a, "version"), Field(a, "feature"), Number(At(a, "psi"), 3)});
    }
    out += "\ndrift alerts:\n" +
           FormatTable({"TIME", "SITE", "DEVICE", "VERSION", "FEATURE", "PSI"}, arows);
  }
  const json& dropped = ArrayAt(answer, "dropped");
  if (!dropped.empty()) {
    std::vector<std::vector<std::string>> drows;
    for (const auto& d : dropped) {
      const json& by = At(d, "dropped");
      drows.push_back({Field(d, "site"), Field(d, "source"), Field(by, "alert"),
                       Field(by, "metrics"), Field(by, "capture"), Field(d, "disk_full"),
                       Field(d, "updated")});
    }
    out += "\ntelemetry dropped on the way (outbox full or disk full):\n" +
           FormatTable({"SITE", "SOURCE", "ALERTS", "METRICS", "CAPTURES", "DISK FULL",
                        "REPORTED"},
                       drows);
  }
  return out;
}

std::string DeploymentPreviewView(const json& p) {
  auto count = [](const json& obj, const char* key) {
    return obj.is_object() && obj.contains(key) && obj[key].is_number_unsigned()
               ? std::to_string(obj[key].get<std::uint64_t>())
               : std::string("0");
  };
  auto mix = [](const json& platforms) {
    std::vector<std::string> parts;
    if (platforms.is_object()) {
      for (const auto& [platform, n] : platforms.items()) {
        parts.push_back(platform + " " + Cell(n));
      }
    }
    return parts.empty() ? std::string("-") : Join(parts, ", ");
  };
  auto waves = [](const json& list) {
    std::vector<std::string> parts;
    if (list.is_array()) {
      for (const json& n : list) {
        parts.push_back(Cell(n));
      }
    }
    return parts.empty() ? std::string("-") : Join(parts, " + ");
  };
  const json release = p.is_object() && p.contains("release") ? p["release"] : json::object();
  const json totals = p.is_object() && p.contains("totals") ? p["totals"] : json::object();
  std::string out = "dry run: nothing was created\n";
  out += "would deploy: " + Field(p, "model") + " " + Field(release, "version") + " (" +
         Field(p, "channel") + " v" + Cell(p.value("channel_version", json())) + ", release " +
         ShortDigest(Field(release, "id")) + ")\n";
  std::vector<std::string> platforms;
  for (const json& x : ArrayAt(release, "platforms")) {
    platforms.push_back(Cell(x));
  }
  out += "platforms:    " + (platforms.empty() ? std::string("-") : Join(platforms, ", ")) + "\n";
  out += "selector:     " + Cell(p.value("selector", json::object())) + "\n";
  out += "strategy:     " + Cell(p.value("strategy", json::object())) + "\n\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& g : ArrayAt(p, "gateways")) {
    rows.push_back({Field(g, "gateway"), count(g, "devices"), mix(g.value("platforms", json())),
                    count(g, "unsupported"), waves(g.value("waves", json())),
                    Field(g, "inventory_reported_at")});
  }
  rows.push_back({"total", count(totals, "devices"), mix(totals.value("platforms", json())),
                  count(totals, "unsupported"), waves(totals.value("waves", json())), ""});
  out += FormatTable({"GATEWAY", "DEVICES", "PLATFORMS", "NO PLATFORM", "WAVES", "INVENTORY OF"},
                     rows);
  return out;
}

}  // namespace airlock::cli
