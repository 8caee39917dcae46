// Reading the x86 boot-protocol setup header of a Linux bzImage.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::image {

/// The kernel release ("6.1.0-28-cloud-amd64") from a bzImage's setup header:
/// the first word of the string that the `kernel_version` field (offset 0x20E)
/// points to (at 0x200 + value). `bytes` is the file's beginning; `what` names
/// it in errors. Fails with "<what> is not a Linux bzImage" without the "HdrS" magic.
Result<std::string> bzimage_version_from_bytes(std::string_view bytes, std::string_view what);

/// Check that `path` is a Linux bzImage (regular file, "HdrS" at 0x202).
Result<void> check_bzimage(const std::filesystem::path& path);

/// The kernel release of the bzImage at `path` (reads at most ~66 KB).
Result<std::string> bzimage_version(const std::filesystem::path& path);

}  // namespace kiln::image
