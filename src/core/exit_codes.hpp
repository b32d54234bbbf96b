#pragma once
// Exit codes shared by Airlock's command-line programs (docs/cli.md).

#include "core/result.hpp"

namespace airlock {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;       // the command could not do its job (see the message)
inline constexpr int kExitUsage = 2;         // wrong flags or arguments
inline constexpr int kExitVerification = 3;  // a package or document failed verification

// kExitVerification for errors that mean "this is not trustworthy" (a failed check, corrupt or
// unsupported data), kExitFailure for the rest.
inline int ExitCodeFor(const Error& e) {
  switch (e.code()) {
    case ErrorCode::kVerification:
    case ErrorCode::kCorrupt:
    case ErrorCode::kUnsupported:
      return kExitVerification;
    default:
      return kExitFailure;
  }
}

}  // namespace airlock
