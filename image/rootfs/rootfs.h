// An OCI image's root filesystem as one read-only disk: the layers flattened (OCI
// whiteouts applied, owners, modes, xattrs, symlinks and hard links kept) into a
// squashfs image, without unpacking anything or needing privilege. Written once per
// image digest by the caller; docs/images.md ("Root filesystem") has the measurements
// behind the format.
#pragma once

#include "common/result.h"
#include "image/oci/image.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace kiln::rootfs {

/// The default budget: file data of the flattened tree, before compression. A Debian
/// root with PostgreSQL 15 is ~250 MiB; 8 GiB leaves room for big images while
/// refusing a runaway layer before it fills the cache disk.
inline constexpr uint64_t kDefaultMaxRootfsBytes = 8ull << 30;

struct RootfsOptions {
  uint64_t max_bytes = kDefaultMaxRootfsBytes;  ///< refuse an image whose file data exceeds this
  std::string compressor = "zstd";              ///< zstd (level 6), xz, lz4 or gzip: what the guest kernel reads
  std::function<void(const std::string&)> progress;  ///< notes for the user (may be empty)
};

struct RootfsStats {
  uint64_t files = 0;            ///< regular files (inodes)
  uint64_t dirs = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;        ///< names beyond an inode's first
  uint64_t skipped_devices = 0;  ///< device nodes, fifos and sockets left out
  uint64_t bytes_in = 0;         ///< file data of the flattened tree (uncompressed)
  uint64_t disk_bytes = 0;       ///< size of the squashfs image written
  double seconds = 0;            ///< wall time of both passes and tar2sqfs
};

/// Flatten `layers` (bottom first) into a squashfs image at `disk`: written to a temp
/// file beside it and renamed into place only when complete, so `disk` is either the
/// whole image or untouched. Errors name the layer and member that was refused.
Result<RootfsStats> write_rootfs_disk(const std::vector<image::LayerBlob>& layers, const std::filesystem::path& disk,
                                      const RootfsOptions& options);

}  // namespace kiln::rootfs
