// airlock push, airlock pull: packages to and from any OCI registry (and airlock-hub).

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "cli/common.hpp"
#include "core/fs.hpp"
#include "net/package_transfer.hpp"
#include "net/registry_client.hpp"

namespace airlock::cli {

namespace {

// What push and pull share: how to reach and authenticate with the registry.
struct RegistryFlags {
  std::string username;
  bool password_stdin = false;
  bool plain_http = false;
  std::string ca_file;
  bool json = false;
};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

void AddRegistryFlags(CLI::App* cmd, RegistryFlags& f) {
  cmd->add_option("-u,--username", f.username,
                  "registry user (default: $AIRLOCK_REGISTRY_USER); the password comes from "
                  "--password-stdin or $AIRLOCK_REGISTRY_PASSWORD, a bearer token from "
                  "$AIRLOCK_REGISTRY_TOKEN");
  cmd->add_flag("--password-stdin", f.password_stdin, "read the password from standard input");
  cmd->add_flag("--plain-http", f.plain_http,
                "talk http:// to a registry that is not on this machine (loopback registries "
                "always use http://)");
  f.ca_file = Env("AIRLOCK_CA_FILE");
  cmd->add_option("--ca-file", f.ca_file,
                  "PEM file of the CA that signed the registry's cert (default: $AIRLOCK_CA_FILE); "
                  "given, the registry is spoken to over https even on loopback");
  cmd->add_flag("--json", f.json, "print the result as JSON");
}

// Tokens saved by `airlock login`, by registry (host[:port]): $AIRLOCK_CONFIG_DIR, else
// $XDG_CONFIG_HOME/airlock, else ~/.config/airlock; credentials.json, mode 0600.
std::filesystem::path CredentialsFile() {
  std::string dir = Env("AIRLOCK_CONFIG_DIR");
  if (dir.empty()) {
    std::string xdg = Env("XDG_CONFIG_HOME");
    std::string home = Env("HOME");
    dir = !xdg.empty()    ? xdg + "/airlock"
          : !home.empty() ? home + "/.config/airlock"
                          : std::string(".airlock");
  }
  return std::filesystem::path(dir) / "credentials.json";
}

constexpr std::uint64_t kMaxCredentialsFile = 1 << 20;

Result<nlohmann::json> ReadCredentials() {
  std::filesystem::path file = CredentialsFile();
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    return nlohmann::json{{"registries", nlohmann::json::object()}};
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadFile(file, kMaxCredentialsFile));
  auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("registries") ||
      !doc["registries"].is_object()) {
    return Fail(ErrorCode::kCorrupt, file.string() +
                                         " is not a credentials file airlock wrote; remove it and "
                                         "run airlock login again");
  }
  return doc;
}

// The token `airlock login` saved for registry, "" when there is none.
Result<std::string> SavedToken(const std::string& registry) {
  AIRLOCK_ASSIGN_OR_RETURN(nlohmann::json saved, ReadCredentials());
  const auto& entry = saved["registries"];
  if (entry.contains(registry) && entry[registry].is_object() &&
      entry[registry].contains("token") && entry[registry]["token"].is_string()) {
    return entry[registry]["token"].get<std::string>();
  }
  return std::string();
}

Status WriteCredentials(const nlohmann::json& doc) {
  std::filesystem::path file = CredentialsFile();
  AIRLOCK_RETURN_IF_ERROR(MakeDirectories(file.parent_path()));
  return WriteFileAtomic(file, doc.dump(2) + "\n", 0600);
}

Result<std::unique_ptr<net::RegistryClient>> Connect(const RegistryFlags& f,
                                                     const std::string& registry) {
  net::RegistryOptions options;
  options.registry = registry;
  options.plain_http = f.plain_http;
  options.ca_file = f.ca_file;
  options.https = !f.ca_file.empty();  // a CA means TLS, even for a registry on loopback
  options.credentials.username = f.username.empty() ? Env("AIRLOCK_REGISTRY_USER") : f.username;
  options.credentials.token = Env("AIRLOCK_REGISTRY_TOKEN");
  if (f.password_stdin) {
    std::string password;
    std::getline(std::cin, password);
    if (!password.empty() && password.back() == '\r') {
      password.pop_back();
    }
    options.credentials.password = password;
  } else {
    options.credentials.password = Env("AIRLOCK_REGISTRY_PASSWORD");
  }
  if (!options.credentials.password.empty() && options.credentials.username.empty()) {
    return Fail(ErrorCode::kInvalidArgument,
                "a password without a user name: give --username or set AIRLOCK_REGISTRY_USER");
  }
  // Flags and the environment win; otherwise what `airlock login` saved for this registry.
  if (options.credentials.token.empty() && options.credentials.password.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(options.credentials.token, SavedToken(registry));
  }
  return net::RegistryClient::Create(std::move(options));
}

