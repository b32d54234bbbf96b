#include "console/console.hpp"

#include <algorithm>
#include <string>

#include "console/assets.hpp"

namespace airlock::console {
namespace {

const Asset* Find(std::string_view path) {
  auto assets = Assets();
  auto it = std::lower_bound(assets.begin(), assets.end(), path,
                             [](const Asset& a, std::string_view p) { return a.path < p; });
  return it != assets.end() && it->path == path ? &*it : nullptr;
}

bool AcceptsGzip(const httplib::Request& req) {
  return req.get_header_value("Accept-Encoding").find("gzip") != std::string::npos;
}

void SetSecurityHeaders(httplib::Response& res) {
  // Scripts and styles only from the daemon; uPlot sizes its canvases through element styles.
  res.set_header("Content-Security-Policy",
                 "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                 "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                 "base-uri 'none'; form-action 'none'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
}

void Send(const httplib::Request& req, httplib::Response& res, const Asset& asset, bool immutable) {
  SetSecurityHeaders(res);
  res.set_header("ETag", std::string(asset.etag));
  // The page is looked at again on every load (a new daemon may bring new scripts); the scripts
  // themselves never change under their hashed names.
  res.set_header("Cache-Control", immutable ? "public, max-age=31536000, immutable" : "no-cache");
  res.set_header("Vary", "Accept-Encoding");
  if (req.get_header_value("If-None-Match") == asset.etag) {
    res.status = 304;
    return;
  }
  res.status = 200;
  if (!asset.gzip.empty() && AcceptsGzip(req)) {
    res.set_header("Content-Encoding", "gzip");
    res.set_content(asset.gzip.data(), asset.gzip.size(), std::string(asset.content_type));
  } else {
    res.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type));
  }
}

void NotFound(httplib::Response& res, const std::string& what) {
  SetSecurityHeaders(res);
  res.status = 404;
  res.set_content("not part of the console: " + what.substr(0, 200) + "\n", "text/plain");
}

void Redirect(httplib::Response& res) {
  res.status = 302;
  res.set_header("Location", "/console/");
}

}  // namespace

void Mount(httplib::Server& server, App app) {
  const std::string page = app == App::kHub ? "hub/index.html" : "gateway/index.html";
  server.Get("/", [](const httplib::Request&, httplib::Response& res) { Redirect(res); });
  server.Get("/console", [](const httplib::Request&, httplib::Response& res) { Redirect(res); });
  server.Get(R"(/console/(.*))", [page](const httplib::Request& req, httplib::Response& res) {
    const std::string rest = req.matches[1].str();
    if (rest.empty() || rest == "index.html") {
      const Asset* asset = Find(page);
      if (asset == nullptr) {
        SetSecurityHeaders(res);
        res.status = 404;
        return res.set_content(
            "this build of Airlock has no console (it was built with -DAIRLOCK_CONSOLE=OFF)\n",
            "text/plain");
      }
      return Send(req, res, *asset, false);
    }
    // Only the shared assets directory: never the other console's page.
    const Asset* asset = rest.starts_with("assets/") ? Find(rest) : nullptr;
    if (asset == nullptr) {
      return NotFound(res, req.path);
    }
    Send(req, res, *asset, true);
  });
}

std::string Url(std::string_view base_url) { return std::string(base_url) + "/console/"; }

}  // namespace airlock::console
