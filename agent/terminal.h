// A command's terminal (StdinMode::terminal): a fresh pseudo-terminal pair. The
// slave becomes the command's stdin, stdout, stderr and controlling terminal;
// the agent keeps the master, types the host's keystrokes into it and sends
// back what the command's side writes, so the guest's line discipline does what
// a terminal does (echo, ^C to SIGINT of the foreground job, ^Z, SIGWINCH).
#pragma once

#include <optional>
#include <string>

#include "agent/protocol.h"
#include "common/unique_fd.h"

namespace kiln::agent {

struct Terminal {
  UniqueFd master;  ///< the agent's end (O_NONBLOCK, O_CLOEXEC)
  UniqueFd slave;   ///< the command's end (O_NOCTTY, O_CLOEXEC: the agent never owns it)
};

/// Opens a new pair on the guest's devpts, `size` cells large (0: unknown).
std::optional<Terminal> open_terminal(proto::WindowSize size, std::string* error);

/// The terminal is now `size`; the kernel tells its foreground job with SIGWINCH.
void resize_terminal(int master, proto::WindowSize size);

}  // namespace kiln::agent
