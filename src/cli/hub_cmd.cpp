// airlock models, versions, promote, deploy, deployments, status, gateways: a release manager's
// view of airlock-hub through its registry REST API (net/hub_client.hpp).

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/common.hpp"
#include "cli/hub_common.hpp"
#include "cli/hub_views.hpp"
#include "cli/promotion.hpp"
#include "core/text.hpp"
#include "net/hub_client.hpp"
#include "trust/canonical_json.hpp"

namespace airlock::cli {

using nlohmann::json;

namespace {

constexpr char kDefaultHub[] = "http://127.0.0.1:7400";

std::string DefaultHubUrl() {
  const char* env = std::getenv("AIRLOCK_HUB");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(kDefaultHub);
}

}  // namespace

void AddHubFlags(CLI::App* cmd, HubFlags& f) {
  f.hub = DefaultHubUrl();
  cmd->add_option("--hub", f.hub,
                  "the hub's URL (default: $AIRLOCK_HUB, else " + std::string(kDefaultHub) +
                      "); the token is $AIRLOCK_REGISTRY_TOKEN, else the one `airlock login "
                      "HOST:PORT` saved")
      ->check([](const std::string& url) -> std::string {
        auto parsed = net::ParseHubUrl(url);
        return parsed ? std::string() : parsed.error().message();
      });
  const char* ca = std::getenv("AIRLOCK_CA_FILE");
  f.ca_file = ca != nullptr ? ca : "";
  cmd->add_option("--ca-file", f.ca_file,
                  "PEM file of the CA that signed the hub's certificate (default: "
                  "$AIRLOCK_CA_FILE)");
  cmd->add_flag("--json", f.json, "print the hub's JSON answer");
}

Result<std::unique_ptr<net::HubClient>> ConnectHub(const HubFlags& f) {
  AIRLOCK_ASSIGN_OR_RETURN(net::HubAddress address, net::ParseHubUrl(f.hub));
  AIRLOCK_ASSIGN_OR_RETURN(std::string token, RegistryToken(address.registry));
  return net::HubClient::Create({.url = f.hub, .token = token, .ca_file = f.ca_file});
}

int RunCommand(const std::function<Status()>& body) {
  auto s = body();
  if (s) {
    return kExitOk;
  }
  return ReportError(s.error(), ExitCodeFor(s.error()));
}

namespace {

void PrintJson(const json& j) { std::printf("%s\n", j.dump(2).c_str()); }

// A command that asks the hub one thing: fetch(hub) is the answer, printed as JSON with --json,
// else as view(answer, hub) (a table or a sentence).
int ShowAnswer(const HubFlags& flags, const std::function<Result<json>(net::HubClient&)>& fetch,
               const std::function<std::string(const json&, net::HubClient&)>& view) {
  return RunCommand([&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(flags));
    AIRLOCK_ASSIGN_OR_RETURN(json answer, fetch(*hub));
    if (flags.json) {
      PrintJson(answer);
    } else {
      std::fputs(view(answer, *hub).c_str(), stdout);
    }
    return {};
  });
}

Error Usage(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

int UsageError(const Error& e) { return ReportError(e, kExitUsage); }

// "1", "10%", "100%": a wave of a count of devices or a share of them.
bool ValidWave(const std::string& w) {
  std::string digits = w.ends_with('%') ? w.substr(0, w.size() - 1) : w;
  if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      })) {
    return false;
  }
  long n = std::stol(digits);
  return n > 0 && (!w.ends_with('%') || n <= 100);
}

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    auto comma = text.find(',', at);
    std::string part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    part.erase(0, part.find_first_not_of(' '));
    part.erase(part.find_last_not_of(' ') + 1);
    out.push_back(part);
    if (comma == std::string::npos) {
      break;
    }
    at = comma + 1;
  }
  return out;
}

}  // namespace

