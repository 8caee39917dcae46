// `kiln run`'s "get a VM" phase: a running VM from the chosen restore point, taken
// from the warm pool when its daemon has one ready (runner/pool_client.h), else restored. A snapshot the engine finds corrupt is healed (the golden rebaked, a layer
// bypassed for this run); any other failure — a resource limit (EMFILE, ENOMEM,
// EAGAIN), a dead VMM — is reported as it is, and nothing is rebaked for it.
#pragma once

#include "common/result.h"
#include "runner/golden.h"
#include "runner/guest.h"
#include "runner/progress.h"
#include "runner/restore_chain.h"
#include "snapshot/store.h"

#include <memory>

namespace kiln::runner {

struct AcquiredVm {
  std::unique_ptr<vmm::Vm> vm;
  RestorePoint point;  ///< where it really came from (the golden, when a layer was bypassed)
};

/// What a rebake of the golden needs (it goes through ensure_golden again).
struct GoldenSource {
  snapshot::Store& store;
  const PreparedGuest& guest;
  const vmm::EngineOptions& engine_options;
  bool verbose = false;
};

/// Restore `point` into a running VM; marks the snapshots it used as used.
Result<AcquiredVm> acquire_vm(const GoldenSource& source, Golden& golden, RestorePoint point, Progress& progress);

}  // namespace kiln::runner
