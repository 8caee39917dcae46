#include "image/bzimage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace kiln::image {
namespace {

// Setup-header offsets from Documentation/arch/x86/boot.rst.
constexpr size_t kSetupSects = 0x1F1;       // u8
constexpr size_t kBootFlag = 0x1FE;         // u16, 0xAA55
constexpr size_t kHeaderMagic = 0x202;      // "HdrS"
constexpr size_t kProtocol = 0x206;         // u16
constexpr size_t kVersionPtr = 0x20E;       // u16, string at 0x200 + value
constexpr size_t kLoadflags = 0x211;        // u8
constexpr size_t kInitrdAddrMax = 0x22C;    // u32
constexpr size_t kXloadflags = 0x236;       // u16
constexpr size_t kCmdlineSize = 0x238;      // u32
constexpr size_t kInitSize = 0x260;         // u32
constexpr size_t kVersionBase = 0x200;
constexpr size_t kMaxVersionLen = 256;
// Enough to cover any kernel_version pointer (u16) plus its string.
constexpr size_t kHeadBytes = kVersionBase + 0xFFFF + kMaxVersionLen;
static_assert(kInitSize + 4 <= kSetupHeaderEnd);

// Little-endian field of `n` bytes at `at`; the caller has checked the size.
uint32_t field(std::string_view bytes, size_t at, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint32_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
  return v;
}

Result<std::string> read_head(const std::filesystem::path& path, size_t max) {
  // O_NONBLOCK: a FIFO in place of the kernel must give an error, not a hang.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return make_error("cannot open kernel {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error("{} is not a Linux bzImage (not a regular file)", path.string());
  }
  std::string buf(max, '\0');
  size_t done = 0;
  while (done < max) {
    ssize_t n = ::read(fd, buf.data() + done, max - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return make_error("cannot read kernel {}: {}", path.string(), std::strerror(e));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  buf.resize(done);
  return buf;
}

}  // namespace

Result<SetupHeader> parse_setup_header(std::string_view bytes, std::string_view what) {
  const bool magic = bytes.size() >= kHeaderMagic + 4 && field(bytes, kBootFlag, 2) == 0xAA55 &&
                     bytes.substr(kHeaderMagic, 4) == "HdrS";
  if (!magic)
    return make_error("{} is not a Linux bzImage (no boot flag and \"HdrS\" setup header); pass a bzImage such as "
                      "/boot/vmlinuz-<version>",
                      what);
  if (bytes.size() < kSetupHeaderEnd)
    return make_error("{} is a truncated bzImage ({} bytes, the setup header alone is {})", what, bytes.size(),
                      kSetupHeaderEnd);
  SetupHeader h;
  const uint32_t sects = field(bytes, kSetupSects, 1);
  h.setup_bytes = (uint64_t{sects == 0 ? 4u : sects} + 1) * 512;
  h.protocol = static_cast<uint16_t>(field(bytes, kProtocol, 2));
  h.kernel_version = static_cast<uint16_t>(field(bytes, kVersionPtr, 2));
  h.loadflags = static_cast<uint8_t>(field(bytes, kLoadflags, 1));
  h.initrd_addr_max = field(bytes, kInitrdAddrMax, 4);
  h.xloadflags = static_cast<uint16_t>(field(bytes, kXloadflags, 2));
  h.cmdline_size = field(bytes, kCmdlineSize, 4);
  h.init_size = field(bytes, kInitSize, 4);
  return h;
}

Result<std::string> bzimage_version_from_bytes(std::string_view bytes, std::string_view what) {
  KILN_ASSIGN_OR_RETURN(SetupHeader h, parse_setup_header(bytes, what));
  if (h.kernel_version == 0)
    return make_error("{} does not record its kernel version (kernel_version is 0); pass --modules explicitly", what);
  size_t start = kVersionBase + h.kernel_version;
  if (start >= bytes.size())
    return make_error("{}: kernel_version points past the end of the file ({:#x}); the bzImage is malformed", what,
                      start);
  std::string_view s = bytes.substr(start, kMaxVersionLen);
  size_t end = s.find('\0');
  if (end == std::string_view::npos)
    return make_error("{}: kernel version string at {:#x} is not terminated within {} bytes", what, start,
                      kMaxVersionLen);
  s = s.substr(0, end);
  // "6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP ..." -> the release.
  size_t space = s.find(' ');
  std::string_view release = s.substr(0, space);
  if (release.empty()) return make_error("{}: the kernel version string is empty", what);
  for (char c : release) {
    // The release becomes a path component (lib/modules/<release>): keep it tame.
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
              c == '-' || c == '_' || c == '+' || c == '~';
    if (!ok) return make_error("{}: the kernel version '{}' contains unexpected characters", what, std::string(s));
  }
  if (release == "." || release == "..") return make_error("{}: the kernel version is '{}'", what, release);
  return std::string(release);
}

Result<void> check_bzimage(const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(std::string head, read_head(path, kSetupHeaderEnd));
  KILN_TRY(parse_setup_header(head, path.string()));
  return {};
}

Result<std::string> bzimage_version(const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(std::string head, read_head(path, kHeadBytes));
  return bzimage_version_from_bytes(head, path.string());
}

}  // namespace kiln::image
