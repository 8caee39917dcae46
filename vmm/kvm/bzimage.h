// The Linux x86 boot protocol, loader side: validate a bzImage's setup header
// (the kernel is a file on disk: every field is checked before use) and place
// the protected-mode kernel, the initramfs, the command line and the zero page
// (boot_params with an e820 map) in guest RAM for a 64-bit entry.
#pragma once

#include "common/result.h"
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

/// What the loader learnt from the setup header.
struct BzImage {
  std::string data;            ///< the whole file
  uint64_t setup_bytes = 0;    ///< real-mode part: (setup_sects + 1) * 512
  uint16_t version = 0;        ///< boot protocol version (0x020f = 2.15)
  uint32_t init_size = 0;      ///< memory the kernel needs from its load address while booting
  uint32_t initrd_addr_max = 0;
  uint32_t cmdline_size = 0;   ///< longest command line the kernel accepts (without NUL)
  uint64_t kernel_bytes() const { return data.size() - setup_bytes; }
};

/// Parse a bzImage held in memory (fuzzable). Errors name the field.
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
