#include "vmm/qemu/sparse_copy.h"

#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::vmm::qemu {
namespace {

// copy_file_range refuses some pairs (cross-filesystem on older kernels, some
// filesystems): these errors mean "use plain read/write", not "the copy failed".
bool unsupported(int err) { return err == EXDEV || err == EINVAL || err == ENOSYS || err == EOPNOTSUPP; }

Result<void> copy_with_rw(int in, int out, off_t begin, off_t end, const std::filesystem::path& from) {
  std::vector<char> buf(1 << 20);
  off_t pos = begin;
  while (pos < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - pos, static_cast<off_t>(buf.size())));
    ssize_t n = ::pread(in, buf.data(), want, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", from.string(), std::strerror(errno));
    if (n == 0) return make_error("{} shrank while it was being copied", from.string());
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::pwrite(out, buf.data() + done, static_cast<size_t>(n - done), pos + done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return make_error("cannot write the copy of {}: {}", from.string(), std::strerror(errno));
      done += w;
    }
    pos += n;
  }
  return {};
}

}  // namespace

Result<SparseCopyStats> copy_sparse_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return make_error("cannot open {}: {}", from.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return make_error("{} is not a regular file", from.string());
  UniqueFd out(::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out) return make_error("cannot create {}: {}", to.string(), std::strerror(errno));
  // Size first: everything not written below stays a hole.
  if (::ftruncate(out.get(), st.st_size) != 0)
    return make_error("cannot size {} to {} bytes: {}", to.string(), st.st_size, std::strerror(errno));

  SparseCopyStats stats;
  stats.size = static_cast<uint64_t>(st.st_size);
  bool use_cfr = true;
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(in.get(), pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      return make_error("cannot find the data in {}: {}", from.string(), std::strerror(errno));
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    hole = std::min<off_t>(hole, st.st_size);
    off_t at = data;
    while (use_cfr && at < hole) {
      off_t in_off = at;
      off_t out_off = at;
      ssize_t n = ::copy_file_range(in.get(), &in_off, out.get(), &out_off, static_cast<size_t>(hole - at), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && unsupported(errno)) {
        use_cfr = false;
        break;
      }
      if (n < 0) return make_error("cannot copy {} to {}: {}", from.string(), to.string(), std::strerror(errno));
      if (n == 0) return make_error("{} shrank while it was being copied", from.string());
      at += n;
    }
    if (at < hole) KILN_TRY(copy_with_rw(in.get(), out.get(), at, hole, from));
    stats.data_bytes += static_cast<uint64_t>(hole - data);
    pos = hole;
  }
  return stats;  // not fsynced: the store flushes a layer's files when it publishes them
}

}  // namespace kiln::vmm::qemu
