#include "vmm/kvm/event_loop.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>

namespace kiln::vmm::kvm {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
  UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!fd) return make_error("eventfd for the VM's I/O thread failed: {}", std::strerror(errno));
  return std::unique_ptr<EventLoop>(new EventLoop(std::move(fd)));
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
}

void EventLoop::wake() {
  uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop wakes anyway.
  (void)!::write(wake_fd_.get(), &one, sizeof one);
}

void EventLoop::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  wake();
  thread_.join();
}

void EventLoop::loop() {
  ::pthread_setname_np(::pthread_self(), "kiln-io");
  std::vector<pollfd> fds(sources_.size() + 1);
  while (!stopping_) {
    fds[0] = pollfd{wake_fd_.get(), POLLIN, 0};
    for (size_t i = 0; i < sources_.size(); ++i) {
      short want = sources_[i].interest();
      // No interest: leave the fd out entirely, or a hung-up peer (POLLHUP is always
      // reported) would spin this loop.
      fds[i + 1] = pollfd{want != 0 ? sources_[i].fd : -1, want, 0};
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;  // EFAULT/EINVAL/ENOMEM: nothing sensible left to wait on
    }
    if (fds[0].revents != 0) {
      uint64_t count = 0;
      (void)!::read(wake_fd_.get(), &count, sizeof count);
    }
    if (stopping_) break;
    for (size_t i = 0; i < sources_.size(); ++i)
      if (fds[i + 1].revents != 0) sources_[i].ready(fds[i + 1].revents);
  }
}

}  // namespace kiln::vmm::kvm
