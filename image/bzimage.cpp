#include "image/bzimage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace kiln::image {
namespace {

// Setup-header offsets from Documentation/x86/boot.rst.
constexpr size_t kHeaderMagicOffset = 0x202;  // "HdrS"
constexpr size_t kVersionPtrOffset = 0x20E;   // u16, string at 0x200 + value
constexpr size_t kVersionBase = 0x200;
constexpr size_t kMaxVersionLen = 256;
// Enough to cover any kernel_version pointer (u16) plus its string.
constexpr size_t kHeadBytes = kVersionBase + 0xFFFF + kMaxVersionLen;

bool has_magic(std::string_view bytes) {
  return bytes.size() >= kHeaderMagicOffset + 4 && bytes.substr(kHeaderMagicOffset, 4) == "HdrS";
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

Result<std::string> bzimage_version_from_bytes(std::string_view bytes, std::string_view what) {
  if (!has_magic(bytes))
    return make_error("{} is not a Linux bzImage (no \"HdrS\" boot header); pass a bzImage such as "
                      "/boot/vmlinuz-<version>",
                      what);
  if (bytes.size() < kVersionPtrOffset + 2) return make_error("{} is a truncated bzImage", what);
  uint16_t ptr = static_cast<uint16_t>(static_cast<unsigned char>(bytes[kVersionPtrOffset]) |
                                       (static_cast<unsigned char>(bytes[kVersionPtrOffset + 1]) << 8));
  if (ptr == 0)
    return make_error("{} does not record its kernel version (kernel_version is 0); pass --modules explicitly", what);
  size_t start = kVersionBase + ptr;
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
  KILN_ASSIGN_OR_RETURN(std::string head, read_head(path, kHeaderMagicOffset + 4));
  if (!has_magic(head))
    return make_error("{} is not a Linux bzImage (no \"HdrS\" boot header); pass a bzImage such as "
                      "/boot/vmlinuz-<version>",
                      path.string());
  return {};
}

Result<std::string> bzimage_version(const std::filesystem::path& path) {
  KILN_ASSIGN_OR_RETURN(std::string head, read_head(path, kHeadBytes));
  return bzimage_version_from_bytes(head, path.string());
}

}  // namespace kiln::image
