#include "share/dir_listing.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

namespace kiln::share {

namespace {

/// The bytes of a dirent record with a `name_size`-byte name (FUSE_DIRENT_SIZE).
size_t record_size(size_t name_size) {
  const size_t unpadded = offsetof(fuse_dirent, name) + name_size;
  return (unpadded + sizeof(uint64_t) - 1) & ~(sizeof(uint64_t) - 1);
}

/// Append one record to `out` if it fits in `size` bytes in all; false if it does not.
bool append_record(std::string& out, size_t size, uint64_t ino, uint64_t off, uint32_t type,
                   std::string_view name) {
  const size_t record = record_size(name.size());
  if (out.size() + record > size) return false;
  fuse_dirent d{};
  d.ino = ino;
  d.off = off;
  d.namelen = static_cast<uint32_t>(name.size());
  d.type = type;
  const size_t at = out.size();
  out.resize(at + record, '\0');
  std::memcpy(out.data() + at, &d, offsetof(fuse_dirent, name));
  std::memcpy(out.data() + at + offsetof(fuse_dirent, name), name.data(), name.size());
  return true;
}

/// The DT_* type of `name` in `dir_fd`: the one getdents reported, or (DT_UNKNOWN, on
/// file systems that do not fill it in) from its lstat. DT_UNKNOWN if it is gone.
unsigned char entry_type(int dir_fd, const char* name, unsigned char reported) {
  if (reported != DT_UNKNOWN) return reported;
  struct stat st {};
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return DT_UNKNOWN;
  return static_cast<unsigned char>(IFTODT(st.st_mode));
}

constexpr size_t kGetdentsBuffer = 32 * 1024;

}  // namespace

ErrnoOr<std::string> list_host_directory(int dir_fd, uint64_t offset, size_t size) {
  if (offset > static_cast<uint64_t>(INT64_MAX)) return Errno{EINVAL};
  if (::lseek(dir_fd, static_cast<off_t>(offset), SEEK_SET) < 0) return Errno{errno};
  std::string out;
  std::vector<char> buf(kGetdentsBuffer);
  for (;;) {
    const ssize_t got = ::getdents64(dir_fd, buf.data(), buf.size());
    if (got < 0) {
      if (out.empty()) return Errno{errno};
      return out;  // what was listed so far; the next READDIR starts after it and sees the error
    }
    if (got == 0) return out;
    size_t pos = 0;
    while (pos + offsetof(dirent64, d_name) < static_cast<size_t>(got)) {
      dirent64 d;
      std::memcpy(&d, buf.data() + pos, offsetof(dirent64, d_name));
      if (d.d_reclen <= offsetof(dirent64, d_name) || pos + d.d_reclen > static_cast<size_t>(got)) {
        return Errno{EIO};  // the host kernel's records are malformed: nothing to trust
      }
      const char* name = buf.data() + pos + offsetof(dirent64, d_name);
      const size_t name_size = ::strnlen(name, d.d_reclen - offsetof(dirent64, d_name));
      pos += d.d_reclen;
      const unsigned char type = entry_type(dir_fd, name, d.d_type);
      if (!visible_type(DTTOIF(type))) continue;
      if (!append_record(out, size, d.d_ino, static_cast<uint64_t>(d.d_off), type, {name, name_size})) return out;
    }
  }
}

std::string list_virtual_root(const ShareTree& tree, uint64_t offset, size_t size) {
  std::string out;
  const uint64_t count = tree.root_count() + 2;
  for (uint64_t i = offset; i < count; ++i) {
    const std::string name = i == 0 ? "." : i == 1 ? ".." : std::to_string(i - 2);
    const uint64_t ino = i < 2 ? kRootNodeId : tree.root_ino(i - 2);
    if (!append_record(out, size, ino, i + 1, DT_DIR, name)) break;
  }
  return out;
}

}  // namespace kiln::share
