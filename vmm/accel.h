// Choosing the CPU accelerator: KVM when it really works on this host, else TCG.
//
// /dev/kvm being openable is not enough: on hosts with broken nested
// virtualisation KVM runs a minimal guest but Linux hangs early in boot. Only a
// real boot can tell, so the runner records a per-boot verdict
// (mark_kvm_unusable) when an auto-selected KVM failed to bake a guest that then
// came up without KVM (docs/engines.md, "When KVM is marked unusable"), and
// "auto" honours it until the host reboots.
#pragma once

#include "common/result.h"

#include <optional>
#include <string>
#include <string_view>

namespace kiln::vmm {

enum class Accel { tcg, kvm };

/// "tcg" / "kvm", as qemu's -accel and the engine identity spell it.
const char* accel_name(Accel accel);

/// The accelerator an engine runs with, and how it was picked.
struct AccelChoice {
  Accel accel = Accel::tcg;
  bool auto_selected = false;  ///< true when the user asked for "auto"
  std::string reason;          ///< why (for -v): "/dev/kvm works", "no /dev/kvm: ..."
};

/// Can this process run KVM guests? Opens /dev/kvm read-write, checks
/// KVM_GET_API_VERSION == 12 and creates (and drops) a VM. The error says what failed.
Result<void> probe_kvm();

/// Resolve `requested` ("auto", "kvm" or "tcg"). "kvm" fails with the probe's reason
/// when KVM is unusable; "auto" never fails on a valid name: it falls back to TCG.
Result<AccelChoice> choose_accel(std::string_view requested);

/// Remember, until this host reboots, that KVM cannot run kiln's guests here. Only for a
/// failure that proves it (the runner's rule: runner/golden.cpp). Best effort: failing to
/// store the verdict only costs a slower fallback next time.
void mark_kvm_unusable(const std::string& reason);
/// Has mark_kvm_unusable() been called since this host booted?
bool kvm_marked_unusable();
/// The recorded reason, if a verdict for this boot exists.
std::optional<std::string> kvm_unusable_reason();

/// Remember, until this host reboots, that a probe guest ran on /dev/kvm (the kvm
/// engine's probe: more than probe_kvm() checks). "auto" then trusts KVM without
/// creating a probe VM on every run — KVM_CREATE_VM alone costs 30-120 ms on some
/// hosts. A failed bake still records mark_kvm_unusable(), which wins. Best effort.
void mark_kvm_ran_a_guest();
/// Has mark_kvm_ran_a_guest() been called since this host booted?
bool kvm_ran_a_guest_this_boot();

}  // namespace kiln::vmm
