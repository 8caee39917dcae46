#include "runner/guest_image.h"

#include "common/fs.h"
#include "common/log.h"
#include "image/oci/pull.h"
#include "image/rootfs/rootfs.h"
#include "snapshot/lock.h"

namespace kiln::runner {
namespace {

std::filesystem::path disks_dir() { return fs::cache_root() / "images" / "disks"; }

// "sha256:<hex>" -> "<hex>.sqfs": one disk per image digest.
std::filesystem::path disk_path(const image::ResolvedImage& image) {
  std::string hex = image.manifest_digest.substr(image.manifest_digest.find(':') + 1);
  return disks_dir() / (hex + ".sqfs");
}

Result<void> write_disk_once(const image::ResolvedImage& image, const std::filesystem::path& disk,
                             Progress& progress) {
  std::error_code ec;
  std::filesystem::create_directories(disk.parent_path(), ec);
  if (ec) return make_error("cannot create {}: {}", disk.parent_path().string(), ec.message());
  auto lock_path = disk;
  lock_path += ".lock";
  KILN_ASSIGN_OR_RETURN(auto lock, snapshot::BakeLock::acquire(lock_path, [&] {
    progress.step("waiting for another kiln writing the root disk of " + image.reference);
  }));
  if (std::filesystem::exists(disk, ec)) return {};  // the other kiln wrote it
  progress.step("writing the root disk of " + image.reference);
  log::ScopedTimer timer("image root disk");
  rootfs::RootfsOptions options;
  options.progress = [&progress](const std::string& s) { progress.step(s); };
  auto stats = rootfs::write_rootfs_disk(image.layers, disk, options);
  if (!stats) return with_context("writing the root filesystem of " + image.reference, stats.error());
  log::verbose("image {}: root disk {} ({} files, {} MiB)", image.reference, disk.string(), stats->files,
               stats->disk_bytes >> 20);
  return {};
}

}  // namespace

bool is_default_image(const std::string& ref) { return ref.empty() || ref == "default"; }

Result<std::optional<GuestImage>> resolve_guest_image(const ImageOptions& options, Progress& progress) {
  if (is_default_image(options.ref)) return std::optional<GuestImage>();
  log::ScopedTimer timer("resolve image");
  image::PullOptions pull;
  pull.registry.insecure_hosts = options.insecure_registries;
  pull.registry.ca_bundle = options.registry_ca;
  pull.policy = options.pull;
  pull.progress = [&progress, &options](std::string_view what, uint64_t done, uint64_t total) {
    std::string line = fmt::format("pulling {}: {}", options.ref, what);
    if (total > 0) line += fmt::format(" {}%", done * 100 / total);
    progress.step(line);
  };
  auto resolved = image::resolve_image(options.ref, pull);
  // A missing image is kiln's error (exit 125), never the command's "not found" (127).
  if (!resolved) {
    const bool interrupted = resolved.error().kind == ErrorKind::interrupted;
    return Error{"image " + options.ref + ": " + resolved.error().message,
                 interrupted ? ErrorKind::interrupted : ErrorKind::general};
  }
  GuestImage guest{std::move(resolved).value(), {}};
  guest.disk = disk_path(guest.image);
  std::error_code ec;
  if (!std::filesystem::exists(guest.disk, ec)) KILN_TRY(write_disk_once(guest.image, guest.disk, progress));
  return std::optional<GuestImage>(std::move(guest));
}

void attach_image(const GuestImage& image, PreparedGuest& guest) {
  guest.spec.disks = {vmm::DiskSpec{image.disk, true}};
  guest.spec.cmdline += " ";
  guest.spec.cmdline += kImageCmdlineSwitch;
  guest.key.cmdline = guest.spec.cmdline;
  // Keyed by digest alone (the golden-base rule): two tags of one image share a golden.
  guest.key.image = image.image.manifest_digest;
  // The image's identity is its manifest digest; the initramfs (agent, modules) stays a key field of its own.
  guest.key.image_digest = image.image.manifest_digest;
}

}  // namespace kiln::runner
