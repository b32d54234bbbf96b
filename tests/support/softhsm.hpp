#pragma once
// A SoftHSM token of a test's own, for the PKCS#11 tests: a softhsm2.conf and a token directory
// in a temporary directory, SOFTHSM2_CONF pointing at them while the object lives (the airlock
// binary the test runs inherits it), and one initialised token. SoftHSM reads SOFTHSM2_CONF when
// the module is initialised, which Airlock does each time the first key of a process is opened.
//
// Not thread-safe (it sets an environment variable); one per test.

#include <filesystem>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace airlock::testing {

class SoftHsm {
 public:
  static constexpr const char* kToken = "airlock-test";
  static constexpr const char* kPin = "1234";
  static constexpr const char* kSoPin = "5678";

  // Debian's SoftHSM module, or empty when softhsm2 is not installed.
  static std::filesystem::path Module();

  // extra_config: more lines for softhsm2.conf (e.g. "slots.mechanisms = -CKM_EDDSA").
  explicit SoftHsm(const std::string& extra_config = "");
  ~SoftHsm();
  SoftHsm(const SoftHsm&) = delete;
  SoftHsm& operator=(const SoftHsm&) = delete;

  // True when the token was initialised; the constructor reports why not (ADD_FAILURE).
  bool ready() const { return ready_; }
  const TempDir& dir() const { return dir_; }

  // pkcs11:token=airlock-test;object=OBJECT?module-path=MODULE, then "&" + query when given.
  std::string Uri(const std::string& object, const std::string& query = "") const;
  // The same with pin-value=1234.
  std::string UriWithPin(const std::string& object) const;

  // Runs softhsm2-util with these arguments; its output when it fails.
  CommandResult Util(const std::vector<std::string>& args) const;
  // Imports a PKCS#8 PEM private key (and its public half) into the token under label and id
  // (hex), as an administrator would with softhsm2-util --import.
  CommandResult Import(const std::filesystem::path& pem, const std::string& label,
                       const std::string& id_hex) const;

 private:
  TempDir dir_;
  bool ready_ = false;
  bool had_conf_ = false;
  std::string old_conf_;
};

}  // namespace airlock::testing

// Skips the test when softhsm2 is not installed (scripts/bootstrap installs it, so CI runs them).
#define AIRLOCK_SKIP_WITHOUT_SOFTHSM()                                                       \
  do {                                                                                       \
    if (::airlock::testing::SoftHsm::Module().empty()) {                                     \
      GTEST_SKIP() << "softhsm2 is not installed (scripts/bootstrap installs it): no token"; \
    }                                                                                        \
  } while (false)
