#include "core/names.hpp"

#include <gtest/gtest.h>

#include <string>

namespace airlock {
namespace {

TEST(NamesTest, ModelNamesAreLowercaseWordsWithSingleSeparators) {
  for (const char* name : {"defect-detector", "a.b_c-d", "resnet50", "a", "v2.1"}) {
    EXPECT_TRUE(ValidModelName(name)) << name;
  }
  for (const char* name : {"", "a..b", "a-", "-a", ".a", "A", "a b", "a/b", "a__b", "é"}) {
    EXPECT_FALSE(ValidModelName(name)) << name;
  }
  EXPECT_TRUE(ValidModelName(std::string(128, 'a')));
  EXPECT_FALSE(ValidModelName(std::string(129, 'a')));
}

TEST(NamesTest, DeviceIdsAreDevAndSixteenLowercaseHexDigits) {
  EXPECT_TRUE(ValidDeviceId("dev-5e0c2b7a9d1f4e36"));
  EXPECT_TRUE(ValidDeviceId("dev-0000000000000000"));
  for (const char* id : {"", "dev-", "dev-5e0c2b7a9d1f4e3", "dev-5e0c2b7a9d1f4e360",
                         "dev-5E0C2B7A9D1F4E36", "dev-5e0c2b7a9d1f4e3g", "DEV-5e0c2b7a9d1f4e36",
                         "gw-5e0c2b7a9d1f4e360", "dev_5e0c2b7a9d1f4e36"}) {
    EXPECT_FALSE(ValidDeviceId(id)) << id;
  }
}

}  // namespace
}  // namespace airlock
