#include "hub/gc.hpp"

namespace airlock::hub {

Result<GcReport> CollectGarbage(store::BlobCollector& blobs, store::MetadataStore& metadata,
                                const GcOptions& options, TimePoint now) {
  GcReport report;
  auto is_linked = [&metadata](const Digest& d) { return metadata.IsBlobLinked(d); };
  if (!options.dry_run) {
    AIRLOCK_ASSIGN_OR_RETURN(report.recovered_bytes, blobs.RecoverInterrupted(is_linked));
  }
  AIRLOCK_ASSIGN_OR_RETURN(store::BlobCollector::IdleUploads idle,
                           blobs.RemoveIdleUploads(now - options.upload_idle, options.dry_run));
  report.idle_uploads = idle.sessions;
  report.idle_upload_bytes = idle.bytes;
  const TimePoint cutoff = now - options.grace;
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<store::StoredBlob> stored, blobs.List());
  for (const auto& blob : stored) {
    store::Collected outcome;
    if (options.dry_run) {
      if (blob.changed > cutoff) {
        outcome = store::Collected::kYoung;
      } else {
        AIRLOCK_ASSIGN_OR_RETURN(bool linked, metadata.IsBlobLinked(blob.digest));
        outcome = linked ? store::Collected::kLinked : store::Collected::kRemoved;
      }
    } else {
      AIRLOCK_ASSIGN_OR_RETURN(outcome,
                               WithContext(blobs.RemoveIfUnlinked(blob.digest, cutoff, is_linked),
                                           "while collecting " + blob.digest.ToString()));
    }
    switch (outcome) {
      case store::Collected::kRemoved:
        report.removed.push_back(blob);
        report.removed_bytes += blob.size;
        break;
      case store::Collected::kYoung:
        ++report.young;
        break;
      case store::Collected::kLinked:
        ++report.linked;
        break;
      case store::Collected::kGone:
        break;
    }
  }
  return report;
}

}  // namespace airlock::hub
