// The kvm engine: kiln's own in-process VMM on /dev/kvm (vCPU and I/O threads in
// the kiln process, no exec anywhere). Boot maps guest RAM shared from the
// snapshot's memory file; restore parses and checks the state file first, then
// maps RAM (and diff layers) copy-on-write, creates the VM and sets its state.
#pragma once

#include "vmm/engine.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/kvm/cpuid.h"
#include "vmm/kvm/kvm_system.h"
#include "vmm/kvm/kvm_vm_instance.h"

#include <memory>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

class KvmEngine final : public Engine {
 public:
  /// Open /dev/kvm and learn the CPU identity. Fails with the reason and "use --engine qemu".
  static Result<std::unique_ptr<KvmEngine>> create(const EngineOptions& options);

  std::string name() const override { return "kvm"; }
  /// "kvm-<kiln version>/<device layout>/<cpu identity>": another kiln, device set or CPU
  /// never finds this snapshot.
  std::string identity() const override;
  bool on_kvm() const override { return true; }
  Result<std::unique_ptr<Vm>> boot(const GuestSpec& spec, const SnapshotFiles& files) override;
  Result<std::unique_ptr<Vm>> restore(const GuestSpec& spec, const SnapshotFiles& files) override;
  Result<std::unique_ptr<Vm>> restore_for_layer(const GuestSpec& spec, const SnapshotFiles& from,
                                                const SnapshotFiles& to) override;
  bool maps_overlays() const override { return true; }
  /// restore() up to the moment the guest would run: state file checked, RAM mapped,
  /// VM, vCPUs and devices created and their state set, no thread started. The pool's
  /// kvm worker keeps such a VM (runner/pool_kvm_worker.h); KvmVmInstance::start() runs it.
  Result<std::unique_ptr<KvmVmInstance>> restore_paused(const GuestSpec& spec, const SnapshotFiles& files);

  /// The guests this engine boots: RAM is one slot from guest-physical 0 that must end
  /// below the device window at layout::kMmioStart (3328 MiB: no RAM above 4 GiB yet),
  /// and the guest CPUID topology is built for at most kMaxVcpus (64) vCPUs.
  static EngineLimits limits();

  /// The kernel command line a guest of `spec` gets (spec's plus the device parameters).
  static std::string full_cmdline(const GuestSpec& spec);

 private:
  KvmEngine(KvmSystem sys, KvmCaps caps, CpuIdentity identity, CpuidTable supported, std::vector<uint32_t> msrs)
      : sys_(std::move(sys)),
        caps_(caps),
        identity_(std::move(identity)),
        supported_(std::move(supported)),
        msr_candidates_(std::move(msrs)) {}

  KvmSystem sys_;
  KvmCaps caps_;
  CpuIdentity identity_;
  CpuidTable supported_;
  std::vector<uint32_t> msr_candidates_;
};

}  // namespace kiln::vmm::kvm
