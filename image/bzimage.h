// Reading the x86 boot-protocol setup header of a Linux bzImage: the one parser of
// it in kiln (the kernel release for the module tree, and the kvm engine's loader).
#pragma once

#include "common/result.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::image {

/// Bytes of a bzImage that hold the whole setup header (0x1F1 to kernel_info_offset, protocol 2.15).
inline constexpr size_t kSetupHeaderEnd = 0x26C;

/// The setup-header fields kiln uses (Documentation/arch/x86/boot.rst). Only the
/// boot flag and the "HdrS" magic are checked by the parser: fields newer than the
/// file's `protocol` read as whatever the file holds there, so a user checks
/// `protocol` before trusting them, and bounds every offset against the file.
struct SetupHeader {
  uint64_t setup_bytes = 0;      ///< real-mode part: (setup_sects, 0 meaning 4, + 1) * 512
  uint16_t protocol = 0;         ///< boot protocol version (0x020f = 2.15)
  uint16_t kernel_version = 0;   ///< version string at 0x200 + this; 0: none recorded
  uint8_t loadflags = 0;         ///< bit 0 LOADED_HIGH: protected-mode code at 1 MiB
  uint32_t initrd_addr_max = 0;  ///< highest address the initramfs may end at (2.03)
  uint16_t xloadflags = 0;       ///< bit 0 XLF_KERNEL_64: 64-bit entry at +0x200 (2.12)
  uint32_t cmdline_size = 0;     ///< longest command line the kernel takes, without NUL (2.06)
  uint32_t init_size = 0;        ///< memory the kernel needs from its load address to boot (2.10)
};

/// Parse the setup header at the start of `bytes` (a whole bzImage, or at least its
/// first kSetupHeaderEnd bytes). `what` names the file in errors, which say
/// "<what> is not a Linux bzImage" when the boot flag or "HdrS" is missing.
Result<SetupHeader> parse_setup_header(std::string_view bytes, std::string_view what);

/// The kernel release ("6.1.0-28-cloud-amd64") from a bzImage's setup header:
/// the first word of the string that the `kernel_version` field (offset 0x20E)
/// points to (at 0x200 + value). `bytes` is the file's beginning; `what` names
/// it in errors.
Result<std::string> bzimage_version_from_bytes(std::string_view bytes, std::string_view what);

/// Check that `path` is a Linux bzImage (a regular file with a setup header).
Result<void> check_bzimage(const std::filesystem::path& path);

/// The kernel release of the bzImage at `path` (reads at most ~66 KB).
Result<std::string> bzimage_version(const std::filesystem::path& path);

}  // namespace kiln::image
