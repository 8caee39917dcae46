// Starting the command of an EXEC: fork, reset the child to a clean slate, wire
// its stdio, execve along PATH. Whether it started is known before returning:
// an exec failure comes back through a CLOEXEC pipe, not as exit code 127.
#pragma once

#include <sys/types.h>

#include <string>

#include "agent/protocol.h"
#include "agent/reaper.h"

namespace kiln::agent {

/// The command's fds 0-2. `in` -1 means the guest's /dev/null. With `terminal`,
/// all three are one terminal's slave, which becomes the controlling terminal of the
/// command's new session (owned by the user it runs as).
struct ChildStdio {
  int in = -1;
  int out = -1;
  int err = -1;
  bool terminal = false;
};

struct Spawned {
  enum class Kind {
    running,      ///< `pid` runs the command (the reaper watches it)
    exec_failed,  ///< it never started: `failed`
    not_run,      ///< an agent-side failure before fork: `error`
  };
  Kind kind = Kind::not_run;
  pid_t pid = -1;
  proto::ExecFailed failed;
  std::string error;
};

/// Starts `req` in its cwd (created if missing) with `stdio`, in its own session
/// so the whole process tree can be killed. The reaper watches it from the fork on.
Spawned spawn_command(const proto::Exec& req, const ChildStdio& stdio, Reaper& reaper);

}  // namespace kiln::agent
