#pragma once
// Result<T> and Error: how every fallible operation in Airlock reports failure.
//
// An Error carries a code (what kind of failure, which callers branch on), a message (what went
// wrong, for a person), and context added on the way up ("while reading blob sha256:…"). Errors
// are values; nothing here throws. Thread-compatible: distinct objects may be used concurrently.

#include <string>
#include <tl/expected.hpp>
#include <utility>
#include <vector>

namespace airlock {

enum class ErrorCode {
  kInvalidArgument,  // the caller's input is wrong (flags, config, a malformed document)
  kNotFound,         // a file, blob, key or entry that should exist does not
  kAlreadyExists,    // refusing to overwrite something
  kIo,               // the operating system said no (open, read, write, fsync, rename)
  kCorrupt,          // bytes that do not match their digest or size, truncated or malformed data
  kUnsupported,      // well-formed but not something this version handles (media type, dtype)
  kVerification,     // a signature, threshold, counter, expiry or platform check failed
  kModel,            // the model itself: ONNX checker, ONNX Runtime load or run
  kMismatch,         // outputs that do not match the expected ones
  kInternal,         // a broken invariant inside Airlock
  kUnavailable,      // busy or not ready: a full queue, a model still loading; try again later
  kTimeout,          // a deadline passed before the work was done
};

// A short stable name for the code ("corrupt", "verification", …), used in messages and JSON.
const char* ErrorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::vector<std::string>& context() const { return context_; }

  // Adds where the error happened, outermost last: "while packing model.onnx".
  Error&& WithContext(std::string what) && {
    context_.push_back(std::move(what));
    return std::move(*this);
  }
  Error& WithContext(std::string what) & {
    context_.push_back(std::move(what));
    return *this;
  }

  // "outer: inner: message", the form printed to users.
  std::string ToString() const;

 private:
  ErrorCode code_;
  std::string message_;
  std::vector<std::string> context_;
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

inline tl::unexpected<Error> Fail(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error(code, std::move(message)));
}
inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

// Adds context to the error of a failed result and passes a good one through.
template <typename T>
Result<T> WithContext(Result<T>&& r, std::string what) {
  if (!r) {
    r.error().WithContext(std::move(what));
  }
  return std::move(r);
}

}  // namespace airlock

#define AIRLOCK_CONCAT_INNER(a, b) a##b
#define AIRLOCK_CONCAT(a, b) AIRLOCK_CONCAT_INNER(a, b)

// Evaluates a Status-returning expression and returns its error from the enclosing function.
#define AIRLOCK_RETURN_IF_ERROR(expr)                             \
  do {                                                            \
    auto airlock_status_ = (expr);                                \
    if (!airlock_status_) {                                       \
      return ::airlock::Fail(std::move(airlock_status_).error()); \
    }                                                             \
  } while (false)

// `AIRLOCK_ASSIGN_OR_RETURN(auto x, F())` binds the value of a good Result or returns its error.
#define AIRLOCK_ASSIGN_OR_RETURN(lhs, expr) \
  AIRLOCK_ASSIGN_OR_RETURN_IMPL(AIRLOCK_CONCAT(airlock_result_, __LINE__), lhs, expr)
#define AIRLOCK_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp) {                                         \
    return ::airlock::Fail(std::move(tmp).error());   \
  }                                                   \
  lhs = std::move(*tmp)
