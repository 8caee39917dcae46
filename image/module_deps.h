// A kernel's module dependency graph (modules.dep, modules.builtin), the order in
// which the guest agent must load a set of modules, and the guest's module list.
#pragma once

#include "common/result.h"

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace kiln::image {

/// Parsed modules.dep: each module's relative path and the paths it depends on,
/// in the file's order (depmod lists them so that the last one is loaded first).
struct ModuleDepTable {
  /// Module relative path ("kernel/drivers/virtio/virtio.ko") -> its dependency paths.
  std::unordered_map<std::string, std::vector<std::string>> deps;
  /// Normalised module name ("virtio_mmio") -> its relative path.
  std::unordered_map<std::string, std::string> path_by_name;
  /// Lines that were neither blank, a comment, nor a valid entry (a hostile or
  /// corrupt file). Reported, not fatal: the modules kiln wants may still resolve.
  size_t skipped_lines = 0;
};

/// "kernel/drivers/char/virtio-console.ko.zst" or "virtio-console" -> "virtio_console":
/// basename, module suffix stripped, '-' folded to '_' (the kernel treats them alike).
std::string normalize_module_name(std::string_view name_or_path);

/// Is `path` a plausible modules.dep path: relative, no "..", no whitespace,
/// ending in .ko, .ko.xz, .ko.zst or .ko.gz? (It is later joined to a directory.)
bool is_valid_module_path(std::string_view path);

/// Parse the text of modules.dep. Never fails: invalid lines are counted and skipped.
ModuleDepTable parse_modules_dep(std::string_view text);

/// Parse modules.builtin (one module path per line) into normalised names.
std::unordered_set<std::string> parse_modules_builtin(std::string_view text);

/// The relative paths to load for `wanted` (names or paths), dependencies first,
/// each once; modules in `builtin` are skipped. A dependency cycle (only a corrupt
/// file has one) is broken rather than followed. `where` names the kernel in errors.
Result<std::vector<std::string>> resolve_load_order(const ModuleDepTable& table,
                                                    const std::unordered_set<std::string>& builtin,
                                                    const std::vector<std::string>& wanted, std::string_view where);

/// Read `modules_dir`/modules.dep (required) and modules.builtin (optional) and
/// resolve the load order of `wanted`. `modules_dir` is a lib/modules/<version> directory.
Result<std::vector<std::string>> module_load_order(const std::filesystem::path& modules_dir,
                                                   const std::vector<std::string>& wanted);

/// A kernel module every kiln guest loads at boot.
struct GuestModule {
  std::string_view name;     ///< normalised module name
  std::string_view purpose;  ///< what the guest gets from it (named when an optional one is missing)
  bool required;             ///< without it no guest runs; an optional one is left out with a warning
};

/// The guest's modules: the one list. The initramfs ships them (in load order,
/// guest_module_load_order()) and the agent loads what /kiln/modules lists.
inline constexpr GuestModule kGuestModules[] = {
    {"virtio_mmio", "the transport of every virtio device", true},
    {"virtio_console", "the agent's channel to the host", true},
    {"virtio_blk", "the engines' disks (vmm::DiskSpec)", true},
    {"dummy", "a non-loopback address, without which getaddrinfo(AI_ADDRCONFIG) finds no localhost", false},
    {"fuse", "tree shares: the host's trees, read on demand through the share port (agent/share_mount)", false},
    {"overlay", "tree shares and OCI images: the guest-only layer that takes the guest's writes", false},
    {"squashfs", "OCI images: the image's read-only root filesystem (agent/image_root)", false},
};

/// The load order of kGuestModules for the kernel whose lib/modules/<version> is
/// `modules_dir`: an error if it lacks a required one, a warning for an optional one.
Result<std::vector<std::string>> guest_module_load_order(const std::filesystem::path& modules_dir);

}  // namespace kiln::image
