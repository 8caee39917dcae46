// Which Linux kernel the guest boots, and the modules directory that belongs to it.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace kiln::image {

/// A guest kernel: a bzImage plus its lib/modules/<version> directory (with modules.dep).
struct GuestKernel {
  std::filesystem::path kernel;       ///< the bzImage, absolute
  std::filesystem::path modules_dir;  ///< lib/modules/<version>, holding modules.dep
  std::string version;                ///< kernel release, e.g. "6.1.0-28-cloud-amd64"
};

/// How to choose the guest kernel (the `--kernel`/`--modules` options).
struct KernelOptions {
  /// A bzImage to boot instead of the cached Debian kernel.
  std::filesystem::path kernel;
  /// Its lib/modules/<version> directory; defaults to /lib/modules/<version of kernel>.
  std::filesystem::path modules;
  /// Told about slow steps (a first-use download); may be empty.
  std::function<void(const std::string&)> progress;
};

/// The directory holding kiln's unpacked kernels: cache_root()/kernels.
std::filesystem::path kernel_cache_dir();

/// The newest complete kernel under `kernels_dir` (one whose completion marker,
/// written last, is present), or nullopt. Cheap: a directory listing and a few
/// stats, no subprocess — it runs on every `kiln run`.
std::optional<GuestKernel> find_cached_kernel(const std::filesystem::path& kernels_dir);

/// Resolve the guest kernel. With `options.kernel` set, validate and use it.
/// Otherwise use the cached kernel, fetching Debian's linux-image-cloud-amd64
/// into kernel_cache_dir() first if none is cached (once, even with concurrent kilns).
Result<GuestKernel> resolve_guest_kernel(const KernelOptions& options);

}  // namespace kiln::image
