#include "common/fd_passing.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kiln {

Result<void> send_fd_message(int sock, std::string_view bytes, const std::vector<int>& fds) {
  if (bytes.empty()) return make_error("internal error: an empty message cannot be sent");
  if (fds.size() > kMaxPassedFds) return make_error("internal error: {} descriptors in one message", fds.size());
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error("cannot send a message: {}", std::strerror(errno));
    if (static_cast<size_t>(n) != bytes.size()) return make_error("a message was sent short ({} of {} bytes)", n, bytes.size());
    return {};
  }
}

Result<std::optional<FdMessage>> receive_fd_message(int sock, size_t max_bytes, size_t max_fds, Deadline deadline) {
  if (max_fds > kMaxPassedFds) max_fds = kMaxPassedFds;
  for (;;) {
    pollfd pfd{sock, POLLIN, 0};
    int r = ::poll(&pfd, 1, poll_timeout_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return make_error("poll failed: {}", std::strerror(errno));
    if (r == 0) return Error{"no answer in time", ErrorKind::timeout};
    break;
  }
  FdMessage out;
  out.bytes.resize(max_bytes + 1);  // one more: a longer message shows as MSG_TRUNC
  iovec iov{out.bytes.data(), out.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)] = {};
  msg.msg_control = control;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * max_fds);
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return make_error("cannot receive a message: {}", std::strerror(errno));
  // Take ownership of whatever descriptors came, before any check can return.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  if (n == 0 && out.fds.empty()) return std::optional<FdMessage>();
  if ((msg.msg_flags & MSG_CTRUNC) || out.fds.size() > max_fds)
    return make_error("a message carried more than {} descriptors", max_fds);
  if ((msg.msg_flags & MSG_TRUNC) || static_cast<size_t>(n) > max_bytes)
    return make_error("a message was longer than {} bytes", max_bytes);
  out.bytes.resize(static_cast<size_t>(n));
  return std::optional<FdMessage>(std::move(out));
}

}  // namespace kiln
