#include "snapshot/sparse_io.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::snapshot::sparse {

Result<std::vector<Range>> data_extents(int fd, uint64_t size, const std::filesystem::path& name) {
  std::vector<Range> out;
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      if (errno == EINVAL) return std::vector<Range>{{0, size}};  // no SEEK_DATA here: assume all data
      return make_error("cannot find the data in {}: {}", name.string(), std::strerror(errno));
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return make_error("cannot find the holes in {}: {}", name.string(), std::strerror(errno));
    uint64_t b = static_cast<uint64_t>(data), e = std::min(static_cast<uint64_t>(hole), size);
    if (b >= size) break;
    if (e > b) out.push_back({b, e});
    pos = e;
  }
  return out;
}

std::vector<Range> merge(std::vector<Range> ranges, uint64_t align) {
  for (auto& r : ranges) {
    r.begin -= r.begin % align;
    r.end += (align - r.end % align) % align;
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  std::vector<Range> out;
  for (const auto& r : ranges) {
    if (r.end <= r.begin) continue;
    if (!out.empty() && r.begin <= out.back().end)
      out.back().end = std::max(out.back().end, r.end);
    else
      out.push_back(r);
  }
  return out;
}

Result<void> read_exact(int fd, char* out, size_t len, uint64_t offset, const std::filesystem::path& name) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, out + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", name.string(), std::strerror(errno));
    if (n == 0) return make_error("{} ends at {:#x}, before the {:#x} bytes kiln needs (truncated)", name.string(),
                                  offset + done, offset + len);
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> write_exact(int fd, const char* data, size_t len, uint64_t offset, const std::filesystem::path& name) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pwrite(fd, data + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot write {}: {}", name.string(), std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return {};
}

Result<void> copy_range(int in, int out, Range r, const std::filesystem::path& name) {
  uint64_t pos = r.begin;
  while (pos < r.end) {
    loff_t from = static_cast<loff_t>(pos), to = static_cast<loff_t>(pos);
    ssize_t n = ::copy_file_range(in, &from, out, &to, r.end - pos, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) break;
    if (n < 0) return make_error("cannot copy {}: {}", name.string(), std::strerror(errno));
    if (n == 0) return make_error("{} ends at {:#x}, inside a data extent (truncated)", name.string(), pos);
    pos += static_cast<uint64_t>(n);
  }
  // Fallback for filesystems without copy_file_range between these files.
  std::vector<char> buf(1 << 20);
  while (pos < r.end) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(buf.size(), r.end - pos));
    KILN_TRY(read_exact(in, buf.data(), len, pos, name));
    KILN_TRY(write_exact(out, buf.data(), len, pos, name));
    pos += len;
  }
  return {};
}

Result<bool> clone_file(int in, int out, const std::filesystem::path& name) {
  if (::ioctl(out, FICLONE, in) == 0) return true;
  // No reflinks here: not supported (EOPNOTSUPP, ENOTTY, EINVAL), another mount (EXDEV).
  if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL || errno == EXDEV || errno == ENOSYS) return false;
  return make_error("cannot clone {}: {}", name.string(), std::strerror(errno));
}

Result<bool> clone_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t len,
                         const std::filesystem::path& name) {
  file_clone_range range{};
  range.src_fd = in;
  range.src_offset = in_offset;
  range.src_length = len;
  range.dest_offset = out_offset;
  if (::ioctl(out, FICLONERANGE, &range) == 0) return true;
  if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL || errno == EXDEV || errno == ENOSYS) return false;
  return make_error("cannot clone {:#x}+{:#x} of {}: {}", in_offset, len, name.string(), std::strerror(errno));
}

Result<uint64_t> owned_bytes(int fd, const std::filesystem::path& name) {
  constexpr size_t kBatch = 256;
  std::vector<char> buf(sizeof(struct fiemap) + kBatch * sizeof(struct fiemap_extent));
  auto* map = reinterpret_cast<struct fiemap*>(buf.data());
  uint64_t owned = 0, start = 0;
  for (;;) {
    std::memset(buf.data(), 0, buf.size());
    map->fm_start = start;
    map->fm_length = FIEMAP_MAX_OFFSET - start;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = kBatch;
    if (::ioctl(fd, FS_IOC_FIEMAP, map) != 0) {
      if (errno != EOPNOTSUPP && errno != ENOTTY)
        return make_error("cannot map the extents of {}: {}", name.string(), std::strerror(errno));
      struct stat st {};
      if (::fstat(fd, &st) != 0) return make_error("cannot stat {}: {}", name.string(), std::strerror(errno));
      return static_cast<uint64_t>(st.st_blocks) * 512;
    }
    if (map->fm_mapped_extents == 0) return owned;
    for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
      const auto& e = map->fm_extents[i];
      if (!(e.fe_flags & FIEMAP_EXTENT_SHARED)) owned += e.fe_length;
      start = e.fe_logical + e.fe_length;
      if (e.fe_flags & FIEMAP_EXTENT_LAST) return owned;
    }
  }
}

Result<void> zero_range(int fd, uint64_t offset, uint64_t len, const std::filesystem::path& name) {
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(len)) == 0)
    return {};
  if (errno != EOPNOTSUPP && errno != ENOSYS)
    return make_error("cannot zero {:#x}+{:#x} of {}: {}", offset, len, name.string(), std::strerror(errno));
  std::vector<char> zeros(std::min<uint64_t>(len, 1 << 20), 0);
  for (uint64_t done = 0; done < len;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), len - done));
    KILN_TRY(write_exact(fd, zeros.data(), n, offset + done, name));
    done += n;
  }
  return {};
}

bool all_zero(const char* p, size_t len) {
  // OR-reduce words without an early exit, so the loop vectorizes; memcpy keeps it free
  // of alignment assumptions (it compiles to plain loads).
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < len; ++i) acc |= static_cast<uint8_t>(p[i]);
  return acc == 0;
}

}  // namespace kiln::snapshot::sparse
