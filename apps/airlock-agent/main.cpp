// airlock-agent: the edge device's agent. Everything lives in src/agent.
#include "agent/cli.hpp"

int main(int argc, char** argv) { return airlock::agent::Main(argc, argv); }
