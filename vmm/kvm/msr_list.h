// Which MSRs a snapshot carries, and the MSR values Linux needs at boot.
//
// KVM_GET_MSR_INDEX_LIST (on /dev/kvm) names the MSRs whose guest values KVM keeps
// — the ones a save must read and a restore must write. (KVM_GET_MSR_FEATURE_INDEX_LIST
// is something else: read-only host capability MSRs queried on /dev/kvm, not vCPU
// state.) Some listed MSRs are refused for a given vCPU (PMU MSRs when CPUID hides
// the PMU, nested-virt MSRs without VMX/SVM), and MTRRs are vCPU state KVM does not
// list, so the save list is: listed ∪ MTRRs, minus a deny list, minus what this
// vCPU refuses to read back or write back (probed once, when the golden VM boots;
// the list travels in the snapshot, so a restore never probes).
#pragma once

#include "common/result.h"

#include "vmm/kvm/linux_kvm.h"

#include <cstdint>
#include <span>
#include <vector>

namespace kiln::vmm::kvm {

inline constexpr uint32_t kMsrIa32Tsc = 0x10;
inline constexpr uint32_t kMsrIa32TscDeadline = 0x6e0;
inline constexpr uint32_t kMsrIa32MiscEnable = 0x1a0;
inline constexpr uint32_t kMsrMtrrDefType = 0x2ff;

/// Upper bound on MSRs in one vCPU's state (KVM lists < 200 today).
inline constexpr uint32_t kMaxSavedMsrs = 1024;

/// KVM_GET_MSR_INDEX_LIST on the /dev/kvm fd.
Result<std::vector<uint32_t>> kvm_msr_index_list(int kvm_fd);

/// Pure: `listed` ∪ MTRRs, minus MSRs a snapshot must not carry; sorted, unique.
std::vector<uint32_t> msr_save_candidates(std::span<const uint32_t> listed);

/// The candidates this vCPU both returns from KVM_GET_MSRS and takes back with
/// KVM_SET_MSRS. Call once per golden boot, after KVM_SET_CPUID2 and the boot MSRs,
/// before the first KVM_RUN (it writes back the values it read).
Result<std::vector<uint32_t>> probe_msrs_to_save(int vcpu_fd, std::span<const uint32_t> candidates);

/// What Linux expects from firmware: fast strings on, SYSENTER/SYSCALL MSRs zero,
/// TSC 0, MTRRs enabled with write-back as the default memory type.
std::vector<kvm_msr_entry> boot_msrs();

/// KVM_GET_MSRS for `indices` (any count). The error names the first MSR refused.
Result<std::vector<kvm_msr_entry>> get_msrs(int vcpu_fd, std::span<const uint32_t> indices);
/// KVM_SET_MSRS (any count). The error names the first MSR refused.
Result<void> set_msrs(int vcpu_fd, std::span<const kvm_msr_entry> entries);

}  // namespace kiln::vmm::kvm
