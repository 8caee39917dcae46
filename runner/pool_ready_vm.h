// A VM the pool daemon holds ready for a run (docs/pool.md): restored up to the moment
// it would run, then handed to the run that takes it and never used again. qemu's is
// the qemu process itself (its descriptors go to the run); the kvm engine's lives in a
// worker process (runner/pool_kvm_worker.h). Destroying one kills its VM.
#pragma once

#include "common/result.h"
#include "vmm/qemu/qemu_vm.h"

#include <memory>

namespace kiln::runner::pool {

class ReadyVm {
 public:
  virtual ~ReadyVm() = default;
  /// Has the VM (or the process holding it) died while it waited?
  virtual bool exited() = 0;
  /// Send the VM to a run over `conn` as a hit (pool_protocol.h). The VM stays this
  /// object's until it is destroyed: the daemon keeps it while the run's connection is open.
  virtual Result<void> hand_over(int conn) = 0;
};

/// A qemu VM restored and paused (QemuEngine::restore_paused).
std::unique_ptr<ReadyVm> ready_qemu_vm(std::unique_ptr<vmm::qemu::QemuVm> vm);

}  // namespace kiln::runner::pool
