// A build without the consoles (-DAIRLOCK_CONSOLE=OFF): no assets.
#include "console/assets.hpp"

namespace airlock::console {

std::span<const Asset> Assets() { return {}; }

}  // namespace airlock::console
