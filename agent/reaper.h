// Child reaping for PID 1. Every orphan in the guest is re-parented to the agent,
// so it must collect all of them, not only the commands it started; SIGCHLD is
// blocked and read from a signalfd so the serve and exec loops can poll() it.
#pragma once

#include <sys/types.h>

#include <optional>

#include "agent/status.h"
#include "common/unique_fd.h"

namespace kiln::agent {

class Reaper {
 public:
  /// Blocks SIGCHLD in the agent and opens the signalfd. Children must unblock it (see exec_session).
  static std::optional<Reaper> create(std::string* error);

  /// Poll this for POLLIN: a child changed state.
  int fd() const { return sigfd_.get(); }

  /// Starts recording the exit status of `pid` (the current command).
  void watch(pid_t pid);
  /// Collects every exited child without blocking. Returns the watched child's
  /// wait status once it has been collected (and stops watching it).
  std::optional<int> reap();

 private:
  explicit Reaper(UniqueFd fd) : sigfd_(std::move(fd)) {}
  UniqueFd sigfd_;
  pid_t watched_ = -1;
  std::optional<int> watched_status_;
};

}  // namespace kiln::agent
