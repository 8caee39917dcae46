// The guest's network at boot: loopback, plus one private interface that gives the
// guest non-loopback addresses without any route off the machine. Each step logs its
// own failures and carries on, like the rest of the guest set-up.
#pragma once

namespace kiln::agent {

/// Brings up the loopback interface: tests often talk to themselves over 127.0.0.1 and ::1.
void bring_up_loopback();

/// Brings up dummy0 (the `dummy` module's interface; there is no NIC) with
/// 10.254.0.1/32 and fd00:6b69:6c6e::1/128. glibc's getaddrinfo with AI_ADDRCONFIG
/// returns a family only when an interface has a non-loopback address of it, so
/// without these a client asking for "localhost" that way gets no address at all.
void bring_up_private_interface();

}  // namespace kiln::agent
