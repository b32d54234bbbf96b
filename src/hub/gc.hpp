#pragma once
// Garbage collection of a hub's blobs (`airlock-hub gc`, docs/hub.md): removes the blob files
// that no repository links and the upload sessions idle for too long, while hubs may be serving
// the same data directory.
//
// Where the garbage comes from: a hub killed between publishing a blob and writing its link, a
// failed removal after the last unlink, and a data directory of one of several hubs sharing a
// PostgreSQL database (one hub's DELETE removes only its own copy). Manifests are not blobs: their
// bytes live in the database. A blob that a manifest references but no repository links any more
// (an administrator's DELETE) is garbage too: the hub no longer serves it.
//
// How a removal stays safe beside a serving hub is store::BlobCollector's business; this adds the
// policy (grace period, dry run) and the tally.

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/result.hpp"
#include "core/time.hpp"
#include "hub/config.hpp"
#include "store/blob_store.hpp"
#include "store/metadata_store.hpp"

namespace airlock::hub {

struct GcOptions {
  // Files that changed less than this long ago are kept, linked or not: a blob is published a
  // moment before its link is written.
  std::chrono::seconds grace = std::chrono::hours(1);
  // Upload sessions whose data did not change for this long are removed: a hub killed while
  // other hubs kept the data directory open leaves its sessions (a hub that starts alone removes
  // every session instead), and clients abandon uploads.
  std::chrono::seconds upload_idle = std::chrono::hours(24);
  bool dry_run = false;  // report what would go, change nothing
};

struct GcReport {
  std::vector<store::StoredBlob> removed;  // in digest order; "would be removed" in a dry run
  std::uint64_t removed_bytes = 0;
  std::size_t linked = 0;  // blobs kept because a repository links them
  // Blobs kept because they changed within the grace period; their links are not looked up.
  std::size_t young = 0;
  // Bytes of an earlier, interrupted collection deleted first (not in a dry run).
  std::uint64_t recovered_bytes = 0;
  // Upload sessions removed (or that would be) for being idle longer than upload_idle.
  std::size_t idle_uploads = 0;
  std::uint64_t idle_upload_bytes = 0;
};

// One pass over the store. now is the time the grace period is counted back from. Stops at the
// first error (of the database or the disk); what was removed until then stays removed.
[[nodiscard]] Result<GcReport> CollectGarbage(store::BlobCollector& blobs,
                                              store::MetadataStore& metadata,
                                              const GcOptions& options, TimePoint now);

}  // namespace airlock::hub