void AddModels(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* models = app.add_subcommand("models", "The models on the hub");
  models->require_subcommand(1);
  auto* ls = models->add_subcommand(
      "ls", "List the models on the hub: versions, the latest, channels, description");
  struct Args {
    std::string search;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  ls->add_option("--search", a->search, "only models whose name or description contains TEXT");
  AddHubFlags(ls, a->hub);
  ls->callback([&action, a] {
    action = [a] {
      return ShowAnswer(
          a->hub, [&](net::HubClient& hub) { return hub.ListModels(a->search); },
          [&](const json& answer, net::HubClient& hub) {
            return ModelsView(answer, a->search, hub.registry());
          });
    };
  });
}

void AddVersions(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand(
      "versions", "List a model's versions on the hub: who pushed them, releases, channels");
  struct Args {
    std::string model;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "the model's name, e.g. vibration-anomaly")->required();
  AddHubFlags(cmd, a->hub);
  cmd->callback([&action, a] {
    action = [a] {
      return ShowAnswer(
          a->hub, [&](net::HubClient& hub) { return hub.ListVersions(a->model); },
          [&](const json& answer, net::HubClient& hub) {
            return VersionsView(answer, a->model, hub.registry());
          });
    };
  });
}

void AddPromote(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "promote",
      "Point a channel (production, staging) of a model at a released version, or approve "
      "another release manager's proposal for it; promoting an older version is the "
      "fleet-wide rollback");
  struct Args {
    std::string model;
    std::string version;
    std::string channel;
    std::vector<std::string> keys;
    std::string expires = "30d";
    std::size_t keep = 3;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "the model's name")->required();
  cmd->add_option("version", a->version, "the version to promote (it needs a release on the hub)")
      ->required();
  cmd->add_option("--channel", a->channel, "the channel, e.g. production")->required();
  cmd->add_option("-k,--key", a->keys,
                  "release-manager private key to sign the channel document with; repeatable")
      ->required();
  cmd->add_option("--expires", a->expires, "how long the new channel document is valid")
      ->capture_default_str();
  cmd->add_option("--keep", a->keep,
                  "releases the document lists: the promoted one and the rollback targets")
      ->capture_default_str();
  AddHubFlags(cmd, a->hub);
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      if (!trust::ValidChannelName(a->channel)) {
        return UsageError(Usage("\"" + a->channel +
                                "\" is not a channel name: 1-63 of a-z, 0-9 and '-', e.g. "
                                "production"));
      }
      auto validity = ParseDuration(a->expires);
      if (!validity) {
        return UsageError(std::move(validity.error()).WithContext("--expires"));
      }
      if (a->keep < 1) {
        return UsageError(Usage("--keep must be at least 1"));
      }
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto keys, LoadPrivateKeys(a->keys));
        AIRLOCK_ASSIGN_OR_RETURN(TimePoint now, ctx.Now());
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        std::string what = "promoting " + a->model + " " + a->version + " to " + a->channel;
        AIRLOCK_ASSIGN_OR_RETURN(auto releases, WithContext(hub->ListReleases(a->model), what));
        AIRLOCK_ASSIGN_OR_RETURN(net::HubChannelState state,
                                 WithContext(hub->GetChannel(a->model, a->channel), what));
        std::vector<trust::ChannelEntry> entries;
        for (const auto& r : releases) {
          entries.push_back(
              {.version = r.version, .release_counter = r.release_counter, .release = r.id});
        }
        ChannelOnHub on_hub;
        if (state.current) {
          on_hub.current = state.current->channel;
        }
        if (state.pending) {
          on_hub.pending = state.pending->document;
        }
        PromotionRequest request{.model = a->model,
                                 .channel = a->channel,
                                 .version = a->version,
                                 .now = now,
                                 .expires = now + *validity,
                                 .keep = a->keep};
        AIRLOCK_ASSIGN_OR_RETURN(PromotionPlan plan,
                                 WithContext(PlanPromotion(request, entries, on_hub), what));
        if (plan.kind == PromotionPlan::Kind::kCosign) {
          // Say what the signature approves: the proposer chose the rollback targets and expiry.
          std::vector<std::string> rollbacks;
          for (std::size_t i = 1; i < plan.channel.releases.size(); ++i) {
            rollbacks.push_back(plan.channel.releases[i].version);
          }
          ctx.Say("approving the pending proposal by " +
                  (state.pending->by.empty() ? std::string("-") : state.pending->by) +
                  ": channel version " + std::to_string(plan.channel.version) + ", " +
                  plan.channel.releases.front().version + ", rollback targets " +
                  (rollbacks.empty() ? std::string("none") : Join(rollbacks)) + ", expires " +
                  FormatRfc3339(plan.channel.expires));
          for (const auto& k : keys) {
            const auto& sigs = plan.document.signatures();
            if (std::any_of(sigs.begin(), sigs.end(),
                            [&](const trust::Signature& s) { return s.keyid == k.id(); })) {
              ctx.Say("key " + k.id().substr(0, 12) +
                      " already signed it; its signature is made again");
            }
          }
        } else if (plan.replaced_pending) {
          ctx.Say("this replaces the pending proposal for " + *plan.replaced_pending);
        }
        for (const auto& k : keys) {
          AIRLOCK_RETURN_IF_ERROR(plan.document.Sign(k));
        }
        AIRLOCK_ASSIGN_OR_RETURN(
            net::ChannelPutOutcome outcome,
            WithContext(hub->PutChannel(a->model, a->channel, plan.document), what));
        if (a->hub.json) {
          PrintJson(outcome.raw);
        } else if (outcome.current) {
          std::printf("%s\n", DescribeCurrent(plan.channel, plan.previous).c_str());
        } else {
          std::printf("%s\n", DescribePending(plan.channel, outcome.signatures, outcome.threshold,
                                              state.signing_role)
                                  .c_str());
        }
        return {};
      });
    };
  });
}

