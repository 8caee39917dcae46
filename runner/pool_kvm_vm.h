// A kvm engine VM a run took from the pool (docs/pool.md): it lives in its worker
// process (runner/pool_kvm_worker.h), which this Vm drives over the control socket;
// the agent and share channels are the run's own descriptors.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/engine.h"

#include <sys/types.h>

#include <memory>

namespace kiln::runner {

struct KvmWorkerHandover {
  pid_t pid = -1;
  UniqueFd pidfd;    ///< the worker process: polled for its exit, killed through it
  UniqueFd control;  ///< the worker's control socket
  UniqueFd agent, share;
  UniqueFd lease;    ///< the run's connection to the daemon: the VM is the run's while it is open
};

/// Take over the worker's VM and start it (its clocks set to the snapshot's again).
Result<std::unique_ptr<vmm::Vm>> adopt_kvm_worker(KvmWorkerHandover handover);

}  // namespace kiln::runner
