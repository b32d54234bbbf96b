#pragma once
// Where a verifier keeps its root of trust across rotations (docs/trust.md, "Rotating the root").
//
// A verifier (the hub, a gateway, an agent) starts from the root it was given: the pinned file
// (a path in its configuration, or the one its enrollment wrote). Every rotation it accepts later
// (UpdateRoot) is written beside it, one file per version, VERSION.root.json in a directory of
// its own, atomically and only after it verified. At start LoadTrustedRoot walks the pinned root
// and those files again, so a restart trusts exactly what was accepted before, and a damaged or
// foreign file in the directory is an error rather than a silent fall back to an older root.
//
// Plain functions over the file system; a TrustedRoot is a value. Callers serialize updates.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::trust {

struct TrustedRoot {
  Root root;                              // the newest root, verified
  SignedDocument document;                // its signed document
  std::vector<SignedDocument> rotations;  // the accepted documents after the pinned one, oldest
                                          // first: what a verifier downstream must walk
};

// Reads the pinned root (its own root threshold must hold; it may have expired if a rotation
// replaced it) and the rotations in dir (missing: none), and walks them with UpdateRoot.
// kVerification when something does not verify or the newest root has expired, kCorrupt for an
// unreadable document, each naming the file.
[[nodiscard]] Result<TrustedRoot> LoadTrustedRoot(const std::filesystem::path& pinned,
                                                  const std::filesystem::path& dir,
                                                  TimePoint now);

// Verifies docs as rotations of current (UpdateRoot: documents at or below its version are
// skipped) and writes each accepted one into dir before current moves on. Nothing is written and
// current is unchanged when any document does not verify. Returns the update.
[[nodiscard]] Result<RootUpdate> AcceptRootRotations(TrustedRoot& current,
                                                     const std::filesystem::path& dir,
                                                     const std::vector<SignedDocument>& docs,
                                                     TimePoint now);

// What `airlock-hub root update|show` and `airlock-gateway root update|show` do, as text for a
// person: with files, reads them and accepts them as rotations (AcceptRootRotations), saying what
// changed and then restart (how to make the daemon use it); without, describes the trusted root.
// The errors of reading and verifying pass through.
[[nodiscard]] Result<std::string> RootCommand(const std::filesystem::path& pinned,
                                              const std::filesystem::path& dir,
                                              const std::vector<std::string>& files, TimePoint now,
                                              std::string_view restart);

}  // namespace airlock::trust
