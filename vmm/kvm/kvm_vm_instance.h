// A running guest of the kvm engine as the runner sees it (vmm/engine.h Vm):
// the agent and share channels, the console, why it stopped, and saving it as a snapshot.
#pragma once

#include "vmm/engine.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/kvm/linux_kvm.h"
#include "vmm/kvm/machine.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace kiln::vmm::kvm {

/// What the state file's "config" section records: restore checks it against the
/// spec before creating anything, so a mismatch is a clear error, not a wrong guest.
struct MachineConfig {
  std::string kiln_version;
  uint64_t memory_bytes = 0;
  uint32_t vcpus = 0;
  std::string cmdline;                 ///< the full kernel command line the guest booted with
  std::vector<std::string> devices;    ///< device section names, in order
};

void save_config_section(StateWriter& out, const MachineConfig& config);
Result<MachineConfig> load_config_section(const StateReader& in);

/// The clocks a VM restored ahead of its run starts from (KvmEngine::restore_paused):
/// the snapshot's kvmclock and each vCPU's saved TSC, set again when it starts, so the
/// guest does not see the wait as time that passed.
struct SavedClocks {
  kvm_clock_data kvmclock{};
  std::vector<std::vector<kvm_msr_entry>> vcpu_msrs;  ///< per vCPU, its saved MSRs
};

class KvmVmInstance final : public Vm {
 public:
  /// `booted_from`: the memory file of a cold boot (shared mapping), empty for a restore.
  KvmVmInstance(std::unique_ptr<Machine> machine, MachineConfig config, CpuIdentity identity, KvmCaps caps,
                std::vector<uint32_t> msrs, std::filesystem::path booted_from);
  ~KvmVmInstance() override { destroy(); }

  /// Made by KvmEngine::restore_paused(): nothing runs until start().
  void hold_until_start(SavedClocks clocks) { held_ = std::move(clocks); }
  /// Set the held clocks again and start the vCPU and I/O threads. Once.
  Result<void> start();

  int agent_fd() const override { return machine_ ? machine_->agent_fd() : -1; }
  int share_fd() const override { return machine_ ? machine_->share_fd() : -1; }
  std::string console_output() override;
  std::optional<std::string> vmm_exited() override;
  Result<void> save_snapshot(const SnapshotFiles& files) override;
  Result<void> save_whole(const SnapshotFiles& files, Deadline deadline) override;
  void destroy() override;

 private:
  Result<void> write_state(const std::filesystem::path& file);
  Result<void> save_memory(const std::filesystem::path& file);

  std::unique_ptr<Machine> machine_;
  MachineConfig config_;
  CpuIdentity identity_;
  KvmCaps caps_;
  std::vector<uint32_t> msrs_;  // MSRs each vCPU's state carries
  std::filesystem::path booted_from_;
  std::string final_console_;   // kept after destroy() for error reports
  bool destroyed_ = false;
  std::optional<SavedClocks> held_;  // restored ahead of its run, not started yet
};

}  // namespace kiln::vmm::kvm
