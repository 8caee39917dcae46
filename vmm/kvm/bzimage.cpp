#include "vmm/kvm/bzimage.h"

#include "common/unique_fd.h"

#include <asm/bootparam.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

namespace kiln::vmm::kvm {
namespace {

namespace bl = boot_layout;

constexpr size_t kHeaderOffset = 0x1f1;
constexpr uint16_t kMinVersion = 0x020c;         // 2.12: xloadflags, 64-bit entry
constexpr uint8_t kLoadedHigh = 0x01;            // loadflags: protected-mode code at 1 MiB
constexpr uint16_t kXlfKernel64 = 0x01;          // xloadflags: has the 64-bit entry at +0x200
constexpr uint64_t kEntry64Offset = 0x200;
constexpr uint64_t kMaxKernelFile = 256ull << 20;
constexpr uint64_t kMaxInitramfs = 1ull << 30;
constexpr uint32_t kE820Ram = 1;

Result<std::string> read_bounded(const std::filesystem::path& path, uint64_t max, const char* what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {} {}: {}", what, path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error("{} {} is not a regular file", what, path.string());
  if (static_cast<uint64_t>(st.st_size) > max)
    return make_error("{} {} is {} bytes, more than the {} MiB kiln accepts", what, path.string(), st.st_size,
                      max >> 20);
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::pread(fd.get(), out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error("cannot read {} {}: {}", what, path.string(), n < 0 ? std::strerror(errno) : "short read");
    got += static_cast<size_t>(n);
  }
  return out;
}

}  // namespace

Result<BzImage> parse_bzimage(std::string data) {
  KILN_ASSIGN_OR_RETURN(image::SetupHeader hdr, image::parse_setup_header(data, "the kernel"));
  if (hdr.protocol < kMinVersion)
    return make_error("the kernel speaks boot protocol {}.{}; the kvm engine needs 2.12 or newer", hdr.protocol >> 8,
                      hdr.protocol & 0xff);
  if ((hdr.loadflags & kLoadedHigh) == 0) return make_error("the kernel is not a bzImage (zImage loads low)");
  if ((hdr.xloadflags & kXlfKernel64) == 0) return make_error("the kernel has no 64-bit entry point (XLF_KERNEL_64)");
  if (hdr.setup_bytes + kEntry64Offset >= data.size())
    return make_error("the kernel's setup header claims {} setup bytes but the file has only {}", hdr.setup_bytes,
                      data.size());
  BzImage k{std::move(data), hdr};
  if (hdr.init_size < k.kernel_bytes())
    return make_error("the kernel's init_size ({}) is smaller than its own code ({} bytes): corrupt header",
                      hdr.init_size, k.kernel_bytes());
  return k;
}

Result<BzImage> load_bzimage(const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(auto data, read_bounded(path, kMaxKernelFile, "guest kernel"));
  auto parsed = parse_bzimage(std::move(data));
  if (!parsed) return with_context(path.string(), parsed.error());
  return parsed;
}

Result<uint64_t> load_linux(const BzImage& kernel, const std::filesystem::path& initramfs, std::string_view cmdline,
                            GuestMemory& memory) {
  const uint64_t ram = memory.size();
  // The kernel decompresses itself in place from 1 MiB: it needs init_size there.
  if (bl::kKernelLoad + uint64_t{kernel.header.init_size} > ram)
    return make_error("the kernel needs {} MiB to boot; the guest has {} MiB",
                      (bl::kKernelLoad + kernel.header.init_size) >> 20, ram >> 20);
  if (!memory.write(bl::kKernelLoad, kernel.data.data() + kernel.header.setup_bytes, kernel.kernel_bytes()))
    return make_error("the kernel does not fit in guest RAM");

  if (cmdline.size() + 1 > bl::kCmdlineMax || cmdline.size() > kernel.header.cmdline_size)
    return make_error("the kernel command line is {} bytes; this kernel accepts at most {}", cmdline.size(),
                      std::min<uint64_t>(kernel.header.cmdline_size, bl::kCmdlineMax - 1));
  std::string terminated(cmdline);
  terminated.push_back('\0');
  if (!memory.write(bl::kCmdline, terminated.data(), terminated.size()))
    return make_error("guest RAM too small for the command line");

  KILN_ASSIGN_OR_RETURN(auto initrd, read_bounded(initramfs, kMaxInitramfs, "initramfs"));
  // As high as the kernel allows, page aligned, clear of the kernel's boot-time footprint.
  const uint64_t top = std::min<uint64_t>(ram, uint64_t{kernel.header.initrd_addr_max} + 1);
  const uint64_t kernel_end = bl::kKernelLoad + kernel.header.init_size;
  if (initrd.size() > top || ((top - initrd.size()) & ~(kPageSize - 1)) < kernel_end)
    return make_error("the initramfs ({} MiB) does not fit in guest RAM above the kernel: give the guest more memory",
                      initrd.size() >> 20);
  const uint64_t initrd_at = (top - initrd.size()) & ~(kPageSize - 1);
  if (!memory.write(initrd_at, initrd.data(), initrd.size())) return make_error("cannot place the initramfs");

  boot_params params{};
  // In bounds: parse_bzimage accepted the file, so it holds the whole setup header.
  static_assert(kHeaderOffset + sizeof params.hdr <= image::kSetupHeaderEnd);
  std::memcpy(&params.hdr, kernel.data.data() + kHeaderOffset, sizeof params.hdr);
  params.hdr.type_of_loader = 0xff;  // "undefined" loader
  params.hdr.cmd_line_ptr = static_cast<uint32_t>(bl::kCmdline);
  params.hdr.cmdline_size = static_cast<uint32_t>(cmdline.size());
  params.hdr.ramdisk_image = static_cast<uint32_t>(initrd_at);
  params.hdr.ramdisk_size = static_cast<uint32_t>(initrd.size());
  params.hdr.vid_mode = 0xffff;  // "normal": no video mode switch
  params.e820_table[0] = boot_e820_entry{0, bl::kEbdaStart, kE820Ram};
  params.e820_table[1] = boot_e820_entry{bl::kKernelLoad, ram - bl::kKernelLoad, kE820Ram};
  params.e820_entries = 2;
  if (!memory.write(bl::kZeroPage, &params, sizeof params)) return make_error("cannot write the zero page");
  return bl::kKernelLoad + kEntry64Offset;
}

Result<void> set_acpi_rsdp(GuestMemory& memory, uint64_t rsdp) {
  if (!memory.write(bl::kZeroPage + offsetof(boot_params, acpi_rsdp_addr), &rsdp, sizeof rsdp))
    return make_error("cannot write the zero page");
  return {};
}

}  // namespace kiln::vmm::kvm
