#include "vmm/kvm/vcpu_kick.h"

#include <signal.h>

#include <mutex>

namespace kiln::vmm::kvm {
namespace {

void on_kick(int) {}  // only interrupts KVM_RUN

}  // namespace

int vcpu_kick_signal() {
  static std::once_flag once;
  // SIGRTMIN+2: kiln uses no real-time signals; glibc reserves the two below SIGRTMIN.
  static const int signal = SIGRTMIN + 2;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    ::sigaction(signal, &sa, nullptr);
  });
  return signal;
}

void kick_thread(pthread_t thread) { ::pthread_kill(thread, vcpu_kick_signal()); }

}  // namespace kiln::vmm::kvm
