#include "agent/channel.h"

#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "agent/log.h"
#include "agent/virtio_port.h"
#include "common/clock.h"

namespace kiln::agent {

std::optional<Channel> Channel::open_port(const char* name, int wait_ms, std::string* error) {
  const Deadline deadline = deadline_after(std::chrono::milliseconds(wait_ms));
  for (;;) {
    std::string path = find_virtio_port(name);
    if (!path.empty()) return open(path.c_str(), poll_timeout_ms(deadline), error);
    if (Clock::now() >= deadline) {
      *error = cat("no virtio-serial port named ", name, " appeared");
      return std::nullopt;
    }
    ::usleep(20'000);
  }
}

std::optional<Channel> Channel::open(const char* path, int wait_ms, std::string* error) {
  const Deadline deadline = deadline_after(std::chrono::milliseconds(wait_ms));
  int fd = -1;
  for (;;) {
    fd = ::open(path, O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) break;
    int err = errno;
    if ((err != ENOENT && err != ENXIO && err != ENODEV) || Clock::now() >= deadline) {
      *error = cat("cannot open ", path, ": ", errno_text(err));
      return std::nullopt;
    }
    ::usleep(20'000);
  }
  UniqueFd owned(fd);
  // A virtio-serial port is not a tty and passes bytes untouched. A console (hvc) is:
  // without raw mode its line discipline would echo and translate, corrupting frames.
  if (!::isatty(fd)) return Channel(std::move(owned));
  termios tio{};
  if (::tcgetattr(fd, &tio) != 0) {
    *error = sys_error(cat("tcgetattr ", path));
    return std::nullopt;
  }
  ::cfmakeraw(&tio);
  tio.c_cc[VMIN] = 1;
  tio.c_cc[VTIME] = 0;
  if (::tcsetattr(fd, TCSANOW, &tio) != 0) {
    *error = sys_error(cat("tcsetattr ", path));
    return std::nullopt;
  }
  return Channel(std::move(owned));
}

Status Channel::send(proto::MsgType type, std::string_view payload) {
  const std::string frame = proto::encode_frame(type, payload);
  const char* p = frame.data();
  size_t left = frame.size();
  while (left > 0) {
    ssize_t n = ::write(fd_.get(), p, left);
    if (n > 0) {
      p += n;
      left -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Status::fail(sys_error("cannot write to the host channel"));
    pollfd pfd{fd_.get(), static_cast<short>(POLLOUT | (queue_full() ? 0 : POLLIN)), 0};
    if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return Status::fail(sys_error("poll on the host channel"));
    if ((pfd.revents & POLLIN) != 0) read_available();
  }
  return Status::ok();
}

void Channel::read_available() {
  static std::vector<char> buf(64 * 1024);
  while (!queue_full()) {
    ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      hung_up_ = false;
      return;
    }
    if (n <= 0) {
      if (!hung_up_) log(n == 0 ? std::string("host channel: end of file") : sys_error("host channel read"));
      hung_up_ = true;
      return;
    }
    hung_up_ = false;
    bool ok = decoder_.feed(buf.data(), static_cast<size_t>(n));
    // Frames completed before any garbage are still good: take them first.
    while (auto frame = decoder_.next()) {
      queued_bytes_ += frame->payload.size();
      queue_.push_back(std::move(*frame));
    }
    if (!ok || decoder_.failed()) {
      log("garbage on the host channel: ", decoder_.error(), "; dropping ", decoder_.buffered(),
          " buffered bytes and resynchronising");
      decoder_ = proto::FrameDecoder();
      garbage_seen_ = true;
    }
  }
}

std::optional<proto::Frame> Channel::pop() {
  if (queue_.empty()) return std::nullopt;
  proto::Frame f = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= f.payload.size();
  return f;
}

std::optional<proto::Frame> Channel::pop_stream() {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [](const proto::Frame& f) { return proto::is_stream_message(f.type); });
  if (it == queue_.end()) return std::nullopt;
  proto::Frame f = std::move(*it);
  queue_.erase(it);
  queued_bytes_ -= f.payload.size();
  return f;
}

bool Channel::contains(proto::MsgType type) const {
  return std::any_of(queue_.begin(), queue_.end(), [type](const proto::Frame& f) { return f.type == type; });
}

}  // namespace kiln::agent
