// Snapshot layers the runner makes over a golden: a payload layer (the test's files
// placed) and a fixture layer (a setup command run). The first run that needs a layer
// builds it — exactly one among concurrent kilns — and every later run restores it.
#pragma once

#include "common/result.h"
#include "runner/progress.h"
#include "snapshot/store.h"
#include "vmm/engine.h"

#include <functional>
#include <string>

namespace kiln::runner {

/// How to make one layer over a parent snapshot.
struct LayerRecipe {
  std::string kind;            ///< snapshot::kLayerKindPayload or kLayerKindFixture
  std::string content_digest;  ///< what the layer adds; with the parent it keys the layer
  std::string label;           ///< for `kiln snapshots list` ("payload of db_test")
  std::string doing;           ///< progress text while it is built ("placing the payload of db_test")
  /// Changes the VM restored from the parent into what the layer holds (sync + payload,
  /// or sync + setup). The VM is saved right after, so it must leave the agent idle.
  std::function<Result<void>(vmm::Vm&)> populate;
};

struct Layer {
  snapshot::Snapshot snapshot;
  bool built_now = false;
};

/// Find the layer `recipe` over `parent`, or build and publish it. A layer the store
/// reports unusable (its parent changed, vanished or was rebaked; a corrupt file) is
/// rebuilt after one info line saying why.
Result<Layer> ensure_layer(const snapshot::Store& store, vmm::Engine& engine, const vmm::GuestSpec& spec,
                           const snapshot::Snapshot& parent, const LayerRecipe& recipe, Progress& progress);

/// Layers are on unless --no-layers or KILN_NO_LAYERS=1 (any non-empty value but "0").
bool layers_enabled(bool no_layers_flag);

/// Test seam: `hook` runs after a layer's VM is saved, right before the layer is
/// published. Nothing in kiln sets it: only runner/test_hooks.cpp does, which is linked
/// into the test-only kiln-test-hooks binary (CMake option KILN_TEST_HOOKS), never into kiln.
void set_before_layer_publish_hook(void (*hook)());

}  // namespace kiln::runner
