// The golden snapshot a run restores from: found in the store, or baked once
// (exactly once among concurrent kilns) and published atomically.
#pragma once

#include "common/result.h"
#include "runner/guest.h"
#include "runner/progress.h"
#include "snapshot/store.h"
#include "vmm/engine.h"

#include <memory>

namespace kiln::runner {

struct Golden {
  std::unique_ptr<vmm::Engine> engine;
  snapshot::Snapshot snapshot;
  bool baked_now = false;
};

/// Find or bake the golden snapshot for `guest` on the engine chosen by `engine_options`.
/// `force` rebakes even when a usable snapshot exists (`kiln bake --force`).
Result<Golden> ensure_golden(snapshot::Store& store, const PreparedGuest& guest,
                             const vmm::EngineOptions& engine_options, Progress& progress, bool force = false,
                             bool verbose = false);

}  // namespace kiln::runner
