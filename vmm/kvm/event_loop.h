// The VM's I/O thread: waits on device fds (the agent channel's socket) and
// calls the device when they are ready. Each source says what it wants to wait
// for right now; wake() makes the loop ask again (a vCPU changed that, e.g. the
// guest posted receive buffers). stop() joins the thread: during a snapshot no
// device moves bytes into guest RAM.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

namespace kiln::vmm::kvm {

class EventLoop {
 public:
  struct Source {
    int fd = -1;
    /// poll() events wanted now (POLLIN/POLLOUT), 0 for none. Called on the I/O thread.
    std::function<short()> interest;
    /// Called on the I/O thread with the revents poll() reported.
    std::function<void(short revents)> ready;
  };

  static Result<std::unique_ptr<EventLoop>> create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Add before start().
  void add(Source source) { sources_.push_back(std::move(source)); }
  void start();
  /// Re-evaluate every source's interest. Thread-safe, async-signal-safe, cheap.
  void wake();
  /// End the thread and join it (idempotent). start() may be called again afterwards.
  void stop();

 private:
  explicit EventLoop(UniqueFd wake_fd) : wake_fd_(std::move(wake_fd)) {}
  void loop();

  UniqueFd wake_fd_;  // eventfd
  std::vector<Source> sources_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
};

}  // namespace kiln::vmm::kvm
