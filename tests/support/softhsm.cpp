#include "support/softhsm.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace airlock::testing {
namespace fs = std::filesystem;

fs::path SoftHsm::Module() {
  for (const char* p :
       {"/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so"}) {
    std::error_code ec;
    if (fs::exists(p, ec)) {
      return p;
    }
  }
  return {};
}

SoftHsm::SoftHsm(const std::string& extra_config) {
  if (const char* old = std::getenv("SOFTHSM2_CONF")) {
    had_conf_ = true;
    old_conf_ = old;
  }
  fs::create_directories(dir_ / "tokens");
  WriteAll(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens").string() +
                                       "\nobjectstore.backend = file\nlog.level = ERROR\n" +
                                       extra_config + "\n");
  ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
  auto r = Util({"--init-token", "--free", "--label", kToken, "--pin", kPin, "--so-pin", kSoPin});
  ready_ = r.exit_code == 0;
  if (!ready_) {
    ADD_FAILURE() << "softhsm2-util --init-token failed: " << r.out << r.err;
  }
}

SoftHsm::~SoftHsm() {
  if (had_conf_) {
    ::setenv("SOFTHSM2_CONF", old_conf_.c_str(), 1);
  } else {
    ::unsetenv("SOFTHSM2_CONF");
  }
}

std::string SoftHsm::Uri(const std::string& object, const std::string& query) const {
  std::string uri = std::string("pkcs11:token=") + kToken + ";object=" + object +
                    "?module-path=" + Module().string();
  return query.empty() ? uri : uri + "&" + query;
}

std::string SoftHsm::UriWithPin(const std::string& object) const {
  return Uri(object, std::string("pin-value=") + kPin);
}

CommandResult SoftHsm::Util(const std::vector<std::string>& args) const {
  std::vector<std::string> argv{"softhsm2-util"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, dir_.path(), 60);
}

CommandResult SoftHsm::Import(const fs::path& pem, const std::string& label,
                              const std::string& id_hex) const {
  return Util({"--import", pem.string(), "--token", kToken, "--label", label, "--id", id_hex,
               "--pin", kPin});
}

}  // namespace airlock::testing
