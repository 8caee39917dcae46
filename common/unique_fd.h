// An owned file descriptor, closed on destruction: every early return closes what
// it opened (a leaked fd in the agent, PID 1, would leak into every later command).
// std-only, so the static guest agent uses it too.
#pragma once

#include <unistd.h>

#include <utility>

namespace kiln {

/// Owns one fd. Move-only; `reset()` closes the old fd.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return fd_ >= 0; }
  /// Give up ownership without closing.
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    // close() errors are not actionable here: the fd is gone either way (POSIX leaves it unspecified
    // only for EINTR, and Linux always releases the fd).
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace kiln
