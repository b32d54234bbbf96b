#pragma once
// airlock-hub's command line (docs/hub.md): `airlock-hub serve [--data DIR] [--address A]
// [--port P] [--config FILE] [--log-level L]`, and the offline `token`, `audit` and `gc`. Returns the process exit code (core/exit_codes.hpp).

namespace airlock::hub {

int Main(int argc, char** argv);

}  // namespace airlock::hub
