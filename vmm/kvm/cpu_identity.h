// What a snapshot's CPU state depends on: the host CPU and KVM as a guest sees
// them. A snapshot's vCPU state (CPUID, MSRs, XSAVE layout) is only valid where
// all of these are the same, so the identity goes into the engine identity string
// (part of the snapshot key: another CPU never even finds the snapshot) and into
// the state file's "meta" section (checked again on restore: a copied store or a
// kernel upgrade gives a clear "rebake" error, never a wrong restore).
#pragma once

#include "common/result.h"
#include "vmm/kvm/cpuid.h"

#include <cstdint>
#include <span>
#include <string>

namespace kiln::vmm::kvm {

class StateWriter;
class StateReader;

/// What this host's KVM offers that saving and restoring vCPU state depends on.
struct KvmCaps {
  int api_version = 0;
  /// Bytes KVM_GET_XSAVE2 fills (KVM_CAP_XSAVE2); 4096 = plain KVM_GET_XSAVE.
  uint32_t xsave_size = 0;
  bool xsave2 = false;       ///< KVM_GET_XSAVE2 exists
  bool sregs2 = false;       ///< KVM_GET/SET_SREGS2 (PDPTRs kept, no interrupt bitmap)
  bool tsc_control = false;  ///< KVM_SET_TSC_KHZ can scale a guest's TSC

  /// KVM_GET_API_VERSION and KVM_CHECK_EXTENSION on the /dev/kvm fd. Fails
  /// (naming the missing piece) when KVM lacks something restore needs:
  /// XSAVE, XCRS, vCPU events, debug registers, in-kernel irqchip, PIT2, clock.
  static Result<KvmCaps> probe(int kvm_fd);
  /// The same values without probe()'s requirements (for QEMU on KVM, which
  /// needs none of them from kiln): never fails.
  static KvmCaps query(int kvm_fd);
  /// Bitmask of the boolean capabilities (for the identity).
  uint32_t flags() const;
};

struct CpuIdentity {
  std::string vendor;  ///< "GenuineIntel", "AuthenticAMD"
  uint32_t family = 0, model = 0, stepping = 0;
  std::string cpuid_digest;  ///< 16 hex digits over the guest CPUID (vCPU 0 of 1)
  std::string msr_digest;    ///< 16 hex digits over KVM_GET_MSR_INDEX_LIST, sorted
  uint32_t xsave_size = 0;
  int api_version = 0;
  uint32_t cap_flags = 0;

  /// Short and stable, e.g. "AuthenticAMD-25.17.1-c3f1a2b4-m09e1d2c3-x4096-k12.3".
  std::string to_string() const;
  bool operator==(const CpuIdentity&) const = default;
};

/// The pure part: an identity from KVM's tables.
CpuIdentity make_cpu_identity(const CpuidTable& supported, std::span<const uint32_t> msr_index_list,
                              const KvmCaps& caps);
/// Probe /dev/kvm (`kvm_fd`): supported CPUID, MSR index list, capabilities.
Result<CpuIdentity> probe_cpu_identity(int kvm_fd, const KvmCaps& caps);

/// The identity of a host for a guest that sees KVM's CPUID passed through, as QEMU's
/// `-cpu host` does: the same fields, but the CPUID digest is over KVM's whole
/// supported table (only the APIC ids of the host CPU that answered the ioctl zeroed),
/// because such a guest also sees what kiln's guest_cpuid() trims (VMX/SVM, PMU, ...).
CpuIdentity make_passthrough_cpu_identity(const CpuidTable& supported, std::span<const uint32_t> msr_index_list,
                                          const KvmCaps& caps);
/// Probe /dev/kvm (`kvm_fd`) for make_passthrough_cpu_identity(), capabilities by KvmCaps::query().
Result<CpuIdentity> probe_passthrough_cpu_identity(int kvm_fd);

/// Section "meta": the identity of the host the snapshot was taken on.
void save_meta(StateWriter& out, const CpuIdentity& id);
/// Error "snapshot taken on another CPU/KVM (X), this host is Y; rebake" unless equal.
Result<void> check_meta(const StateReader& in, const CpuIdentity& host);

}  // namespace kiln::vmm::kvm
