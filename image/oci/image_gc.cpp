#include "image/oci/image_gc.h"

#include "common/sha256.h"
#include "image/oci/blob_store.h"
#include "image/oci/reference.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::image {
namespace {

// Blobs no pin references. A damaged pin could reference any blob: then nothing is swept.
Result<void> sweep_blobs(const BlobStore& store, bool dry_run, ImageGcReport& report) {
  std::set<std::string> referenced;
  for (const auto& listed : PinStore(store.root()).list()) {
    if (!listed.pin) {
      report.kept.push_back({listed.file.string(), "damaged pin (" + listed.error + "): no blob removed"});
      return {};
    }
    for (const auto& b : listed.pin->blobs()) referenced.insert(b.digest);
  }
  for (const auto& digest : store.list()) {
    if (referenced.count(digest)) continue;
    uint64_t bytes = store.size_of(digest);
    if (!dry_run) KILN_TRY(store.remove(digest));
    report.removed.push_back({digest, "blob no image uses", bytes});
    report.bytes_freed += bytes;
  }
  return {};
}

}  // namespace

std::vector<Pin> find_pins(const std::filesystem::path& root, const std::string& name) {
  std::string canonical = name;
  if (auto ref = parse_reference(name)) canonical = ref->canonical();
  std::vector<Pin> out;
  for (auto& listed : PinStore(root).list()) {
    if (!listed.pin) continue;
    const Pin& p = *listed.pin;
    bool by_digest = is_sha256_digest(name) && (p.manifest_digest == name || p.top_digest == name);
    if (by_digest || p.canonical == canonical || p.canonical == name) out.push_back(std::move(*listed.pin));
  }
  return out;
}

uint64_t pin_bytes(const std::filesystem::path& root, const Pin& pin) {
  BlobStore store(root);
  uint64_t total = 0;
  for (const auto& b : pin.blobs()) total += store.size_of(b.digest);
  return total;
}

Result<ImageGcReport> remove_pins(const std::filesystem::path& root, const std::vector<Pin>& pins) {
  BlobStore store(root);
  KILN_ASSIGN_OR_RETURN(UniqueFd lock, store.lock(/*exclusive=*/true));
  ImageGcReport report;
  PinStore pin_store(root);
  for (const auto& p : pins) {
    KILN_ASSIGN_OR_RETURN(bool removed, pin_store.remove(p.canonical));
    if (removed) report.removed.push_back({p.canonical, "removed", 0});
  }
  KILN_TRY(sweep_blobs(store, /*dry_run=*/false, report));
  return report;
}

Result<ImageGcReport> gc_images(const std::filesystem::path& root, const std::set<std::string>& in_use, bool dry_run) {
  BlobStore store(root);
  ImageGcReport report;
  std::error_code ec;
  if (!std::filesystem::exists(root, ec)) return report;
  KILN_ASSIGN_OR_RETURN(UniqueFd lock, store.lock(/*exclusive=*/true));
  PinStore pins(root);
  for (const auto& listed : pins.list()) {
    if (!listed.pin) continue;
    const Pin& p = *listed.pin;
    if (in_use.count(p.manifest_digest)) {
      report.kept.push_back({p.canonical, "a snapshot uses this image", 0});
      continue;
    }
    if (p.replaced_by.empty()) continue;
    if (!dry_run) KILN_TRY(pins.remove(p.canonical));
    report.removed.push_back({p.canonical, "replaced by " + p.replaced_by + ", no snapshot uses it", 0});
  }
  if (dry_run) {  // what a real run would sweep: blobs of no pin but those listed as removed
    std::set<std::string> going;
    for (const auto& item : report.removed) going.insert(item.name);
    std::set<std::string> referenced;
    for (const auto& listed : pins.list())
      if (listed.pin && !going.count(listed.pin->canonical))
        for (const auto& b : listed.pin->blobs()) referenced.insert(b.digest);
    for (const auto& digest : store.list())
      if (!referenced.count(digest)) {
        report.removed.push_back({digest, "blob no image uses", store.size_of(digest)});
        report.bytes_freed += store.size_of(digest);
      }
  } else {
    KILN_TRY(sweep_blobs(store, false, report));
  }
  for (const auto& path : store.leftovers(std::chrono::hours(1))) {
    std::error_code sec;
    uint64_t bytes = std::filesystem::file_size(path, sec);
    if (!dry_run && ::unlink(path.c_str()) != 0 && errno != ENOENT)
      return make_error("cannot remove {}: {}", path.string(), std::strerror(errno));
    report.removed.push_back({path.filename().string(), "left by an interrupted pull", sec ? 0 : bytes});
    report.bytes_freed += sec ? 0 : bytes;
  }
  return report;
}

}  // namespace kiln::image
