// `kiln run`'s restore chain: golden -> [fixture layer] -> [payload layer], the
// deepest snapshot this run can start from, each layer found or built once.
#pragma once

#include "common/result.h"
#include "runner/golden.h"
#include "runner/progress.h"
#include "runner/run_plan.h"
#include "snapshot/store.h"

namespace kiln::runner {

/// What a run restores and what is already in it.
struct RestorePoint {
  snapshot::Snapshot snapshot;
  bool payload_in_place = false;  ///< a payload layer: only sync + exec
  bool setup_done = false;        ///< a fixture layer (or one over it): the setup has run

  /// The golden itself: nothing placed, no setup run.
  static RestorePoint golden(const Golden& g) { return {g.snapshot, false, false}; }
};

/// The restore point for `plan` over `golden`: the golden alone when layers are off.
/// A layer that cannot be saved (disk full, an engine without layers) is not an error:
/// the run then works the layer-less way. A failing setup or an interrupt is.
Result<RestorePoint> choose_restore_point(const snapshot::Store& store, Golden& golden, const vmm::GuestSpec& spec,
                                          const RunPlan& plan, Progress& progress);

}  // namespace kiln::runner
