#include "common/digest.h"

#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
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

bool is_lower_hex(std::string_view s, size_t max_size) {
  return !s.empty() && s.size() <= max_size &&
         s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

std::string digest_bytes(std::string_view bytes) { return to_hex(XXH3_128bits(bytes.data(), bytes.size())); }

void DigestStream::Free::operator()(XXH3_state_s* state) const { XXH3_freeState(state); }

DigestStream::DigestStream() : state_(XXH3_createState()) { XXH3_128bits_reset(state_.get()); }

void DigestStream::update(std::string_view bytes) { XXH3_128bits_update(state_.get(), bytes.data(), bytes.size()); }

std::string DigestStream::hex() const { return to_hex(XXH3_128bits_digest(state_.get())); }

// True if all `n` bytes at `p` are zero.
static bool all_zero(const char* p, size_t n) { return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0); }

// The sparse digest is defined by content alone: every non-zero 4 KiB page, with
// its offset. Holes and all-zero pages hash alike, so the digest does not change
// when a filesystem allocates hole pages without changing their bytes (tmpfs does
// when a private mapping of the file reads them). SEEK_DATA/SEEK_HOLE only skip work.
static Result<void> digest_sparse(int fd, uint64_t size, XXH3_state_t* state, std::vector<char>& buf,
                                         const std::filesystem::path& path) {
  constexpr uint64_t kPage = 4096;
  uint64_t done = 0;  // everything below is hashed (or known to be zero)
  while (done < size) {
    off_t data = ::lseek(fd, static_cast<off_t>(done), SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole remains
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    uint64_t end = hole < 0 ? size : std::min<uint64_t>(size, (static_cast<uint64_t>(hole) + kPage - 1) / kPage * kPage);
    uint64_t pos = std::max(done, static_cast<uint64_t>(data) / kPage * kPage);
    while (pos < end) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, buf.size()));
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(pos));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return make_error("cannot read {}: {}", path.string(), std::strerror(errno));
      if (n == 0) return make_error("{} shrank while it was being read", path.string());
      for (size_t off = 0; off < static_cast<size_t>(n); off += kPage) {
        size_t len = std::min<size_t>(kPage, static_cast<size_t>(n) - off);
        if (all_zero(buf.data() + off, len)) continue;
        uint64_t at = pos + off;
        XXH3_128bits_update(state, &at, sizeof at);
        XXH3_128bits_update(state, buf.data() + off, len);
      }
      pos += static_cast<uint64_t>(n);
    }
    done = std::max(done, end);
  }
  return {};
}

Result<std::string> digest_open_file(int fd, uint64_t size, const std::filesystem::path& name) {
  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  KILN_TRY(hash_range(fd, 0, static_cast<off_t>(size), state.get(), buf, name));
  return to_hex(XXH3_128bits_digest(state.get()));
}

static Result<std::string> digest(const std::filesystem::path& path, bool sparse) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return make_error("cannot stat {}: {}", path.string(), std::strerror(errno));
  if (!sparse) return digest_open_file(fd.get(), static_cast<uint64_t>(st.st_size), path);
  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  KILN_TRY(digest_sparse(fd.get(), size, state.get(), buf, path));
  XXH3_128bits_update(state.get(), &size, sizeof size);
  return to_hex(XXH3_128bits_digest(state.get()));
}

Result<std::string> digest_file(const std::filesystem::path& path) { return digest(path, false); }

Result<std::string> digest_sparse_file(const std::filesystem::path& path) { return digest(path, true); }

}  // namespace kiln
