#include "runner/stdin_forward.h"

#include "common/log.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace kiln::runner {
namespace {

// One stdin_data frame at most; well under the frame limit.
constexpr size_t kChunk = 64 * 1024;
// Stop reading while this much is still queued for the guest: a guest that grants
// credit but does not read the channel cannot make kiln buffer its whole stdin.
constexpr size_t kMaxBacklog = 1 << 20;
// Credit beyond this is not believed: it only bounds what a hostile guest can ask for.
constexpr uint64_t kMaxCredit = 64u << 20;

bool is_dev_null(const struct stat& st) {
  struct stat null_st {};
  return S_ISCHR(st.st_mode) && ::stat("/dev/null", &null_st) == 0 && S_ISCHR(null_st.st_mode) &&
         st.st_rdev == null_st.st_rdev;
}

}  // namespace

proto::StdinMode stdin_mode_for(int fd, bool interactive) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || is_dev_null(st) || (::isatty(fd) && !interactive)) return proto::StdinMode::null;
  return proto::StdinMode::stream;
}

StdinForwarder::StdinForwarder(int fd) : fd_(fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return;
  socket_ = S_ISSOCK(st.st_mode);
  if (S_ISFIFO(st.st_mode) || ::isatty(fd)) {
    // Opening the pipe (or terminal) again through /proc gives a description of our
    // own, so O_NONBLOCK on it changes nothing for the processes sharing `fd`.
    own_.reset(::open(fmt::format("/proc/self/fd/{}", fd).c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (own_.valid()) fd_ = own_.get();
  }
}

ssize_t StdinForwarder::read_some(char* buf, size_t size) {
  if (socket_) return ::recv(fd_, buf, size, MSG_DONTWAIT);
  return ::read(fd_, buf, size);
}

int StdinForwarder::fd_to_watch(const AgentClient& agent) const {
  if (ended_ || credit_ == 0 || agent.queued() >= kMaxBacklog) return -1;
  return fd_;
}

void StdinForwarder::add_credit(uint32_t bytes) { credit_ = std::min<uint64_t>(credit_ + bytes, kMaxCredit); }

void StdinForwarder::forward(AgentClient& agent) {
  if (ended_ || credit_ == 0) return;
  std::string buf(static_cast<size_t>(std::min<uint64_t>(credit_, kChunk)), '\0');
  ssize_t n = read_some(buf.data(), buf.size());
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;  // poll again
  if (n <= 0) {
    if (n < 0) log::verbose("reading stdin failed ({}); the command's stdin ends here", std::strerror(errno));
    ended_ = true;
    agent.send(proto::MsgType::stdin_eof, {});
    return;
  }
  agent.send(proto::MsgType::stdin_data, std::string_view(buf.data(), static_cast<size_t>(n)));
  credit_ -= static_cast<uint64_t>(n);
  forwarded_ += static_cast<uint64_t>(n);
}

}  // namespace kiln::runner
