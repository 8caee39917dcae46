// Finding a named virtio-serial port in the guest. The engines give each port a
// name (the agent's channel, a share's FUSE messages); the guest kernel lists it
// in /sys/class/virtio-ports/<vportNpM>/name and creates /dev/<vportNpM>.
#pragma once

#include <string>

namespace kiln::agent {

/// "/dev/vportNpM" of the port called `name`, or "" while there is none.
std::string find_virtio_port(const char* name);

}  // namespace kiln::agent
