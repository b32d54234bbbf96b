// airlock-gateway: the factory's package cache and the read-only registry its devices pull from
// (the delivery client and rollouts come later). Everything lives in src/gateway.
#include "gateway/cli.hpp"

int main(int argc, char** argv) { return airlock::gateway::Main(argc, argv); }
