#include "image/oci/blob_store.h"

#include "common/fs.h"
#include "common/sha256.h"
#include "common/temp_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::image {
namespace {

constexpr int kAttempts = 2;  // the fetch, and one re-fetch
constexpr std::string_view kTempMarker = ".tmp-";

// Size, then SHA-256, of the file open at `fd`: the bytes that will be renamed into place.
Result<void> check_fd(int fd, const std::string& digest, uint64_t size) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error("cannot stat the downloaded blob: {}", std::strerror(errno));
  auto have = static_cast<uint64_t>(st.st_size);
  if (have < size) return make_error("truncated: {} of {} bytes arrived", have, size);
  if (have > size) return make_error("{} bytes arrived, more than the {} its descriptor says", have, size);
  Sha256Stream hash;
  std::string buffer(1 << 20, '\0');
  for (uint64_t off = 0; off < have;) {
    ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot read the downloaded blob: {}", std::strerror(errno));
    if (n == 0) return make_error("the downloaded blob shrank while it was verified");
    hash.update(std::string_view(buffer.data(), static_cast<size_t>(n)));
    off += static_cast<uint64_t>(n);
  }
  if (auto got = hash.digest(); got != digest)
    return make_error("its bytes hash to {}, not to the digest the manifest names", got);
  return {};
}

}  // namespace

std::filesystem::path BlobStore::default_root() { return fs::cache_root() / "images"; }

BlobStore::BlobStore(std::filesystem::path root) : root_(std::move(root)) {}

std::filesystem::path BlobStore::path_of(std::string_view digest) const {
  return blob_dir() / std::string(digest.substr(digest.find(':') + 1));
}

bool BlobStore::has(std::string_view digest, uint64_t size) const {
  struct stat st {};
  if (!is_sha256_digest(digest) || ::lstat(path_of(digest).c_str(), &st) != 0) return false;
  return S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == size;
}

uint64_t BlobStore::size_of(std::string_view digest) const {
  struct stat st {};
  if (!is_sha256_digest(digest) || ::lstat(path_of(digest).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  return static_cast<uint64_t>(st.st_size);
}

Result<std::filesystem::path> BlobStore::ensure(const std::string& digest, uint64_t size, const Fetch& fetch,
                                                std::string_view what) const {
  if (!is_sha256_digest(digest)) return make_error("{}: \"{}\" is not a sha256 digest", what, digest);
  auto dest = path_of(digest);
  if (has(digest, size)) return dest;
  KILN_TRY(fs::make_dirs(blob_dir()));
  KILN_ASSIGN_OR_RETURN(auto tmp, fs::TempFile::beside(dest, 0600));
  Error last;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    auto fetched = fetch(tmp.path());
    if (!fetched) {  // a transfer error: the next attempt may resume from what arrived
      last = fetched.take_error();
      continue;
    }
    auto checked = check_fd(tmp.fd(), digest, size);
    if (checked) {
      if (::fchmod(tmp.fd(), 0444) != 0)
        return make_error("cannot make {} read-only: {}", tmp.path().string(), std::strerror(errno));
      KILN_TRY(tmp.commit(dest, fs::Durability::flushed));
      return dest;
    }
    last = checked.take_error();
    if (::ftruncate(tmp.fd(), 0) != 0)  // wrong bytes: the retry starts from nothing
      return make_error("cannot truncate {}: {}", tmp.path().string(), std::strerror(errno));
  }
  return make_error("{} ({}) was refused after {} attempts: {}; nothing was stored", what, digest, kAttempts,
                    last.message);
}

Result<std::filesystem::path> BlobStore::put(const std::string& digest, std::string_view bytes) const {
  if (sha256_digest(bytes) != digest)
    return make_error("refusing to store {}: the bytes hash to {}", digest, sha256_digest(bytes));
  return ensure(digest, bytes.size(),
                [&](const std::filesystem::path& dest) -> Result<void> {
                  UniqueFd fd(::open(dest.c_str(), O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC));
                  if (!fd) return make_error("cannot open {}: {}", dest.string(), std::strerror(errno));
                  for (size_t off = 0; off < bytes.size();) {
                    ssize_t n = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
                    if (n < 0 && errno == EINTR) continue;
                    if (n < 0) return make_error("cannot write {}: {}", dest.string(), std::strerror(errno));
                    off += static_cast<size_t>(n);
                  }
                  return {};
                },
                "manifest");
}

Result<std::string> BlobStore::read_verified(const std::string& digest, uint64_t max_bytes) const {
  if (!is_sha256_digest(digest)) return make_error("\"{}\" is not a sha256 digest", digest);
  KILN_ASSIGN_OR_RETURN(std::string bytes, fs::read_file(path_of(digest), max_bytes));
  if (auto got = sha256_digest(bytes); got != digest) {
    Error e = make_error("blob {} in {} is damaged: its bytes hash to {}", digest, blob_dir().string(), got);
    e.kind = ErrorKind::corrupt;
    return e;
  }
  return bytes;
}

Result<void> BlobStore::verify(const std::string& digest) const {
  if (!is_sha256_digest(digest)) return make_error("\"{}\" is not a sha256 digest", digest);
  KILN_ASSIGN_OR_RETURN(std::string got, sha256_file(path_of(digest)));
  if (got != digest) {
    Error e = make_error("blob {} in {} is damaged: its bytes hash to {}", digest, blob_dir().string(), got);
    e.kind = ErrorKind::corrupt;
    return e;
  }
  return {};
}

std::vector<std::string> BlobStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(blob_dir(), ec)) {
    std::string digest = "sha256:" + e.path().filename().string();
    if (is_sha256_digest(digest)) out.push_back(std::move(digest));
  }
  return out;
}

Result<uint64_t> BlobStore::remove(const std::string& digest) const {
  if (!is_sha256_digest(digest)) return make_error("\"{}\" is not a sha256 digest", digest);
  uint64_t bytes = size_of(digest);
  if (::unlink(path_of(digest).c_str()) != 0 && errno != ENOENT)
    return make_error("cannot remove {}: {}", path_of(digest).string(), std::strerror(errno));
  return bytes;
}

std::vector<std::filesystem::path> BlobStore::leftovers(std::chrono::seconds min_age) const {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& e : std::filesystem::directory_iterator(blob_dir(), ec)) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] != '.' || name.find(kTempMarker) == std::string::npos) continue;
    std::error_code tec;
    auto t = std::filesystem::last_write_time(e.path(), tec);
    if (!tec && now - t >= min_age) out.push_back(e.path());
  }
  return out;
}

Result<UniqueFd> BlobStore::lock(bool exclusive) const {
  KILN_TRY(fs::make_dirs(root_));
  auto path = root_ / "lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return make_error("cannot open {}: {}", path.string(), std::strerror(errno));
  int rc;
  do rc = ::flock(fd.get(), exclusive ? LOCK_EX : LOCK_SH);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) return make_error("cannot lock {}: {}", path.string(), std::strerror(errno));
  return fd;
}

}  // namespace kiln::image
