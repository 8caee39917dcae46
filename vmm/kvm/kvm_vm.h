// One KVM virtual machine: its fd, the guest RAM slot, the in-kernel irqchip
// (PIC + IOAPIC + LAPICs) and PIT, and interrupt lines into them.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/kvm/device.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/kvm_system.h"

#include <memory>

namespace kiln::vmm::kvm {

/// Guest-physical layout shared by boot, devices and snapshot.
namespace layout {
inline constexpr uint64_t kMmioStart = 0xd000'0000;    ///< RAM must end below this
inline constexpr uint64_t kVirtioMmioBase = kMmioStart; ///< device i at base + i * kVirtioMmioSize
inline constexpr uint64_t kVirtioMmioSize = 0x1000;
inline constexpr uint32_t kVirtioFirstIrq = 5;           ///< device i on GSI 5 + i
inline constexpr uint64_t kTssAddress = 0xfffb'd000;     ///< 3 pages KVM needs on Intel
inline constexpr uint64_t kIdentityMapAddress = 0xfffb'c000;
}  // namespace layout

class KvmVm {
 public:
  /// KVM_CREATE_VM, TSS and identity-map addresses, irqchip, PIT.
  static Result<std::unique_ptr<KvmVm>> create(const KvmSystem& sys);

  int fd() const { return fd_.get(); }
  /// Register `memory` as slot 0 at guest-physical 0.
  Result<void> map_memory(const GuestMemory& memory);
  /// Drive GSI `gsi` (KVM_IRQ_LINE). Thread-safe (one ioctl).
  void set_irq(uint32_t gsi, bool high) const;
  /// An IrqLine for devices; valid while this KvmVm lives.
  std::unique_ptr<IrqLine> irq_line(uint32_t gsi) const;

 private:
  explicit KvmVm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace kiln::vmm::kvm
