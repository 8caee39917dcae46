// A read-only squashfs disk image made from a tar stream by tar2sqfs (squashfs-tools-ng):
// owners, modes, times, xattrs and hard links go from the tar headers straight into the
// image, so nothing is unpacked and no privilege is needed (docs/images.md, "Root
// filesystem", says why this and not ext4 or erofs).
#pragma once

#include "common/result.h"
#include "image/rootfs/flatten.h"

#include <filesystem>
#include <functional>
#include <string>

namespace kiln::rootfs {

/// The squashfs compressors the guest kernel (Debian's cloud kernel) reads.
bool is_guest_compressor(const std::string& name);

/// Run tar2sqfs writing a temp file beside `disk` (common/temp_file.h), feed it the
/// tar archive `produce` writes into its sink, and rename the image onto `disk` only
/// when both succeeded. On any failure nothing is left beside `disk`, and the error
/// carries tar2sqfs's own message.
Result<void> write_squashfs_disk(const std::filesystem::path& disk, const std::string& compressor,
                                 const std::function<Result<void>(const TarSink&)>& produce);

}  // namespace kiln::rootfs
