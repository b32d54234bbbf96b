# Third-party libraries, each as an imported target. Debian 12 packages unless noted.
find_package(PkgConfig REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(CLI11 REQUIRED)
find_package(spdlog REQUIRED)
find_package(tl-expected REQUIRED)
find_package(Protobuf REQUIRED)   # libonnx-dev links it but does not find it
find_package(ONNX REQUIRED)       # libonnx-dev: protobuf definitions and the model checker
find_package(Threads REQUIRED)

# ONNX Runtime: a system installation when pkg-config knows one, else the bootstrap's copy.
pkg_check_modules(ORT QUIET IMPORTED_TARGET libonnxruntime>=1.17)
if(ORT_FOUND)
  add_library(onnxruntime::onnxruntime ALIAS PkgConfig::ORT)
  message(STATUS "ONNX Runtime: system ${ORT_VERSION}")
else()
  find_path(ORT_INCLUDE_DIR onnxruntime_cxx_api.h PATHS "${AIRLOCK_ORT_ROOT}/include" NO_DEFAULT_PATH)
  find_library(ORT_LIBRARY onnxruntime PATHS "${AIRLOCK_ORT_ROOT}/lib" NO_DEFAULT_PATH)
  if(NOT ORT_INCLUDE_DIR OR NOT ORT_LIBRARY)
    message(FATAL_ERROR "ONNX Runtime not found: run scripts/bootstrap (or install ONNX Runtime >= 1.17)")
  endif()
  add_library(onnxruntime::onnxruntime SHARED IMPORTED)
  set_target_properties(onnxruntime::onnxruntime PROPERTIES
    IMPORTED_LOCATION "${ORT_LIBRARY}"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${ORT_INCLUDE_DIR}"
    INTERFACE_INCLUDE_DIRECTORIES "${ORT_INCLUDE_DIR}")
  message(STATUS "ONNX Runtime: ${ORT_LIBRARY}")
endif()

# The agent's HTTP server, image decoding for pipelines, MQTT (Paho C++ on Paho C).
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(TURBOJPEG REQUIRED IMPORTED_TARGET libturbojpeg)
pkg_check_modules(PNG REQUIRED IMPORTED_TARGET libpng)
find_package(PahoMqttCpp REQUIRED)

# The OCI registry client (push, pull): libcurl with OpenSSL (libcurl4-openssl-dev).
find_package(CURL 7.85 REQUIRED)
# The hub's embedded metadata database.
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
# The hub's shared metadata database (issue 4): libpq, PostgreSQL's C client (libpq-dev).
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
# Signing keys in PKCS#11 tokens: only pkcs11.h from libp11-kit-dev. Modules are loaded with
# dlopen, so nothing is linked (core/pkcs11.hpp).
pkg_check_modules(P11KIT REQUIRED p11-kit-1)
