// Getting a vCPU thread out of KVM_RUN: a real-time signal with an empty handler
// (installed without SA_RESTART, so the ioctl returns EINTR), paired with
// kvm_run.immediate_exit so a kick that lands just before KVM_RUN is not lost.
#pragma once

#include <pthread.h>

namespace kiln::vmm::kvm {

/// The kick signal; installs its no-op handler on first use (thread-safe).
int vcpu_kick_signal();
/// Send the kick to `thread` (a vCPU thread that may be inside KVM_RUN).
void kick_thread(pthread_t thread);

}  // namespace kiln::vmm::kvm
