// The Linux x86 boot protocol, loader side: validate a bzImage's setup header
// (the kernel is a file on disk: every field is checked before use) and place
// the protected-mode kernel, the initramfs, the command line and the zero page
// (boot_params with an e820 map) in guest RAM for a 64-bit entry.
#pragma once

#include "common/result.h"
#include "image/bzimage.h"
#include "vmm/kvm/guest_memory.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::vmm::kvm {

/// Where things go in guest RAM (below 1 MiB: the classic PC layout).
namespace boot_layout {
inline constexpr uint64_t kZeroPage = 0x7000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;
inline constexpr uint64_t kCmdline = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kEbdaStart = 0x9fc00;  ///< RAM below this is usable; 640K-1M is the legacy hole
inline constexpr uint64_t kKernelLoad = 0x100000;
}  // namespace boot_layout

/// A kernel the loader can boot: the file and its setup header (parsed by
/// image::parse_setup_header, the one parser of it), checked for a 64-bit entry.
struct BzImage {
  std::string data;            ///< the whole file
  image::SetupHeader header;   ///< its fields checked against `data` by parse_bzimage
  uint64_t kernel_bytes() const { return data.size() - header.setup_bytes; }
};

/// Parse a bzImage held in memory and check what this loader needs (protocol >= 2.12,
/// LOADED_HIGH, XLF_KERNEL_64, setup and init sizes that fit the file). Errors name the field.
Result<BzImage> parse_bzimage(std::string data);
/// Read and parse a bzImage file.
Result<BzImage> load_bzimage(const std::filesystem::path& path);

/// Load kernel, initramfs and `cmdline` into `memory` and write the zero page.
/// Returns the 64-bit entry point. `memory` must be zeroed (a fresh file).
Result<uint64_t> load_linux(const BzImage& kernel, const std::filesystem::path& initramfs, std::string_view cmdline,
                            GuestMemory& memory);

/// Tell the kernel where the ACPI RSDP is (boot_params.acpi_rsdp_addr, protocol 2.14).
Result<void> set_acpi_rsdp(GuestMemory& memory, uint64_t rsdp);

}  // namespace kiln::vmm::kvm