nlohmann::json DescriptorJson(const pkg::Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest.ToString()}, {"size", d.size}};
}

}  // namespace

Result<std::string> RegistryToken(const std::string& registry) {
  std::string token = Env("AIRLOCK_REGISTRY_TOKEN");
  if (!token.empty()) {
    return token;
  }
  return SavedToken(registry);
}

void AddPush(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "push",
      "Push a package (every blob, its manifests and index, and its release) to an OCI registry");
  struct Args {
    std::string package;
    std::string target;
    std::string ref;
    std::string mount_from;
    RegistryFlags registry;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("package", a->package, "package directory or .tar")->required();
  cmd->add_option("target", a->target,
                  "REGISTRY/REPOSITORY[:TAG], e.g. localhost:5000/models/affine (the tag "
                  "defaults to the package's version)")
      ->required();
  cmd->add_option("--ref", a->ref, "which package in the layout (its version tag)");
  cmd->add_option("--mount-from", a->mount_from,
                  "a repository of the same registry that may hold the blobs already (mounted "
                  "instead of uploaded)");
  AddRegistryFlags(cmd, a->registry);
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto target = net::RegistryReference::Parse(a->target);
      if (!target) {
        return ReportError(target.error(), kExitUsage);
      }
      if (target->digest) {
        return ReportError(Error(ErrorCode::kInvalidArgument,
                                 "push to a tag, not a digest: REGISTRY/REPOSITORY[:TAG]"),
                           kExitUsage);
      }
      auto client = Connect(a->registry, target->registry);
      if (!client) {
        return ReportError(client.error(), kExitUsage);
      }
      net::PushOptions options;
      options.ref = a->ref;
      options.tag = target->tag;
      options.mount_from = a->mount_from;
      options.say = [&ctx](const std::string& s) { ctx.Say(s); };
      options.progress = [&ctx](const std::string& label, std::uint64_t done, std::uint64_t total) {
        ctx.Progress(label, done, total);
      };
      auto r = net::PushPackage(**client, target->repository, a->package, options);
      if (!r) {
        int code = ExitCodeFor(r.error());
        return ReportError(
            std::move(r.error()).WithContext("pushing " + a->package + " to " + a->target), code);
      }
      std::string pushed = target->registry + "/" + target->repository + ":" + r->tag;
      if (a->registry.json) {
        nlohmann::json j = {
            {"pushed", pushed},
            {"registry", target->registry},
            {"repository", target->repository},
            {"tag", r->tag},
            {"name", r->name},
            {"version", r->version},
            {"index", DescriptorJson(r->index)},
            {"blobs",
             {{"uploaded", r->blobs_uploaded},
              {"existing", r->blobs_existing},
              {"mounted", r->blobs_mounted}}},
            {"bytes_uploaded", r->bytes_uploaded},
            {"manifests", r->manifests},
            {"release", r->release_manifest ? nlohmann::json(r->release_manifest->ToString())
                                            : nlohmann::json(nullptr)},
            {"referrers", r->release_manifest ? (r->referrers_tag_used ? "tag" : "api") : "none"}};
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf(
            "pushed %s %s to %s@%s (%zu blob(s) uploaded, %zu already there%s, %s sent%s)\n",
            r->name.c_str(), r->version.c_str(), pushed.c_str(), r->index.digest.ToString().c_str(),
            r->blobs_uploaded, r->blobs_existing,
            r->blobs_mounted > 0 ? (", " + std::to_string(r->blobs_mounted) + " mounted").c_str()
                                 : "",
            HumanBytes(r->bytes_uploaded).c_str(),
            r->release_manifest ? ", with its release" : ", unsigned");
      }
      return kExitOk;
    };
  });
}

