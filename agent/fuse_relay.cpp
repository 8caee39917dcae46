#include "agent/fuse_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <optional>
#include <string_view>
#include <vector>

#include "agent/fs_util.h"
#include "agent/fuse_replies.h"
#include "agent/log.h"
#include "agent/protocol.h"

namespace kiln::agent {

namespace {

constexpr size_t kPortChunk = 64 * 1024;  // one read from the port

// Why the relay stops; nothing means "keep going".
using Stop = std::optional<std::string>;

// A request read from /dev/fuse that the port has not taken completely yet.
struct Outgoing {
  std::vector<char> bytes = std::vector<char>(proto::kMaxShareMessage);
  size_t size = 0;
  size_t sent = 0;
  bool pending() const { return sent < size; }
};

// Reads one request: one read() of /dev/fuse is one whole request.
Stop take_request(int fuse_fd, Outgoing& out) {
  ssize_t n = ::read(fuse_fd, out.bytes.data(), out.bytes.size());
  if (n > 0) {
    out.size = static_cast<size_t>(n);
    out.sent = 0;
    return std::nullopt;
  }
  if (n == 0) return "the FUSE device reported end of file";
  // ENOENT: the request was interrupted before it could be read; the next read gets another.
  if (errno == EINTR || errno == EAGAIN || errno == ENOENT) return std::nullopt;
  if (errno == ENODEV) return "the share was unmounted or its FUSE connection aborted";
  return sys_error("read from /dev/fuse");
}

// Writes as much of the pending request as the port takes now.
Stop push_request(int port_fd, Outgoing& out) {
  ssize_t n = ::write(port_fd, out.bytes.data() + out.sent, out.size - out.sent);
  if (n > 0) {
    out.sent += static_cast<size_t>(n);
    return std::nullopt;
  }
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return std::nullopt;
  if (n < 0 && errno == EPIPE) return "the host closed the share port";
  return n == 0 ? std::string("write to the share port made no progress") : sys_error("write to the share port");
}

// Hands one reply to the kernel in one write().
Stop deliver_reply(int fuse_fd, std::string_view reply) {
  for (;;) {
    ssize_t n = ::write(fuse_fd, reply.data(), reply.size());
    if (n == static_cast<ssize_t>(reply.size())) return std::nullopt;
    if (n < 0 && errno == EINTR) continue;
    // The request it answers is gone (interrupted, or the kernel gave up on it): nothing to do.
    if (n < 0 && errno == ENOENT) return std::nullopt;
    if (n < 0 && errno == ENODEV) return "the share was unmounted or its FUSE connection aborted";
    if (n < 0) return sys_error("the guest kernel refused a FUSE reply from the host");
    return cat("the guest kernel took ", n, " of a ", reply.size(), "-byte FUSE reply");
  }
}

// Reads what the port has (into `chunk`) and delivers every reply it completes.
Stop pass_replies(int port_fd, int fuse_fd, std::vector<char>& chunk, FuseReplyAssembler& replies) {
  ssize_t n = ::read(port_fd, chunk.data(), chunk.size());
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return std::nullopt;
  if (n == 0) return "the host closed the share port";
  if (n < 0) return sys_error("read from the share port");
  const bool good = replies.feed(std::string_view(chunk.data(), static_cast<size_t>(n)));
  // Replies completed before a bad header are still good: deliver them first.
  while (std::optional<std::string_view> reply = replies.next())
    if (Stop stop = deliver_reply(fuse_fd, *reply)) return stop;
  if (!good || replies.failed()) return replies.error();
  return std::nullopt;
}

// Everything but stdio (the console, for its log lines) and the two relayed fds.
void close_other_fds(int a, int b) {
  const int low = std::min(a, b);
  const int high = std::max(a, b);
  if (low > 3) ::close_range(3, static_cast<unsigned>(low - 1), 0);
  if (high > low + 1) ::close_range(static_cast<unsigned>(low + 1), static_cast<unsigned>(high - 1), 0);
  ::close_range(static_cast<unsigned>(high + 1), ~0u, 0);
}

// The relay process: out of the command's way and of its kill -1, then relay until done.
[[noreturn]] void relay_main(int fuse_fd, int port_fd) {
  ::setsid();
  ::prctl(PR_SET_NAME, "kiln-share", 0, 0, 0);
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM}) std::signal(sig, SIG_IGN);
  // Tiny, and every file access of the test through the share depends on it.
  if (int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
    (void)write_all(fd, "-1000", 5, "oom_score_adj");
    ::close(fd);
  }
  close_other_fds(fuse_fd, port_fd);
  log("share relay stopped: ", relay_fuse(fuse_fd, port_fd));
  ::_exit(0);
}

}  // namespace

std::string relay_fuse(int fuse_fd, int port_fd) {
  ::fcntl(fuse_fd, F_SETFL, ::fcntl(fuse_fd, F_GETFL) | O_NONBLOCK);
  ::fcntl(port_fd, F_SETFL, ::fcntl(port_fd, F_GETFL) | O_NONBLOCK);
  Outgoing out;
  std::vector<char> chunk(kPortChunk);
  FuseReplyAssembler replies;
  for (;;) {
    // One request in flight to the port at a time bounds what is buffered; replies are
    // always read, so a host busy writing a large reply never waits on us.
    pollfd fds[2] = {{fuse_fd, static_cast<short>(out.pending() ? 0 : POLLIN), 0},
                     {port_fd, static_cast<short>(POLLIN | (out.pending() ? POLLOUT : 0)), 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return sys_error("poll in the share relay");
    }
    const short fuse_ev = fds[0].revents;
    const short port_ev = fds[1].revents;
    if ((port_ev & (POLLIN | POLLHUP | POLLERR)) != 0)
      if (Stop stop = pass_replies(port_fd, fuse_fd, chunk, replies)) return *stop;
    if ((port_ev & POLLOUT) != 0)
      if (Stop stop = push_request(port_fd, out)) return *stop;
    if ((fuse_ev & POLLIN) != 0) {
      if (Stop stop = take_request(fuse_fd, out)) return *stop;
    } else if ((fuse_ev & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      return "the share was unmounted or its FUSE connection aborted";
    }
  }
}

Status start_fuse_relay(UniqueFd fuse, UniqueFd port) {
  const pid_t pid = ::fork();
  if (pid < 0) return Status::fail(sys_error("cannot start the share relay: fork"));
  if (pid == 0) relay_main(fuse.get(), port.get());
  log("share relay started (pid ", pid, ")");
  return Status::ok();  // `fuse` and `port` close here: the relay holds the only copies
}

}  // namespace kiln::agent
