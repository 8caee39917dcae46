// The VM-wide state KVM keeps in the kernel: the in-kernel irqchip (both 8259
// PICs and the IOAPIC), the PIT and kvmclock. Plain data, saved into section "vm"
// of the state file. Byte layout: docs/kvm-state-format.md.
#pragma once

#include "common/result.h"

#include "vmm/kvm/linux_kvm.h"

namespace kiln::vmm::kvm {

class StateWriter;
class StateReader;

struct VmState {
  kvm_irqchip pic_master{};
  kvm_irqchip pic_slave{};
  kvm_irqchip ioapic{};
  kvm_pit_state2 pit{};
  /// kvmclock at the save. `flags` is kept for the record (TSC_STABLE, REALTIME,
  /// HOST_TSC) but never replayed: see restore_vm.
  kvm_clock_data clock{};
};

/// Read the VM's irqchip, PIT and clock. All vCPUs must be out of KVM_RUN.
Result<VmState> save_vm(int vm_fd);

/// Into a VM that has KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 done and whose vCPUs
/// have not run; call it before restore_vcpu. Order: PIT, clock, PIC master, PIC
/// slave, IOAPIC. The clock is set to exactly the saved kvmclock value (flags 0,
/// not KVM_CLOCK_REALTIME): the guest resumes as if no time had passed, in step
/// with its restored TSC, and the agent sets the wall clock after every restore.
/// Advancing kvmclock by the real time since the bake (possibly days) would expire
/// every guest timer at once and leave kvmclock and TSC disagreeing.
Result<void> restore_vm(int vm_fd, const VmState& state);

/// Set kvmclock to exactly the saved value again (as restore_vm does): a VM restored
/// ahead of its run (the pool) would otherwise see the wait as time that passed.
Result<void> restore_clock(int vm_fd, const kvm_clock_data& saved);

/// Section "vm".
void save_vm_section(StateWriter& out, const VmState& state);
/// Read and validate section "vm" (chip ids, PIT modes, clock flags).
Result<VmState> load_vm_section(const StateReader& in);

}  // namespace kiln::vmm::kvm
