#include "cli/promotion.hpp"

#include <algorithm>

#include "core/text.hpp"

namespace airlock::cli {

Result<PromotionPlan> PlanPromotion(const PromotionRequest& request,
                                    const std::vector<trust::ChannelEntry>& releases,
                                    const ChannelOnHub& hub) {
  if (!trust::ValidChannelName(request.channel)) {
    return Fail(ErrorCode::kInvalidArgument,
                "\"" + request.channel +
                    "\" is not a channel name: 1-63 of a-z, 0-9 and '-', e.g. production");
  }
  if (request.keep < 1) {
    return Fail(ErrorCode::kInvalidArgument,
                "--keep must be at least 1 (the release promoted; more keep rollback targets)");
  }
  auto entry = std::find_if(releases.begin(), releases.end(), [&](const trust::ChannelEntry& e) {
    return e.version == request.version;
  });
  if (entry == releases.end()) {
    std::vector<std::string> known;
    for (const auto& e : releases) {
      known.push_back(e.version);
    }
    return Fail(ErrorCode::kNotFound,
                request.model + " " + request.version + " has no release on the hub (" +
                    (known.empty() ? std::string("it has no releases at all")
                                   : "releases: " + Join(known)) +
                    "): sign the package (airlock sign PKG -k PUBLISHER.key --counter N) and push "
                    "it (airlock push), or upload its release, before promoting it");
  }

  PromotionPlan plan;
  const std::optional<trust::Channel>& current = hub.current;
  if (current && !current->releases.empty()) {
    plan.previous = current->releases.front();
  }

  // Another release manager's proposal for the same release: add our signature to it.
  if (hub.pending) {
    auto proposed = trust::Channel::FromJson(hub.pending->body());
    if (proposed && !proposed->releases.empty()) {
      bool same_release = proposed->releases.front().version == request.version &&
                          proposed->releases.front().release == entry->release;
      bool live = proposed->expires > request.now &&
                  (!current || proposed->version > current->version) &&
                  proposed->model == request.model && proposed->name == request.channel;
      if (same_release && live) {
        plan.kind = PromotionPlan::Kind::kCosign;
        plan.document = *hub.pending;
        plan.channel = std::move(*proposed);
        return plan;
      }
      if (live) {
        plan.replaced_pending = proposed->releases.front().version;
      }
    }
  }

  if (current && !current->releases.empty() &&
      current->releases.front().release == entry->release) {
    return Fail(ErrorCode::kAlreadyExists,
                request.channel + " of " + request.model + " already points at " + request.version +
                    " (channel version " + std::to_string(current->version) +
                    "): nothing to promote");
  }
  if (request.expires <= request.now) {
    return Fail(ErrorCode::kInvalidArgument,
                "--expires must leave the channel document valid after now");
  }

  trust::Channel next;
  next.model = request.model;
  next.name = request.channel;
  next.version = current ? current->version + 1 : 1;
  next.expires = request.expires;
  next.releases.push_back(*entry);
  if (current) {
    for (const auto& e : current->releases) {
      if (next.releases.size() >= request.keep) {
        break;
      }
      if (e.version != entry->version && e.release != entry->release) {
        next.releases.push_back(e);
      }
    }
  }
  plan.kind = PromotionPlan::Kind::kNew;
  plan.document = trust::SignedDocument::Wrap(next.ToJson());
  plan.channel = std::move(next);
  return plan;
}

std::string DescribeCurrent(const trust::Channel& channel,
                            const std::optional<trust::ChannelEntry>& previous) {
  std::vector<std::string> rollbacks;
  for (std::size_t i = 1; i < channel.releases.size(); ++i) {
    rollbacks.push_back(channel.releases[i].version);
  }
  std::string out = channel.name + " of " + channel.model + " is now version " +
                    std::to_string(channel.version) + ": " + channel.releases.front().version;
  if (previous && previous->release_counter > channel.releases.front().release_counter) {
    out += ", rolled back from " + previous->version;
  }
  out +=
      rollbacks.empty() ? " (no rollback targets)" : " (rollback targets " + Join(rollbacks) + ")";
  return out;
}

std::string DescribePending(const trust::Channel& channel, std::int64_t signatures,
                            std::int64_t threshold, const std::string& role) {
  std::string who = role.empty() ? "release-manager" : role;
  std::string person = who == "publisher" ? "publisher" : "release manager";
  std::int64_t missing = std::max<std::int64_t>(1, threshold - signatures);
  return "proposed " + channel.name + " version " + std::to_string(channel.version) + " of " +
         channel.model + " → " + channel.releases.front().version + ": " +
         std::to_string(signatures) + " of " + std::to_string(threshold) + " " + who +
         " signatures; " +
         (missing == 1 ? "another " + person + " approves"
                       : std::to_string(missing) + " more " + person + "s approve") +
         " with the same command";
}

}  // namespace airlock::cli
