#include "share/share_server.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::share {

Result<std::unique_ptr<ShareServer>> ShareServer::start(UniqueFd fd, std::vector<std::filesystem::path> roots,
                                                        SessionLimits limits, std::string_view resume_state) {
  if (!fd) return make_error("share server: no socket to serve on");
  KILN_ASSIGN_OR_RETURN(FuseSession session, FuseSession::create(roots, limits));
  if (!resume_state.empty()) KILN_TRY(session.resume(resume_state));
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return make_error("share server: cannot make the share socket non-blocking: {}", std::strerror(errno));
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return make_error("share server: eventfd failed: {}", std::strerror(errno));
  std::unique_ptr<ShareServer> server(new ShareServer(std::move(fd), std::move(wake), std::move(session)));
  server->thread_ = std::thread([s = server.get()] { s->serve(); });
  return server;
}

ShareServer::ShareServer(UniqueFd fd, UniqueFd wake, FuseSession session)
    : fd_(std::move(fd)), wake_(std::move(wake)), session_(std::move(session)), buffer_(kMaxMessage) {}

ShareServer::~ShareServer() { stop(); }

void ShareServer::stop() {
  const uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the thread sees it anyway.
  (void)!::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

std::string ShareServer::export_state() {
  stop();
  return session_.save_state();
}

ShareServer::Stats ShareServer::stats() const {
  std::lock_guard lock(stats_mutex_);
  return stats_;
}

void ShareServer::fail(std::string why) {
  std::lock_guard lock(stats_mutex_);
  if (stats_.failure.empty()) stats_.failure = std::move(why);
}

void ShareServer::serve() {
  ::pthread_setname_np(::pthread_self(), "kiln-share");
  while (answer_buffered() && fill()) {
  }
  // The guest's relay sees the share end (and its FUSE mount fails with EIO/ENOTCONN).
  ::shutdown(fd_.get(), SHUT_RDWR);
  fd_.reset();
  serving_ = false;
}

ShareServer::Wait ShareServer::wait_for(short events) {
  for (;;) {
    pollfd fds[2] = {{fd_.get(), events, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail(fmt::format("share server: poll failed: {}", std::strerror(errno)));
      return Wait::failed;
    }
    if (fds[1].revents != 0) return Wait::stopped;
    if ((fds[0].revents & POLLNVAL) != 0) {
      fail("share server: the share socket was closed under it");
      return Wait::failed;
    }
    if (fds[0].revents != 0) return Wait::ready;  // POLLHUP/POLLERR too: the read or send says which
  }
}

bool ShareServer::fill() {
  const Wait w = wait_for(POLLIN);
  if (w != Wait::ready) return false;
  const ssize_t n = ::read(fd_.get(), buffer_.data() + filled_, buffer_.size() - filled_);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return true;
    if (errno != ECONNRESET) {
      fail(fmt::format("share server: reading the share socket failed: {}", std::strerror(errno)));
      return false;
    }
  }
  if (n <= 0) {  // the peer hung up (ECONNRESET: without reading all we sent)
    if (filled_ > 0) {
      fail(fmt::format("share server: the guest hung up in the middle of a request ({} bytes of it arrived)",
                       filled_));
    }
    return false;
  }
  filled_ += static_cast<size_t>(n);
  std::lock_guard lock(stats_mutex_);
  stats_.bytes_read += static_cast<uint64_t>(n);
  return true;
}

bool ShareServer::answer_buffered() {
  while (filled_ >= kInHeaderSize) {
    const std::span<const uint8_t> pending(buffer_.data(), filled_);
    const std::optional<uint32_t> len = announced_length(pending.first<kInHeaderSize>());
    if (!len) {
      uint32_t announced = 0;
      std::memcpy(&announced, pending.data(), sizeof announced);
      fail(fmt::format("share server: protocol error: the guest sent a FUSE request of {} bytes "
                       "(a request has {} to {}); the share is stopped",
                       announced, kInHeaderSize, kMaxMessage));
      return false;
    }
    if (filled_ < *len) return true;
    const std::string reply = session_.handle(pending.first(*len));
    {
      std::lock_guard lock(stats_mutex_);
      ++stats_.requests;
    }
    if (!reply.empty() && !send_reply(reply)) return false;
    std::memmove(buffer_.data(), buffer_.data() + *len, filled_ - *len);
    filled_ -= *len;
  }
  return true;
}

bool ShareServer::send_reply(const std::string& reply) {
  size_t sent = 0;
  while (sent < reply.size()) {
    const ssize_t n = ::send(fd_.get(), reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EPIPE || errno == ECONNRESET) return false;  // the peer hung up
    if (errno != EAGAIN) {
      fail(fmt::format("share server: writing a reply to the share socket failed: {}", std::strerror(errno)));
      return false;
    }
    if (wait_for(POLLOUT) != Wait::ready) return false;
  }
  return true;
}

}  // namespace kiln::share
