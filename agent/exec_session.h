// EXEC: run one command in the guest, stream its output to the host live and
// its stdin from the host.
#pragma once

#include <string>
#include <vector>

#include "agent/channel.h"
#include "agent/protocol.h"
#include "agent/reaper.h"

namespace kiln::agent {

struct ExecResult {
  enum class Kind {
    exited,       ///< `exit` holds how the command ended
    exec_failed,  ///< the command never started: `failed`
    not_run,      ///< an agent-side failure before fork: `error`
    poweroff,     ///< the host asked to power off meanwhile; the command was killed
    detached,     ///< the host asked to detach: the command runs on, `held` keeps its stdio open
  };
  Kind kind = Kind::not_run;
  proto::Exit exit;
  proto::ExecFailed failed;
  std::string error;
  proto::Detached detached;
  std::vector<UniqueFd> held;  ///< the agent's ends of a detached command's stdio
};

/// Runs `req` to completion. Streams stdout_data / stderr_data frames while it
/// runs and, with StdinMode::stream, feeds stdin_data to its stdin under credit
/// (stdin_credit); the terminal reply is left to the caller, built from the result.
/// With StdinMode::terminal the command gets a new terminal `window` large (resize
/// frames change it while it runs), keystrokes go into it under the same credit,
/// and all it shows comes back as stdout_data. A detach frame ends the supervision
/// but not the command (a failed test kept for `kiln shell`, its hung process in it).
/// Returns as soon as the command's own process ends, after draining what is
/// already in its pipes: daemons it leaves behind may hold them open forever.
/// The exit counts every byte the command wrote, forwarded or not, and the OOM
/// killer's kills while it ran.
ExecResult run_exec(Channel& channel, Reaper& reaper, const proto::Exec& req, proto::WindowSize window);

}  // namespace kiln::agent
