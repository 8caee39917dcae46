// The CPUID a kiln guest sees: KVM_GET_SUPPORTED_CPUID, made per-vCPU (APIC ids,
// topology) and trimmed to what a microVM can honour across snapshot/restore
// (no nested virtualization, no PMU, no SGX/PT, no power-management knobs), with
// the KVM paravirt leaves advertising kvmclock. Built only from KVM's table, never
// from the host's `cpuid` instruction, so the same table gives the same guest
// CPUID on every run (cpu_identity.h hashes it). Table in docs/kvm-state-format.md.
#pragma once

#include "common/result.h"

#include "vmm/kvm/linux_kvm.h"

#include <cstdint>
#include <span>
#include <vector>

namespace kiln::vmm::kvm {

using CpuidTable = std::vector<kvm_cpuid_entry2>;

/// Upper bound on entries, for KVM ioctls and for tables read from a state file.
inline constexpr uint32_t kMaxCpuidEntries = 256;

enum class CpuVendor { intel, amd, other };

/// KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd.
Result<CpuidTable> supported_cpuid(int kvm_fd);

/// The guest CPUID for vCPU `vcpu_index` of `vcpu_count` (1..kMaxVcpus): pure.
CpuidTable guest_cpuid(const CpuidTable& supported, uint32_t vcpu_index, uint32_t vcpu_count);
inline constexpr uint32_t kMaxVcpus = 64;

/// KVM_SET_CPUID2 on a vCPU fd. Must precede every other KVM_SET_* on that vCPU.
Result<void> set_vcpu_cpuid(int vcpu_fd, std::span<const kvm_cpuid_entry2> table);
/// KVM_GET_CPUID2: what the vCPU was given (for a snapshot).
Result<CpuidTable> get_vcpu_cpuid(int vcpu_fd);

/// The entry for (function, index), or nullptr. `index` is ignored for entries
/// without KVM_CPUID_FLAG_SIGNIFCANT_INDEX, as the CPU does.
const kvm_cpuid_entry2* find_cpuid(const CpuidTable& table, uint32_t function, uint32_t index = 0);
kvm_cpuid_entry2* find_cpuid(CpuidTable& table, uint32_t function, uint32_t index = 0);

/// From leaf 0's vendor string.
CpuVendor cpuid_vendor(const CpuidTable& table);

}  // namespace kiln::vmm::kvm
