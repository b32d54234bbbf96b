#pragma once
// Signing a package (a release document stored beside it) and verifying one against a root.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/keys.hpp"
#include "core/result.hpp"
#include "core/time.hpp"
#include "pkg/layout.hpp"
#include "pkg/package.hpp"
#include "trust/documents.hpp"

namespace airlock::pkg {

struct SignOptions {
  std::string ref;                       // which package in the layout; empty for the only one
  std::optional<std::uint64_t> counter;  // required for a new release
  TimePoint created;
  TimePoint expires;
  bool expires_given = false;  // the user chose the expiry (refused when co-signing)
};

struct SignResult {
  trust::SignedDocument document;
  bool added_to_existing = false;  // true when the keys co-signed the release already there
};

// Signs the package at path with keys and stores the release document in the layout, as an OCI
// referrer of the package index (replacing an earlier one). When the layout already holds a
// release for this index and no counter is given, the keys add their signatures to it (the
// multi-signer flow); otherwise a new release body is made. The layout is updated atomically:
// a directory gets new blobs then a new index.json; a tar is rewritten to a temporary file and
// renamed over the old one.
[[nodiscard]] Result<SignResult> SignPackage(const std::filesystem::path& path,
                                             const std::vector<PrivateKey>& keys,
                                             const SignOptions& options);

struct VerifyOptions {
  std::string ref;
  TimePoint now;
  std::uint64_t trusted_counter = 0;                  // refuse releases below this
  std::optional<std::string> platform;                // the platform that must be in the package
  std::optional<std::filesystem::path> release_file;  // else the release stored in the layout
  std::function<void(const std::string&)> say;
  // Byte progress while blobs are checked, labelled with the layer's file path; may be empty.
  std::function<void(const std::string& label, std::uint64_t done, std::uint64_t total)> progress;
};

struct VerifyResult {
  trust::Root root;
  trust::Release release;
  Package package;
  std::size_t blobs_checked = 0;
};

// Verifies, in order: the root (self-signed, unexpired), the release (publisher threshold of
// distinct keys, expiry, counter), that the release names this package's index by digest and
// size, its model and version, the platforms, and every blob's size and digest.
// kVerification or kCorrupt, naming what failed.
[[nodiscard]] Result<VerifyResult> VerifyPackage(const std::filesystem::path& path,
                                                 const trust::SignedDocument& root,
                                                 const VerifyOptions& options);

}  // namespace airlock::pkg
