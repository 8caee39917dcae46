// The guest's initramfs: the agent as /init, a minimal merged-/usr tree with the
// system files programs expect (/etc/hosts, passwd, nsswitch.conf, UTC localtime...),
// the kernel modules the agent loads, and optionally a static busybox. Cached by content digest.
#pragma once

#include "common/result.h"
#include "image/guest_kernel.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::image {

/// Bumped whenever the initramfs layout changes, so old cached archives are not reused.
inline constexpr int kInitramfsFormatVersion = 2;

/// Everything an initramfs is built from.
struct InitramfsInputs {
  std::filesystem::path agent;                   ///< static kiln-agent, becomes /init
  std::optional<std::filesystem::path> busybox;  ///< static busybox; skipped (with a warning) if dynamic
  GuestKernel kernel;
  /// Paths relative to kernel.modules_dir, in load order (guest_module_load_order()).
  std::vector<std::string> modules;
  std::filesystem::path cache_dir;  ///< kiln's cache root; archives go to <cache_dir>/initramfs/
};

/// A built (or cached) initramfs.
struct Initramfs {
  std::filesystem::path file;  ///< <cache_dir>/initramfs/<digest>.cpio, uncompressed newc
  std::string digest;          ///< over every input (a snapshot key component)
};

/// Build the initramfs, or return the cached one with the same digest. The digest
/// covers the layout, the format version, the kernel version and the content of
/// every file, so a cache hit costs hashing those files (a few ms) and no subprocess.
Result<Initramfs> build_initramfs(const InitramfsInputs& inputs);

}  // namespace kiln::image
