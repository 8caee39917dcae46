#include "common/digest.h"

#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln {
namespace {

std::string to_hex(XXH128_hash_t h) {
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// Hash [begin, end) of fd into state.
Result<void> hash_range(int fd, off_t begin, off_t end, XXH3_state_t* state, std::vector<char>& buf,
                        const std::filesystem::path& path) {
  off_t pos = begin;
  while (pos < end) {
    size_t want = static_cast<size_t>(std::min<off_t>(end - pos, static_cast<off_t>(buf.size())));
    ssize_t n = ::pread(fd, buf.data(), want, pos);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read {}: {}", path.string(), std::strerror(errno));
    if (n == 0) return make_error("{} shrank while it was being read", path.string());
    XXH3_128bits_update(state, buf.data(), static_cast<size_t>(n));
    pos += n;
  }
  return {};
}

}  // namespace

std::string digest_bytes(std::string_view bytes) { return to_hex(XXH3_128bits(bytes.data(), bytes.size())); }

// One reader for both digests: `sparse` walks only the data extents (SEEK_DATA /
// SEEK_HOLE) and mixes each extent's position in, so holes cost nothing.
static Result<std::string> digest(const std::filesystem::path& path, bool sparse) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_error("cannot stat {}: {}", path.string(), std::strerror(errno));
  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  if (!sparse) {
    KILN_TRY(hash_range(fd.get(), 0, st.st_size, state.get(), buf, path));
    return to_hex(XXH3_128bits_digest(state.get()));
  }
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole remains
    off_t hole = ::lseek(fd.get(), data, SEEK_HOLE);
    if (hole < 0) hole = st.st_size;
    uint64_t extent[2] = {static_cast<uint64_t>(data), static_cast<uint64_t>(hole)};
    XXH3_128bits_update(state.get(), extent, sizeof extent);
    KILN_TRY(hash_range(fd.get(), data, hole, state.get(), buf, path));
    pos = hole;
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  XXH3_128bits_update(state.get(), &size, sizeof size);
  return to_hex(XXH3_128bits_digest(state.get()));
}

Result<std::string> digest_file(const std::filesystem::path& path) { return digest(path, false); }

Result<std::string> digest_sparse_file(const std::filesystem::path& path) { return digest(path, true); }

}  // namespace kiln
