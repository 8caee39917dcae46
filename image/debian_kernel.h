// Fetching Debian's cloud kernel into kiln's cache with apt-get, dpkg-deb and depmod.
#pragma once

#include "common/result.h"
#include "image/guest_kernel.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::image {

/// The name of the marker file written last into a complete cached kernel directory.
inline constexpr const char* kKernelCompleteMarker = "kiln-kernel.complete";

/// From `apt-cache depends linux-image-cloud-amd64` output, the concrete package
/// ("linux-image-6.1.0-28-cloud-amd64"), or nullopt if there is none.
std::optional<std::string> parse_apt_cache_depends(std::string_view output);

/// Download, unpack and depmod the current Debian cloud kernel into
/// `kernels_dir`/<version>/{boot/vmlinuz-<version>,lib/modules/<version>}, under a
/// lock on `kernels_dir`/.lock. If another process finished a fetch while we waited
/// for the lock, its kernel is returned without fetching again.
Result<GuestKernel> fetch_debian_kernel(const std::filesystem::path& kernels_dir,
                                        const std::function<void(const std::string&)>& progress);

}  // namespace kiln::image
