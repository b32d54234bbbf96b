#pragma once
// The identifiers that more than one component checks: model names and device ids. Each rule
// lives here once, so that the packer, the delivery protocol and the signed directive agree.
// Pure functions; thread-safe.

#include <string_view>

namespace airlock {

// A model name as `airlock pack` accepts it (an OCI repository name component): lowercase letters
// and digits, separated by single '.', '_' or '-', at most 128 characters ("defect-detector").
bool ValidModelName(std::string_view name);

// A device id as the gateway makes it at enrollment: "dev-" and 16 lowercase hex digits.
bool ValidDeviceId(std::string_view id);

}  // namespace airlock
