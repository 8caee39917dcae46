// One vCPU's architectural state, as plain data (the live vCPU is an fd the core
// owns): what KVM_GET_* returns, saved into section "vcpu.<N>" of the state file
// and written back with KVM_SET_* into a fresh vCPU. Byte layout and the restore
// order: docs/kvm-state-format.md.
#pragma once

#include "common/result.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/kvm/cpuid.h"

#include "vmm/kvm/linux_kvm.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

class StateWriter;
class StateReader;

struct VcpuState {
  CpuidTable cpuid;
  kvm_mp_state mp_state{};
  kvm_regs regs{};
  bool has_sregs2 = false;  ///< which of the two below is meaningful
  kvm_sregs sregs{};
  kvm_sregs2 sregs2{};
  std::vector<uint8_t> xsave;  ///< exactly KvmCaps::xsave_size bytes (struct kvm_xsave + extra)
  kvm_xcrs xcrs{};
  kvm_debugregs debugregs{};
  kvm_lapic_state lapic{};
  std::vector<kvm_msr_entry> msrs;  ///< includes IA32_TSC: the guest's TSC at the save
  kvm_vcpu_events events{};
  uint32_t tsc_khz = 0;  ///< the guest's TSC frequency (KVM_GET_TSC_KHZ)
};

/// Read a paused vCPU's state. `msrs` is the list probe_msrs_to_save() gave at boot.
/// Every vCPU of the VM must be out of KVM_RUN (events are only consistent then), and
/// a vCPU that last exited for port/MMIO I/O must first re-enter KVM_RUN once with
/// kvm_run::immediate_exit = 1: KVM finishes that instruction only on the next entry.
Result<VcpuState> save_vcpu(int vcpu_fd, const KvmCaps& caps, std::span<const uint32_t> msrs);

/// Write `state` into a vCPU that has never run. Guest RAM must already be registered
/// (KVM_SET_USER_MEMORY_REGION): paravirt MSRs (PV EOI, steal time, kvmclock) point
/// into it and KVM checks them. Calls, in the order KVM needs:
/// TSC frequency, CPUID, MP state, regs, sregs, xsave, xcrs, debug regs, LAPIC
/// (after sregs: sregs carry the APIC base), MSRs (after LAPIC: TSC deadline needs
/// it; IA32_TSC before TSC_DEADLINE), vCPU events last (SET_REGS clears pending
/// exceptions; events bring them back).
Result<void> restore_vcpu(int vcpu_fd, const KvmCaps& caps, const VcpuState& state);

/// Set IA32_TSC and then IA32_TSC_DEADLINE to their saved values again, for a vCPU
/// restored ahead of its run (the pool): it starts with the TSC the snapshot holds.
/// `msrs`: the vCPU's saved MSRs (VcpuState::msrs); the others among them are not set.
Result<void> restore_tsc(int vcpu_fd, std::span<const kvm_msr_entry> msrs);

/// Section "vcpu.<index>".
void save_vcpu_section(StateWriter& out, uint32_t index, const VcpuState& state);
/// Read and validate section "vcpu.<index>" against this host's KVM: sizes, counts
/// and the XSAVE size must match, else "snapshot taken on another CPU/kernel".
Result<VcpuState> load_vcpu_section(const StateReader& in, uint32_t index, const KvmCaps& caps);

/// Does a TSC frequency in a snapshot match this host's within the calibration
/// jitter KVM sees between host boots (250 ppm, as QEMU and Firecracker allow)?
bool tsc_khz_compatible(uint32_t saved_khz, uint32_t host_khz);

}  // namespace kiln::vmm::kvm
