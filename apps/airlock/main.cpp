// airlock: the SDK and admin CLI. Everything lives in src/cli.
#include "cli/cli.hpp"

int main(int argc, char** argv) { return airlock::cli::Main(argc, argv); }
