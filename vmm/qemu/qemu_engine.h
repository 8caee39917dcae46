// The QEMU engine: drives qemu-system-x86_64 -M microvm (KVM or TCG).
#pragma once

#include "vmm/accel.h"
#include "vmm/engine.h"
#include "vmm/qemu/qemu_vm.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace kiln::vmm::qemu {

class QemuEngine final : public Engine {
 public:
  /// Find qemu, learn its version (cached) and pick the accelerator per `options.accel`.
  static Result<std::unique_ptr<QemuEngine>> create(const EngineOptions& options);

  std::string name() const override { return "qemu"; }
  /// identity_for() this engine's QEMU version, accelerator and host.
  std::string identity() const override;
  bool on_kvm() const override { return accel_.accel == Accel::kvm; }
  Result<std::unique_ptr<Vm>> boot(const GuestSpec& spec, const SnapshotFiles& files) override;
  Result<std::unique_ptr<Vm>> restore(const GuestSpec& spec, const SnapshotFiles& files) override;
  Result<std::unique_ptr<Vm>> restore_for_layer(const GuestSpec& spec, const SnapshotFiles& from,
                                                const SnapshotFiles& to) override;
  /// restore() up to the moment the guest would run: qemu started, state loaded, vCPUs
  /// stopped. The pool daemon keeps such VMs ready; QemuVm::resume() starts one.
  Result<std::unique_ptr<QemuVm>> restore_paused(const GuestSpec& spec, const SnapshotFiles& files);
  /// QEMU maps one memory file: layers are flattened for it (docs/snapshot-format.md).
  bool maps_overlays() const override { return false; }

  /// The guests this engine boots: microvm maps RAM that does not fit below its 4 GiB
  /// device window above 4 GiB, so memory is bounded by kiln's sanity cap (1 TiB);
  /// vCPUs by kiln's cap of 255 (8-bit xAPIC IDs: no interrupt remapping on microvm).
  static EngineLimits limits();

  /// What a QEMU snapshot depends on besides the guest spec (docs/engines.md):
  /// "qemu-<version>/<device layout>/tcg/tsc-<kHz>khz": under TCG the guest's TSC ticks
  /// at the host's rate and is told that rate (`tsc_khz`, tcg_tsc.h; "tsc-calibrated"
  /// when it is not told and calibrates itself);
  /// "qemu-<version>/<device layout>/kvm/<host CPU>": -cpu host shows the guest the
  /// host's CPU (`host_cpu`, kvm::CpuIdentity::to_string()).
  static std::string identity_for(const std::string& version, Accel accel, std::optional<uint32_t> tsc_khz,
                                  const std::string& host_cpu);

  /// The accelerator in use and whether "auto" picked it (the runner retries with TCG
  /// when an auto-picked KVM cannot boot the guest, and marks KVM unusable once TCG could).
  const AccelChoice& accel() const { return accel_; }
  const std::filesystem::path& binary() const { return binary_; }
  const std::string& version() const { return version_; }
  void set_timeouts(const QemuTimeouts& timeouts) { timeouts_ = timeouts; }

 private:
  QemuEngine(std::filesystem::path binary, std::string version, AccelChoice accel, std::optional<uint32_t> tsc_khz,
             std::string host_cpu)
      : binary_(std::move(binary)),
        version_(std::move(version)),
        accel_(std::move(accel)),
        tsc_khz_(tsc_khz),
        host_cpu_(std::move(host_cpu)) {}
  QemuCommand command_for(const GuestSpec& spec, const SnapshotFiles& files, LaunchMode mode) const;

  std::filesystem::path binary_;
  std::string version_;
  AccelChoice accel_;
  std::optional<uint32_t> tsc_khz_;  // TCG only: the guest is told its TSC rate (tcg_tsc.h)
  std::string host_cpu_;             // KVM only: the host CPU -cpu host passes through
  QemuTimeouts timeouts_;
};

}  // namespace kiln::vmm::qemu