void AddDeploy(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand(
      "deploy", "Roll out what a channel of a model approves to gateways, in waves");
  struct Args {
    std::string model;
    std::string channel;
    std::vector<std::string> gateways;
    std::vector<std::string> selectors;
    std::string waves;
    std::optional<int> max_in_flight;
    std::string health_window;
    std::string failure_threshold;
    std::string shadow;
    std::optional<std::uint64_t> shadow_compared;
    bool dry_run = false;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "the model's name")->required();
  cmd->add_flag("--dry-run", a->dry_run,
                "create nothing: show the release it resolves and, per gateway, the devices its "
                "last inventory reports that the selector selects, by platform, and the waves");
  cmd->add_option("--channel", a->channel, "the channel whose current release to deploy")
      ->required();
  cmd->add_option("--gateway", a->gateways, "a registered gateway's name; repeatable");
  cmd->add_option("--selector", a->selectors,
                  "key=value: the devices (by label) to deploy to; repeatable");
  cmd->add_option("--waves", a->waves, "wave sizes, counts or shares, e.g. 1,10%,100%");
  cmd->add_option("--max-in-flight", a->max_in_flight, "devices updating at once");
  cmd->add_option("--health-window", a->health_window,
                  "how long a wave must stay healthy before the next, e.g. 5m");
  cmd->add_option("--failure-threshold", a->failure_threshold,
                  "share of failed devices that halts the rollout, e.g. 10%");
  cmd->add_option("--shadow", a->shadow,
                  "run the release in shadow on each device first; it goes active once this "
                  "share of its answers agreed with the active model's, e.g. 99%");
  cmd->add_option("--shadow-compared", a->shadow_compared,
                  "with --shadow: how many answers to compare first (default 1)");
  AddHubFlags(cmd, a->hub);
  cmd->callback([&action, a] {
    action = [a]() -> int {
      if (!trust::ValidChannelName(a->channel)) {
        return UsageError(Usage("\"" + a->channel + "\" is not a channel name"));
      }
      if (a->gateways.empty()) {
        return UsageError(
            Usage("name the gateways to deploy to with --gateway NAME (list them "
                  "with airlock gateways ls)"));
      }
      json request = {{"model", a->model}, {"channel", a->channel}, {"gateways", a->gateways}};
      json selector = json::object();
      for (const auto& s : a->selectors) {
        auto eq = s.find('=');
        if (eq == std::string::npos || eq == 0) {
          return UsageError(Usage("--selector " + s + ": want key=value, e.g. line=3"));
        }
        selector[s.substr(0, eq)] = s.substr(eq + 1);
      }
      if (!selector.empty()) {
        request["selector"] = selector;
      }
      json strategy = json::object();
      if (!a->waves.empty()) {
        auto waves = SplitCommas(a->waves);
        for (const auto& w : waves) {
          if (!ValidWave(w)) {
            return UsageError(Usage("--waves " + a->waves + ": \"" + w +
                                    "\" is neither a device count nor a share like 10%"));
          }
        }
        strategy["waves"] = waves;
      }
      if (a->max_in_flight) {
        if (*a->max_in_flight < 1) {
          return UsageError(Usage("--max-in-flight must be at least 1"));
        }
        strategy["max_in_flight"] = *a->max_in_flight;
      }
      if (!a->health_window.empty()) {
        if (auto d = ParseDuration(a->health_window); !d) {
          return UsageError(std::move(d.error()).WithContext("--health-window"));
        }
        strategy["health_window"] = a->health_window;
      }
      if (!a->failure_threshold.empty()) {
        if (!ValidWave(a->failure_threshold)) {
          return UsageError(Usage("--failure-threshold " + a->failure_threshold +
                                  ": want a share like 10% or a device count"));
        }
        strategy["failure_threshold"] = a->failure_threshold;
      }
      if (!a->shadow.empty() || a->shadow_compared) {
        double share = 0;
        std::size_t used = 0;
        bool percent = !a->shadow.empty() && a->shadow.back() == '%';
        try {
          share = std::stod(a->shadow.substr(0, a->shadow.size() - (percent ? 1 : 0)), &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (!percent || used + 1 != a->shadow.size() || share < 0 || share > 100) {
          return UsageError(Usage("--shadow " + a->shadow +
                                  ": want the share of answers that must agree, e.g. 99%"));
        }
        if (a->shadow_compared && *a->shadow_compared < 1) {
          return UsageError(Usage("--shadow-compared must be at least 1"));
        }
        strategy["shadow"] = {{"min_agreement", share / 100},
                              {"min_compared", a->shadow_compared.value_or(1)}};
      }
      if (!strategy.empty()) {
        request["strategy"] = strategy;
      }
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        if (a->dry_run) {
          AIRLOCK_ASSIGN_OR_RETURN(json preview, hub->PreviewDeployment(request));
          if (a->hub.json) {
            PrintJson(preview);
          } else {
            std::printf("%s", DeploymentPreviewView(preview).c_str());
          }
          return {};
        }
        AIRLOCK_ASSIGN_OR_RETURN(json deployment, hub->CreateDeployment(request));
        if (a->hub.json) {
          PrintJson(deployment);
        } else {
          std::printf("%s\n", trust::StringOr(deployment, "id").c_str());
          std::printf("%s; follow it with airlock status %s\n",
                      DeploymentSummary(deployment).c_str(),
                      trust::StringOr(deployment, "id").c_str());
        }
        return {};
      });
    };
  });
}

