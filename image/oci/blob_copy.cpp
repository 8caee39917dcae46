#include "image/oci/blob_copy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace kiln::image {

Result<UniqueFd> open_blob_dest(const std::filesystem::path& dest) {
  UniqueFd fd(::open(dest.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", dest.string(), std::strerror(errno));
  return fd;
}

Result<void> copy_blob(const ReadChunk& read, int fd, uint64_t size, const BlobProgress& progress) {
  std::string buffer(1 << 20, '\0');
  uint64_t done = 0, limit = size + 1;
  while (done < limit) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), limit - done));
    KILN_ASSIGN_OR_RETURN(size_t n, read(buffer.data(), want));
    if (n == 0) break;
    for (size_t off = 0; off < n;) {
      ssize_t w = ::write(fd, buffer.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return make_error("cannot write the blob: {}", std::strerror(errno));
      off += static_cast<size_t>(w);
    }
    done += n;
    if (progress) progress(std::min(done, size), size);
  }
  return {};
}

}  // namespace kiln::image
