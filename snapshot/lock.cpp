#include "snapshot/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace kiln::snapshot {
namespace {

// After flock succeeds, the file we locked must still be the one at `path`: if gc
// unlinked it between our open() and flock(), a newcomer would create a fresh file
// and lock that one too. Then we drop ours and start over.
bool still_linked(int fd, const std::filesystem::path& path) {
  struct stat by_fd {}, by_path {};
  if (::fstat(fd, &by_fd) != 0 || ::stat(path.c_str(), &by_path) != 0) return false;
  return by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

int open_lock_file(const std::filesystem::path& path) {
  return ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
}

// Only a few racing unlinks can happen per acquisition in practice; the bound turns a
// pathological loop into an error instead of a hang.
constexpr int kMaxRelinkRetries = 100;

}  // namespace

Result<BakeLock> BakeLock::acquire(const std::filesystem::path& path, const std::function<void()>& on_wait) {
  bool announced = false;
  for (int attempt = 0; attempt < kMaxRelinkRetries; ++attempt) {
    int fd = open_lock_file(path);
    if (fd < 0)
      return make_error("cannot open snapshot lock {}: {}; check the cache directory's permissions", path.string(),
                        std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      if (e != EWOULDBLOCK && e != EINTR) {
        ::close(fd);
        return make_error("cannot lock {}: {}", path.string(), std::strerror(e));
      }
      if (!announced && on_wait) on_wait();
      announced = true;
      while (::flock(fd, LOCK_EX) != 0) {
        int err = errno;
        ::close(fd);
        if (err == EINTR) {
          Error interrupted = make_error("interrupted while waiting for the snapshot lock {}", path.string());
          interrupted.kind = ErrorKind::interrupted;
          return interrupted;
        }
        return make_error("cannot lock {}: {}", path.string(), std::strerror(err));
      }
    }
    if (still_linked(fd, path)) return BakeLock(fd, path);
    ::close(fd);
  }
  return make_error("cannot lock {}: it keeps being replaced; is another tool deleting files in the cache?",
                    path.string());
}

Result<std::optional<BakeLock>> BakeLock::try_acquire(const std::filesystem::path& path) {
  for (int attempt = 0; attempt < kMaxRelinkRetries; ++attempt) {
    int fd = open_lock_file(path);
    if (fd < 0)
      return make_error("cannot open snapshot lock {}: {}", path.string(), std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      ::close(fd);
      if (e == EWOULDBLOCK || e == EINTR) return std::optional<BakeLock>();
      return make_error("cannot lock {}: {}", path.string(), std::strerror(e));
    }
    if (still_linked(fd, path)) return std::optional<BakeLock>(BakeLock(fd, path));
    ::close(fd);
  }
  return make_error("cannot lock {}: it keeps being replaced", path.string());
}

Result<void> BakeLock::pin_shared(const std::filesystem::path& path) {
  if (pin_fd_ >= 0) return make_error("internal error: lock {} already pins another lock", path_.string());
  for (int attempt = 0; attempt < kMaxRelinkRetries; ++attempt) {
    int fd = open_lock_file(path);
    if (fd < 0) return make_error("cannot open snapshot lock {}: {}", path.string(), std::strerror(errno));
    while (::flock(fd, LOCK_SH) != 0) {
      int err = errno;
      ::close(fd);
      Error e = make_error("cannot lock {}: {}", path.string(), std::strerror(err));
      if (err == EINTR) e.kind = ErrorKind::interrupted;
      return e;
    }
    if (still_linked(fd, path)) {
      pin_fd_ = fd;
      return {};
    }
    ::close(fd);
  }
  return make_error("cannot lock {}: it keeps being replaced", path.string());
}

BakeLock::BakeLock(BakeLock&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), pin_fd_(std::exchange(other.pin_fd_, -1)), path_(std::move(other.path_)) {}

BakeLock& BakeLock::operator=(BakeLock&& other) noexcept {
  if (this != &other) {
    for (int fd : {fd_, pin_fd_})
      if (fd >= 0) ::close(fd);
    fd_ = std::exchange(other.fd_, -1);
    pin_fd_ = std::exchange(other.pin_fd_, -1);
    path_ = std::move(other.path_);
  }
  return *this;
}

BakeLock::~BakeLock() {
  // Closing the last fd of the open file description releases the flock.
  for (int fd : {fd_, pin_fd_})
    if (fd >= 0) ::close(fd);
}

void BakeLock::unlink_file() {
  if (fd_ >= 0) ::unlink(path_.c_str());
}

}  // namespace kiln::snapshot
