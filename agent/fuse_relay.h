// The share relay: a child process of the agent that carries raw FUSE messages
// between the guest kernel (/dev/fuse) and kiln's ShareServer on the host (the
// virtio-serial port proto::kSharePortName). No framing of its own: a request is
// what one read() of /dev/fuse returns and goes to the port as is; replies come
// back as a byte stream and are cut by fuse_out_header.len (FuseReplyAssembler),
// each written to /dev/fuse in one write().
//
// It runs as its own process because PID 1 blocks in mount(2) while the overlay
// mounts look the shared trees up, and those lookups need the relay to answer.
// The Reaper collects it like any orphan when it ends; it never watches it, so
// its exit is not mistaken for the command's.
#pragma once

#include <string>

#include "agent/status.h"
#include "common/unique_fd.h"

namespace kiln::agent {

/// Relays until either side ends: the FUSE connection goes away (unmounted or
/// aborted), the host closes the port, or a message breaks the size limit (the
/// share then stops: the guest's calls on it fail with ENOTCONN). Returns why it
/// stopped. `fuse_fd` behaves like /dev/fuse (one read = one request, one write
/// = one reply), `port_fd` is a byte stream; both are made non-blocking.
std::string relay_fuse(int fuse_fd, int port_fd);

/// Forks the relay process for the mounted `fuse` device and the share `port`
/// and returns at once. In the agent, both fds are closed afterwards: only the
/// relay holds the FUSE device, so when it ends the kernel aborts the connection
/// instead of leaving the guest's calls on the share waiting forever.
Status start_fuse_relay(UniqueFd fuse, UniqueFd port);

}  // namespace kiln::agent
