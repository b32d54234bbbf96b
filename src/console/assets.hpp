#pragma once
// The built web consoles (console/), embedded in the daemons by console/embed.mjs at build time.

#include <span>
#include <string_view>

namespace airlock::console {

struct Asset {
  std::string_view path;          // "hub/index.html", "assets/hub-4f2a….js"
  std::string_view content_type;  // for Content-Type
  std::string_view body;
  std::string_view gzip;  // the body gzipped, or empty when that saves little
  std::string_view etag;  // a strong ETag, quoted
};

// Every file of both consoles, sorted by path.
std::span<const Asset> Assets();

}  // namespace airlock::console