void AddPull(CLI::App& app, Context& ctx, Action& action) {
  auto* cmd = app.add_subcommand(
      "pull",
      "Pull a package from an OCI registry into a directory or .tar, checking every digest");
  struct Args {
    std::string source;
    std::string output;
    bool force = false;
    RegistryFlags registry;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("source", a->source, "REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:…")
      ->required();
  cmd->add_option("-o,--output", a->output, "a directory, or a file ending in .tar")->required();
  cmd->add_flag("--force", a->force, "replace an existing package at the output");
  AddRegistryFlags(cmd, a->registry);
  cmd->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      auto source = net::RegistryReference::Parse(a->source);
      if (!source) {
        return ReportError(source.error(), kExitUsage);
      }
      if (source->Reference().empty()) {
        return ReportError(Error(ErrorCode::kInvalidArgument,
                                 "name what to pull: REGISTRY/REPOSITORY:TAG or "
                                 "REGISTRY/REPOSITORY@sha256:…"),
                           kExitUsage);
      }
      auto client = Connect(a->registry, source->registry);
      if (!client) {
        return ReportError(client.error(), kExitUsage);
      }
      net::PullOptions options;
      options.replace = a->force;
      options.say = [&ctx](const std::string& s) { ctx.Say(s); };
      options.progress = [&ctx](const std::string& label, std::uint64_t done, std::uint64_t total) {
        ctx.Progress(label, done, total);
      };
      // A digest pins the content; a tag alone is what the registry says it is now.
      std::string reference = source->digest ? source->digest->ToString() : source->tag;
      auto r = net::PullPackage(**client, source->repository, reference, a->output, options);
      if (!r) {
        int code = ExitCodeFor(r.error());
        return ReportError(std::move(r.error()).WithContext("pulling " + a->source), code);
      }
      if (source->digest && !source->tag.empty()) {
        ctx.Say("pulled by digest; the tag " + source->tag + " was not consulted");
      }
      if (a->registry.json) {
        nlohmann::json j = {
            {"pulled", a->source},
            {"output", a->output},
            {"name", r->name},
            {"version", r->version},
            {"index", DescriptorJson(r->index)},
            {"blobs", r->blobs},
            {"bytes", r->bytes},
            {"release", r->release_manifest ? nlohmann::json(r->release_manifest->ToString())
                                            : nlohmann::json(nullptr)}};
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf("pulled %s %s into %s (index %s, %zu blob(s), %s%s)\n", r->name.c_str(),
                    r->version.c_str(), a->output.c_str(), r->index.digest.ToString().c_str(),
                    r->blobs, HumanBytes(r->bytes).c_str(),
                    r->release_manifest ? ", with its release; check it with airlock verify"
                                        : ", no release document in the registry");
      }
      return kExitOk;
    };
  });
}

void AddLogin(CLI::App& app, Context& ctx, Action& action) {
  auto* login = app.add_subcommand(
      "login", "Check a registry token (an airlock-hub token) and save it for push and pull");
  auto* logout = app.add_subcommand("logout", "Forget the token saved for a registry");
  struct Args {
    std::string registry;
    bool token_stdin = false;
    bool plain_http = false;
    std::string ca_file;
  };
  auto a = std::make_shared<Args>();
  login->add_option("registry", a->registry, "REGISTRY, e.g. hub.example.com:7400")->required();
  login->add_flag("--token-stdin", a->token_stdin,
                  "read the token from standard input (default: $AIRLOCK_REGISTRY_TOKEN)");
  login->add_flag("--plain-http", a->plain_http,
                  "talk http:// to a registry that is not on this machine");
  login->add_option("--ca-file", a->ca_file, "PEM file of the CA that signed the registry's cert");
  logout->add_option("registry", a->registry, "REGISTRY, as given to login")->required();
  login->callback([&ctx, &action, a] {
    action = [&ctx, a]() -> int {
      std::string token = Env("AIRLOCK_REGISTRY_TOKEN");
      if (a->token_stdin) {
        std::getline(std::cin, token);
        while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) {
          token.pop_back();
        }
      }
      if (token.empty()) {
        return ReportError(Error(ErrorCode::kInvalidArgument,
                                 "no token: pipe it to --token-stdin or set "
                                 "AIRLOCK_REGISTRY_TOKEN (airlock-hub token create makes one)"),
                           kExitUsage);
      }
      net::RegistryOptions options;
      options.registry = a->registry;
      options.plain_http = a->plain_http;
      options.ca_file = a->ca_file;
      options.https = !a->ca_file.empty();
      options.credentials.token = token;
      auto client = net::RegistryClient::Create(std::move(options));
      if (!client) {
        return ReportError(client.error(), kExitUsage);
      }
      // GET /v2/ with the token: a hub answers 401 for a token it does not know.
      if (auto pinged = (*client)->Ping(); !pinged) {
        return ReportError(
            std::move(pinged.error()).WithContext("checking the token with " + a->registry),
            kExitFailure);
      }
      auto saved = ReadCredentials();
      if (!saved) {
        return ReportError(saved.error(), kExitFailure);
      }
      (*saved)["registries"][a->registry] = {{"token", token}};
      if (auto written = WriteCredentials(*saved); !written) {
        return ReportError(written.error(), kExitFailure);
      }
      ctx.Say("saved in " + CredentialsFile().string() + " (mode 0600)");
      std::printf("logged in to %s\n", a->registry.c_str());
      return kExitOk;
    };
  });
  logout->callback([&action, a] {
    action = [a]() -> int {
      auto saved = ReadCredentials();
      if (!saved) {
        return ReportError(saved.error(), kExitFailure);
      }
      if (!(*saved)["registries"].contains(a->registry)) {
        std::printf("no token saved for %s\n", a->registry.c_str());
        return kExitOk;
      }
      (*saved)["registries"].erase(a->registry);
      if (auto written = WriteCredentials(*saved); !written) {
        return ReportError(written.error(), kExitFailure);
      }
      std::printf("logged out of %s\n", a->registry.c_str());
      return kExitOk;
    };
  });
}

}  // namespace airlock::cli
