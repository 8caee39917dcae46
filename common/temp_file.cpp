#include "common/temp_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>

namespace kiln::fs {
namespace {

// A name that is taken 100 times in a row with 64 random bits is not bad luck.
constexpr int kAttempts = 100;

// The one open(2) behind every temp file: -1 with errno (EEXIST if the name is taken).
int open_exclusive(const std::filesystem::path& path, mode_t mode) {
  return ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
}

}  // namespace

Result<std::string> unique_name(std::string_view prefix) {
  uint64_t bits = 0;
  ssize_t n;
  do n = ::getrandom(&bits, sizeof bits, 0);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof bits))
    return make_error("cannot get random bytes for a temp file name: {}",
                      n < 0 ? std::strerror(errno) : "short read from getrandom");
  return fmt::format("{}{:016x}", prefix, bits);
}

Result<UniqueFd> create_new_file(const std::filesystem::path& path, mode_t mode) {
  UniqueFd fd(open_exclusive(path, mode));
  if (!fd) return make_error("cannot create {}: {}", path.string(), std::strerror(errno));
  return fd;
}

Result<std::filesystem::path> make_temp_dir(const std::filesystem::path& parent, std::string_view prefix) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    KILN_ASSIGN_OR_RETURN(std::string name, unique_name(prefix));
    auto path = parent / name;
    if (::mkdir(path.c_str(), 0700) == 0) return path;
    if (errno != EEXIST)
      return make_error("cannot create a temporary directory in {}: {}", parent.string(), std::strerror(errno));
  }
  return make_error("cannot create a temporary directory in {}: every random name tried was taken", parent.string());
}

Result<TempFile> TempFile::create(const std::filesystem::path& dir, std::string_view prefix, mode_t mode) {
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    KILN_ASSIGN_OR_RETURN(std::string name, unique_name(prefix));
    auto path = dir / name;
    UniqueFd fd(open_exclusive(path, mode));
    if (fd) return TempFile(std::move(fd), std::move(path));
    if (errno != EEXIST) return make_error("cannot create a temp file in {}: {}", dir.string(), std::strerror(errno));
  }
  return make_error("cannot create a temp file in {}: every random name tried was taken", dir.string());
}

Result<TempFile> TempFile::beside(const std::filesystem::path& dest, mode_t mode) {
  return create(dest.parent_path(), "." + dest.filename().string() + ".tmp-", mode);
}

// A moved-from path is only "valid but unspecified": clear it, or its destructor could
// unlink the file the new owner holds.
TempFile::TempFile(TempFile&& other) noexcept : fd_(std::move(other.fd_)), path_(std::exchange(other.path_, {})) {}

TempFile::~TempFile() {
  fd_.reset();
  if (!path_.empty()) ::unlink(path_.c_str());
}

Result<void> TempFile::write(std::string_view data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd_.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot write {}: {}", path_.string(), std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  return {};
}

Result<void> TempFile::commit(const std::filesystem::path& dest, Durability durability) {
  if (durability == Durability::flushed && ::fsync(fd_.get()) != 0)
    return make_error("cannot flush {}: {}", path_.string(), std::strerror(errno));
  // close() reports the write errors some filesystems (NFS) defer to it.
  if (::close(fd_.release()) != 0) return make_error("cannot close {}: {}", path_.string(), std::strerror(errno));
  if (::rename(path_.c_str(), dest.c_str()) != 0)
    return make_error("cannot rename {} to {}: {}", path_.string(), dest.string(), std::strerror(errno));
  path_.clear();
  return {};
}

}  // namespace kiln::fs