void AddDeployments(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand("deployments", "List, show, pause, resume and cancel deployments");
  cmd->fallthrough();  // `deployments ls --json` takes the flags declared here
  struct Args {
    std::string model;
    std::string state;
    std::string id;
    std::string reason;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "only this model's deployments");
  cmd->add_option("--state", a->state, "only deployments in this state (pending, cancelled, …)");
  AddHubFlags(cmd, a->hub);
  auto* ls = cmd->add_subcommand("ls", "List deployments (the default)");
  auto* show = cmd->add_subcommand("show", "A deployment's spec and its whole history");
  show->add_option("id", a->id, "the deployment's id")->required();
  auto* cancel = cmd->add_subcommand("cancel", "Stop a deployment that has not finished");
  cancel->add_option("id", a->id, "the deployment's id")->required();
  cancel->add_option("--reason", a->reason, "why, for the history");
  auto* pause = cmd->add_subcommand(
      "pause", "Pause a deployment's rollouts: its gateways start no new wave until it is resumed");
  pause->add_option("id", a->id, "the deployment's id")->required();
  pause->add_option("--reason", a->reason, "why, for the history");
  auto* resume = cmd->add_subcommand("resume", "Resume a paused deployment's rollouts");
  resume->add_option("id", a->id, "the deployment's id")->required();
  resume->add_option("--reason", a->reason, "why, for the history");

  auto list = [a]() -> int {
    return ShowAnswer(
        a->hub, [&](net::HubClient& hub) { return hub.ListDeployments(a->model, a->state); },
        [&](const json& answer, net::HubClient&) {
          return DeploymentsView(answer, !a->model.empty() || !a->state.empty());
        });
  };
  ls->callback([&action, list] { action = list; });
  show->callback([&action, a] {
    action = [a] {
      return ShowAnswer(
          a->hub, [&](net::HubClient& hub) { return hub.GetDeployment(a->id); },
          [&](const json& d, net::HubClient&) { return DeploymentView(d); });
    };
  });
  cancel->callback([&action, a] {
    action = [a] {
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        AIRLOCK_ASSIGN_OR_RETURN(json d, hub->CancelDeployment(a->id, a->reason));
        if (a->hub.json) {
          PrintJson(d);
        } else {
          std::printf("cancelled deployment %s (%s %s), state %s\n", a->id.c_str(),
                      trust::StringOr(d, "model").c_str(), trust::StringOr(d, "channel").c_str(),
                      trust::StringOr(d, "state", "-").c_str());
        }
        return {};
      });
    };
  });
  for (auto [sub, paused] : {std::pair{pause, true}, std::pair{resume, false}}) {
    sub->callback([&action, a, paused = paused] {
      action = [a, paused] {
        return RunCommand([&]() -> Status {
          AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
          AIRLOCK_ASSIGN_OR_RETURN(json d, hub->PauseDeployment(a->id, paused, a->reason));
          if (a->hub.json) {
            PrintJson(d);
          } else {
            std::printf("%s deployment %s (%s %s), state %s; its gateways are told\n",
                        paused ? "paused" : "resumed", a->id.c_str(),
                        trust::StringOr(d, "model").c_str(), trust::StringOr(d, "channel").c_str(),
                        trust::StringOr(d, "state", "-").c_str());
          }
          return {};
        });
      };
    });
  }
    // Subcommands' callbacks run first: with none of them, list.
  cmd->callback([&action, list] {
    if (!action) {
      action = list;
    }
  });
}

