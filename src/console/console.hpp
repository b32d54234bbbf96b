#pragma once
// Serving a web console (docs/console.md) from a daemon's own HTTP server.
//
// The console is static: an HTML page and its scripts, which sign in with an API token and do
// everything through the daemon's public /api/v1/ routes. What is served here needs no token.

#include <httplib.h>

#include <string>
#include <string_view>

namespace airlock::console {

// Which console a daemon serves.
enum class App { kHub, kGateway };

// Installs on server: GET /console/ (the app's page), /console/assets/… (scripts and styles,
// cached for a year: their names carry their hash), /console → /console/, and / → /console/.
// Every answer carries a Content-Security-Policy that allows only the daemon's own scripts.
void Mount(httplib::Server& server, App app);

// The console's address for a daemon listening at base_url ("https://127.0.0.1:7400").
std::string Url(std::string_view base_url);

}  // namespace airlock::console
