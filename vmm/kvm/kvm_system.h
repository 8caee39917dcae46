// /dev/kvm itself: the API check, the capabilities kiln's VMM relies on, and a
// usability probe that runs a tiny guest (opening /dev/kvm proves little: a
// host with broken nested virtualisation opens it and then cannot run guests).
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

#include <chrono>
#include <string>

namespace kiln::vmm::kvm {

class KvmSystem {
 public:
  /// Open /dev/kvm, check the API version and every capability the VMM uses.
  /// The error says what is missing and suggests --engine qemu.
  static Result<KvmSystem> open();

  int fd() const { return fd_.get(); }
  /// Size of the kvm_run area each vCPU fd maps.
  size_t vcpu_mmap_size() const { return vcpu_mmap_size_; }
  /// KVM_CHECK_EXTENSION on /dev/kvm (0 = absent).
  int check_extension(unsigned cap) const;

 private:
  KvmSystem(UniqueFd fd, size_t mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(mmap_size) {}
  UniqueFd fd_;
  size_t vcpu_mmap_size_ = 0;
};

/// Can kiln's VMM run guests here? Creates a VM with the in-kernel irqchip and one
/// vCPU and runs a few real-mode instructions that end in an OUT. Bounded by
/// `timeout` (a vCPU that never exits is interrupted). The error says which step
/// failed. Passing is necessary, not sufficient: a host whose nested KVM runs this
/// but crawls through Linux's boot (measured: this project's CI host) is caught by
/// the runner's per-boot verdict after one failed auto bake (accel.h).
Result<void> probe_usable(std::chrono::milliseconds timeout = std::chrono::milliseconds(500));

}  // namespace kiln::vmm::kvm
