// What the guest agent's relay does, on this host: FUSE requests read from /dev/fuse
// (one read, one request) go to a stream socket as they are; replies from the socket
// are cut at each fuse_out_header.len and written to /dev/fuse with one write each.
// Two threads, both stoppable: each polls its source and an eventfd, so the relay
// ends on stop() even if the kernel never aborts the connection.
#pragma once

#include "common/unique_fd.h"
#include "share/fuse_wire.h"

#include <linux/fuse.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::share::testing {

class FuseRelay {
 public:
  /// `fuse` is a /dev/fuse fd opened O_NONBLOCK, `socket` the peer of the share
  /// server's socket; both stay owned by the caller and must outlive the relay.
  FuseRelay(int fuse, int socket) : fuse_(fuse), socket_(socket), stop_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    requests_ = std::thread([this] { forward_requests(); });
    replies_ = std::thread([this] { forward_replies(); });
  }
  ~FuseRelay() { stop(); }
  FuseRelay(const FuseRelay&) = delete;
  FuseRelay& operator=(const FuseRelay&) = delete;

  void stop() {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
    if (requests_.joinable()) requests_.join();
    if (replies_.joinable()) replies_.join();
  }
  uint64_t requests() const { return requests_count_; }
  /// Why the relay ended, if not by stop() or the kernel ending the connection.
  std::string failure() const {
    std::lock_guard lock(mutex_);
    return failure_;
  }

 private:
  /// Wait for `fd` to be readable; false once stop() was called.
  bool wait(int fd) {
    for (;;) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno == EINTR) continue;
      return fds[1].revents == 0;
    }
  }

  void forward_requests() {
    std::vector<char> buf(kMaxMessage);
    while (wait(fuse_)) {
      const ssize_t n = ::read(fuse_, buf.data(), buf.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOENT)) continue;
      if (n <= 0) break;  // ENODEV: the file system was unmounted (connection aborted)
      ++requests_count_;
      for (ssize_t sent = 0; sent < n;) {
        const ssize_t w = ::send(socket_, buf.data() + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return record(std::string("relay: send: ") + std::strerror(errno));
        sent += w;
      }
    }
    ::shutdown(socket_, SHUT_WR);  // the server sees the hang-up
  }

  void forward_replies() {
    std::string pending;
    std::vector<char> buf(65536);
    while (wait(socket_)) {
      const ssize_t n = ::read(socket_, buf.data(), buf.size());
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return;
      pending.append(buf.data(), static_cast<size_t>(n));
      while (pending.size() >= sizeof(fuse_out_header)) {
        fuse_out_header h{};
        std::memcpy(&h, pending.data(), sizeof h);
        if (h.len < sizeof h || h.len > kMaxMessage) return record("relay: reply of " + std::to_string(h.len) + " bytes");
        if (pending.size() < h.len) break;
        // ENOENT: the request was interrupted and is gone; the kernel drops the reply.
        if (::write(fuse_, pending.data(), h.len) < 0 && errno != ENOENT) {
          record(std::string("relay: write to /dev/fuse: ") + std::strerror(errno));
        }
        pending.erase(0, h.len);
      }
    }
  }

  void record(std::string why) {
    std::lock_guard lock(mutex_);
    if (failure_.empty()) failure_ = std::move(why);  // keep the first
  }

  int fuse_;
  int socket_;
  UniqueFd stop_;
  std::atomic<uint64_t> requests_count_{0};
  mutable std::mutex mutex_;
  std::string failure_;
  std::thread requests_;
  std::thread replies_;
};

}  // namespace kiln::share::testing
