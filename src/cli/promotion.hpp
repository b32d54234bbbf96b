#pragma once
// What `airlock promote` signs: the next channel document for a model version, or the pending
// proposal for it that another release manager started. Pure functions over what the hub
// answered, so that every case (first promotion, a newer version, a rollback, --keep, co-signing,
// a version without a release) is a unit test.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "trust/documents.hpp"

namespace airlock::cli {

struct PromotionRequest {
  std::string model;
  std::string channel;  // "production"
  std::string version;  // the model version to promote (or roll back to)
  TimePoint now;
  TimePoint expires;     // of a new channel document (a co-signed proposal keeps its own)
  std::size_t keep = 3;  // at most this many releases in a new document: VERSION + rollbacks
};

// What the hub holds for the channel (GET …/channels/{channel}), parsed.
struct ChannelOnHub {
  std::optional<trust::Channel> current;
  std::optional<trust::SignedDocument> pending;  // a proposal short of the threshold
};

struct PromotionPlan {
  // kCosign: document is the pending proposal, with the signatures it has; kNew: a new unsigned
  // channel document.
  enum class Kind { kNew, kCosign };
  Kind kind = Kind::kNew;
  trust::SignedDocument document = trust::SignedDocument::Wrap({{"_type", "channel"}});
  trust::Channel channel;  // document's body
  // The release the channel pointed at before (nullopt: the first promotion).
  std::optional<trust::ChannelEntry> previous;
  // A pending proposal for another release that a new document replaces (its releases[0]).
  std::optional<std::string> replaced_pending;
};

// The plan for promoting request.version, given the model's releases on the hub (version,
// counter and release id each) and the channel's state there:
//   - a pending proposal whose releases[0] is the version, unexpired and above the current
//     version, is co-signed as it is;
//   - otherwise a new document: version current+1 (1 when there is none), releases = the
//     version's entry, then the current document's releases without it, at most keep.
// kNotFound when the version has no release on the hub; kAlreadyExists when the channel already
// points at it; kInvalidArgument for a bad channel name, keep 0 or an expiry not after now.
[[nodiscard]] Result<PromotionPlan> PlanPromotion(const PromotionRequest& request,
                                                  const std::vector<trust::ChannelEntry>& releases,
                                                  const ChannelOnHub& hub);

// "production of vibration-anomaly is now version 4: 1.1.0 (rollback targets 1.0.0)", with
// ", rolled back from 1.1.0" when previous has a higher release counter.
std::string DescribeCurrent(const trust::Channel& channel,
                            const std::optional<trust::ChannelEntry>& previous);
// "proposed production version 4 of vibration-anomaly → 1.1.0: 1 of 2 release-manager
// signatures; another release manager approves with the same command".
std::string DescribePending(const trust::Channel& channel, std::int64_t signatures,
                            std::int64_t threshold, const std::string& role);

}  // namespace airlock::cli