void AddStatus(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd =
      app.add_subcommand("status", "A deployment's state, its gateways and its latest events");
  struct Args {
    std::string id;
    std::size_t last = 5;
    bool watch = false;
    double interval = 2;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("deployment", a->id, "the deployment's id")->required();
  cmd->add_option("-n,--last", a->last, "history entries to show")->capture_default_str();
  cmd->add_flag("-w,--watch", a->watch,
                "refresh until the deployment is complete, failed or cancelled");
  cmd->add_option("--interval", a->interval, "seconds between refreshes with --watch")
      ->check(CLI::Range(0.2, 3600.0))
      ->capture_default_str();
  AddHubFlags(cmd, a->hub);
  cmd->callback([&action, a] {
    action = [a] {
      if (!a->watch) {
        return ShowAnswer(
            a->hub, [&](net::HubClient& hub) { return hub.GetDeployment(a->id); },
            [&](const json& d, net::HubClient&) { return StatusView(d, a->last); });
      }
      // --watch: redraw (on a terminal) or append (elsewhere) until the deployment is final.
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        bool terminal = ::isatty(STDOUT_FILENO) != 0;
        while (true) {
          AIRLOCK_ASSIGN_OR_RETURN(json d, hub->GetDeployment(a->id));
          if (a->hub.json) {
            std::printf("%s\n", d.dump().c_str());
          } else {
            std::string view = StatusView(d, a->last);
            std::fputs(terminal ? ("\033[H\033[2J" + view).c_str() : (view + "\n").c_str(),
                       stdout);
          }
          std::fflush(stdout);
          if (DeploymentIsFinal(d)) {
            return {};
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(
              static_cast<std::int64_t>(a->interval * 1000)));
        }
      });
    };
  });
}

