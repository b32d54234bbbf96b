#pragma once
// What the daemons' cpp-httplib servers (the agent's and the hub's) share. Header-only, so that
// a server does not link airlock_net (and Paho) for it.

#include <httplib.h>

#include <exception>
#include <string>

#include "core/result.hpp"

namespace airlock::net {

// Binds server to address:port, or to a free port when port is 0; returns the port bound.
// kIo naming the address when it cannot.
inline Result<int> BindHttpServer(httplib::Server& server, const std::string& address, int port) {
  int bound = port == 0 ? server.bind_to_any_port(address)
                        : (server.bind_to_port(address, port) ? port : -1);
  if (bound <= 0) {
    return Fail(ErrorCode::kIo, "cannot listen on " + address + ":" + std::to_string(port) +
                                    " (in use, or not an address of this machine?)");
  }
  return bound;
}

// "internal error: WHAT" for the exception ep holds, for a 500 answer.
inline std::string InternalErrorMessage(std::exception_ptr ep) {
  std::string what = "internal error";
  try {
    std::rethrow_exception(ep);
  } catch (const std::exception& e) {
    what += std::string(": ") + e.what();
  } catch (...) {
  }
  return what;
}

}  // namespace airlock::net
