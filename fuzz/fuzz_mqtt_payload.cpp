// Fuzzes what arrives over MQTT (docs/delivery.md, docs/devices.md): the topic parsers of both
// brokers and every payload parser. The first byte picks the parser; the rest is the topic or the
// payload, read by delivery::ParsePayload first, as the hub, the gateway and the agent do.
//
// Property: a payload FromJson accepts is written back by ToJson into JSON that FromJson accepts
// again and that writes back the same; a topic that parses is the one Topic() builds for it.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "delivery/device_protocol.hpp"
#include "delivery/protocol.hpp"
#include "property.hpp"

namespace {

namespace delivery = airlock::delivery;

template <typename Message>
void RoundTrip(std::string_view payload) {
  auto j = delivery::ParsePayload(payload);
  if (!j) {
    return;
  }
  auto message = Message::FromJson(*j);
  if (!message) {
    return;
  }
  const auto written = message->ToJson();
  auto again = Message::FromJson(written);
  AIRLOCK_FUZZ_REQUIRE(again);
  AIRLOCK_FUZZ_REQUIRE(again->ToJson() == written);
}

const delivery::Topics& CloudTopics() {
  static const delivery::Topics topics = *delivery::Topics::Create();
  return topics;
}

const delivery::DeviceTopics& FactoryTopics() {
  static const delivery::DeviceTopics topics = *delivery::DeviceTopics::Create();
  return topics;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 13) {
    case 0: RoundTrip<delivery::DeliveryOffer>(rest); break;
    case 1: RoundTrip<delivery::DeliveryReady>(rest); break;
    case 2: RoundTrip<delivery::DeliveryReject>(rest); break;
    case 3: RoundTrip<delivery::DeliveryGrant>(rest); break;
    case 4: RoundTrip<delivery::DeliveryStatus>(rest); break;
    case 5: RoundTrip<delivery::DeliveryCancel>(rest); break;
    case 6: RoundTrip<delivery::FleetReport>(rest); break;
    case 7: RoundTrip<delivery::BundleManifest>(rest); break;
    case 8: RoundTrip<delivery::DirectiveMessage>(rest); break;
    case 9: RoundTrip<delivery::DeviceState>(rest); break;
    case 10: (void)delivery::ParseOnline(rest); break;
    case 11: {
      auto address = CloudTopics().Parse(rest);
      if (address) {
        auto topic = CloudTopics().Topic(address->kind, address->gateway, address->delivery_id);
        AIRLOCK_FUZZ_REQUIRE(topic && *topic == rest);
      }
      break;
    }
    default: {
      auto address = FactoryTopics().Parse(rest);
      if (address) {
        auto topic = FactoryTopics().Topic(address->kind, address->device);
        AIRLOCK_FUZZ_REQUIRE(topic && *topic == rest);
      }
      break;
    }
  }
  return 0;
}
