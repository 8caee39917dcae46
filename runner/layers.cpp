#include "runner/layers.h"

#include "common/env.h"
#include "common/log.h"

#include <cstdlib>
#include <cstring>

namespace kiln::runner {
namespace {


// A plain pointer, constant-initialized: set before main() by kiln-test-hooks.
void (*before_publish_hook)() = nullptr;

Result<snapshot::Snapshot> build(const snapshot::Store& store, vmm::Engine& engine, const vmm::GuestSpec& spec,
                                 const snapshot::Snapshot& parent, const snapshot::LayerKey& key,
                                 const LayerRecipe& recipe, Progress& progress) {
  log::ScopedTimer total("layer: build");
  progress.step(recipe.doing);
  log::verbose("building {} layer {} ({}) over {}", key.kind, snapshot::short_id(key.id()), key.label, snapshot::short_id(parent.id()));
  KILN_ASSIGN_OR_RETURN(auto from, store.restore_files(parent, engine.maps_overlays()));
  KILN_ASSIGN_OR_RETURN(auto dir, store.begin_layer(key));
  std::unique_ptr<vmm::Vm> vm;
  {
    log::ScopedTimer t("layer: restore parent");
    KILN_ASSIGN_OR_RETURN(vm, engine.restore_for_layer(spec, from, dir.files()));
  }
  {
    log::ScopedTimer t("layer: populate");
    KILN_TRY(recipe.populate(*vm));
  }
  {
    log::ScopedTimer t("layer: save");
    KILN_TRY(vm->save_snapshot(dir.files()));
  }
  vm->destroy();
  if (before_publish_hook) before_publish_hook();
  log::ScopedTimer t("layer: publish");
  return store.publish_layer(std::move(dir), key, parent, !engine.maps_overlays());
}

}  // namespace

void set_before_layer_publish_hook(void (*hook)()) { before_publish_hook = hook; }

bool layers_enabled(bool no_layers_flag) {
  return !no_layers_flag && !env_flag("KILN_NO_LAYERS");
}

Result<Layer> ensure_layer(const snapshot::Store& store, vmm::Engine& engine, const vmm::GuestSpec& spec,
                           const snapshot::Snapshot& parent, const LayerRecipe& recipe, Progress& progress) {
  log::ScopedTimer timer("find layer");
  snapshot::LayerKey key{parent.id(), recipe.kind, recipe.content_digest, recipe.label};
  auto found = store.lookup_layer(key);
  if (found.found()) {
    log::verbose("restoring {} layer {} ({})", key.kind, snapshot::short_id(key.id()), key.label);
    return Layer{std::move(*found.snapshot), false};
  }
  if (found.status == snapshot::LookupStatus::unusable)
    log::info("{} layer {} ({}) is unusable ({}); rebuilding it", key.kind, snapshot::short_id(key.id()), key.label,
              found.reason);

  KILN_ASSIGN_OR_RETURN(auto lock, store.lock_for_layer(key, [&progress, &key] {
                          progress.step(fmt::format("waiting for another kiln to finish the {} layer", key.kind));
                        }));
  // Whoever held the lock may have built it meanwhile.
  auto again = store.lookup_layer(key);
  if (again.found()) return Layer{std::move(*again.snapshot), false};
  if (store.remote())
    if (auto pulled = store.remote()->pull(key.id())) return Layer{std::move(*pulled), false};
  auto built = build(store, engine, spec, parent, key, recipe, progress);
  if (!built) return with_context(fmt::format("building the {} layer ({})", key.kind, key.label), built.error());
  if (store.remote()) store.remote()->offer(*built);
  return Layer{std::move(*built), true};
}

}  // namespace kiln::runner
