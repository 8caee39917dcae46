// Spawning helper processes (qemu, apt-get, the host's dynamic loader).
#pragma once

#include "common/result.h"

#include <sys/types.h>

#include <string>
#include <vector>

namespace kiln {

struct SpawnOptions {
  int stdin_fd = -1;   ///< -1: /dev/null
  int stdout_fd = -1;  ///< -1: /dev/null
  int stderr_fd = -1;  ///< -1: /dev/null
  /// Kill the child with SIGKILL if kiln dies first (even by SIGKILL), so no VM outlives it.
  bool die_with_parent = true;
  /// Start the child in its own process group (so a terminal ^C reaches kiln only).
  bool own_process_group = true;
};

/// A child process that is killed and reaped when this object dies.
class ChildProcess {
 public:
  static Result<ChildProcess> spawn(const std::vector<std::string>& argv, const SpawnOptions& options);
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  /// Non-blocking: true (and the wait status) once the child has exited.
  bool poll_exited(int* status);
  /// Blocking wait; returns the wait status.
  int wait();
  /// SIGKILL and reap. Safe to call more than once.
  void kill();

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

struct CapturedRun {
  int exit_code = -1;  ///< -1 when killed by a signal
  std::string out;
  std::string err;
};

/// Run to completion, capturing stdout and stderr (each capped at `max_output` bytes).
Result<CapturedRun> run_captured(const std::vector<std::string>& argv, size_t max_output = 16 << 20);

/// Describe a wait status for a message ("exited with code 3", "killed by signal 9").
std::string describe_wait_status(int status);

}  // namespace kiln
