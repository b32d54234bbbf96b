// airlock-hub: the registry, OCI distribution endpoint and (later) orchestrator. Everything lives
// in src/hub.
#include "hub/cli.hpp"

int main(int argc, char** argv) { return airlock::hub::Main(argc, argv); }