void AddGateways(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand("gateways", "The factory gateways registered with the hub");
  cmd->require_subcommand(1);
  cmd->fallthrough();
  struct Args {
    std::string expires_in = "24h";
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  AddHubFlags(cmd, a->hub);
  auto* ls = cmd->add_subcommand("ls", "List the registered gateways");
  auto* token =
      cmd->add_subcommand("token", "Make a one-time token a new gateway registers with (admin)");
  token->add_option("--expires-in", a->expires_in, "how long the token can be used")
      ->capture_default_str();
  ls->callback([&action, a] {
    action = [a] {
      return ShowAnswer(
          a->hub, [&](net::HubClient& hub) { return hub.ListGateways(); },
          [&](const json& answer, net::HubClient& hub) {
            return GatewaysView(answer, hub.base_url());
          });
    };
  });
  token->callback([&action, a] {
    action = [a]() -> int {
      if (auto d = ParseDuration(a->expires_in); !d) {
        return UsageError(std::move(d.error()).WithContext("--expires-in"));
      }
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        AIRLOCK_ASSIGN_OR_RETURN(json answer, hub->CreateGatewayToken(a->expires_in));
        if (a->hub.json) {
          PrintJson(answer);
          return {};
        }
        std::string value = trust::StringOr(answer, "token");
        if (value.empty()) {
          return Fail(ErrorCode::kCorrupt, "the hub's answer has no token");
        }
        json body = {{"token", value}, {"name", "GATEWAY-NAME"}, {"labels", {{"site", "SITE"}}}};
        std::printf(
            "registration token (one gateway, once; valid until %s):\n  %s\n"
            "the gateway's operator registers it with (replace GATEWAY-NAME and the labels):\n"
            "  curl -sf -X POST -H 'Content-Type: application/json' -d '%s' %s/api/v1/gateways/"
            "register\n"
            "the answer holds the gateway's credential (role gateway), shown once\n",
            trust::StringOr(answer, "expires_at", "-").c_str(), value.c_str(), body.dump().c_str(),
            hub->base_url().c_str());
        return {};
      });
    };
  });
}

}  // namespace airlock::cli

namespace airlock::cli {

void AddMonitor(CLI::App& app, Context& /*ctx*/, Action& action) {
  auto* cmd = app.add_subcommand(
      "monitor",
      "How a model does on the shop floor: throughput, errors, latency and drift per version");
  struct Args {
    std::string model;
    std::string site;
    std::string device;
    std::string since = "1h";
    bool watch = false;
    double interval = 10;
    HubFlags hub;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("model", a->model, "the model")->required();
  cmd->add_option("--site", a->site, "only this site (a gateway's name)");
  cmd->add_option("--device", a->device, "only this device");
  cmd->add_option("--since", a->since,
                  "how far back: a duration (30m, 6h, 7d) or an RFC 3339 time")
      ->capture_default_str();
  cmd->add_flag("-w,--watch", a->watch, "refresh until interrupted");
  cmd->add_option("--interval", a->interval, "seconds between refreshes with --watch")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  AddHubFlags(cmd, a->hub);
  cmd->callback([&action, a] {
    action = [a]() -> int {
      if (auto since = ParseSince(a->since, std::chrono::system_clock::now()); !since) {
        return UsageError(Usage("--since: " + since.error().message()));
      }
      auto fetch = [&](net::HubClient& hub) {
        return hub.GetMonitor(a->model, a->since, a->site, a->device);
      };
      if (!a->watch) {
        return ShowAnswer(a->hub, fetch,
                          [](const json& answer, net::HubClient&) { return MonitorView(answer); });
      }
      return RunCommand([&]() -> Status {
        AIRLOCK_ASSIGN_OR_RETURN(auto hub, ConnectHub(a->hub));
        bool terminal = ::isatty(STDOUT_FILENO) != 0;
        while (true) {
          AIRLOCK_ASSIGN_OR_RETURN(json answer, fetch(*hub));
          std::string view = a->hub.json ? answer.dump() + "\n" : MonitorView(answer);
          std::fputs(terminal && !a->hub.json ? ("\033[H\033[2J" + view).c_str()
                                              : (view + "\n").c_str(),
                     stdout);
          std::fflush(stdout);
          std::this_thread::sleep_for(
              std::chrono::milliseconds(static_cast<std::int64_t>(a->interval * 1000)));
        }
      });
    };
  });
}

}  // namespace airlock::cli
