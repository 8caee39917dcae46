#include "runner/restore_chain.h"

#include "common/log.h"
#include "runner/layers.h"

namespace kiln::runner {
namespace {

// The fixture layer over the golden, when the plan has a setup.
Result<RestorePoint> with_fixture(const snapshot::Store& store, Golden& golden, const vmm::GuestSpec& spec,
                                  const RunPlan& plan, Progress& progress) {
  RestorePoint point = RestorePoint::golden(golden);
  KILN_ASSIGN_OR_RETURN(auto recipe, fixture_recipe(*plan.setup, plan.setup_files, plan.request.verbose));
  bool setup_failed = false;
  recipe.populate = [&setup_failed, run = recipe.populate](vmm::Vm& vm) -> Result<void> {
    auto r = run(vm);
    setup_failed = !r;
    return r;
  };
  auto fixture = ensure_layer(store, *golden.engine, spec, point.snapshot, recipe, progress);
  if (!fixture && (setup_failed || fixture.error().kind == ErrorKind::interrupted)) return fixture.take_error();
  if (!fixture) {
    // Saving failed, not the setup (disk full, an engine without layers): this run
    // still works the layer-less way, the setup running in its own VM.
    log::info("{}; running the setup in this run's VM instead", fixture.error().message);
    return point;
  }
  return RestorePoint{std::move(fixture->snapshot), false, true};
}

// The payload layer over `point`.
Result<RestorePoint> with_payload(const snapshot::Store& store, Golden& golden, const vmm::GuestSpec& spec,
                                  const RunPlan& plan, RestorePoint point, Progress& progress) {
  LayerRecipe recipe;
  recipe.kind = std::string(snapshot::kLayerKindPayload);
  KILN_ASSIGN_OR_RETURN(recipe.content_digest, plan.payload.content_digest());
  recipe.label = "payload: " + plan.label;
  recipe.doing = "placing the payload of " + plan.label + " once (payload layer)";
  recipe.populate = [&plan](vmm::Vm& vm) { return place_payload(vm, plan.payload); };
  auto layer = ensure_layer(store, *golden.engine, spec, point.snapshot, recipe, progress);
  if (!layer) {
    if (layer.error().kind == ErrorKind::interrupted) return layer.take_error();
    // The layer only saves time: without it (disk full, an engine that cannot save
    // layers) this run still works, shipping its payload as before layers existed.
    log::info("{}; sending the payload with this run instead", layer.error().message);
    return point;
  }
  point.snapshot = std::move(layer->snapshot);
  point.payload_in_place = true;
  return point;
}

}  // namespace

Result<RestorePoint> choose_restore_point(const snapshot::Store& store, Golden& golden, const vmm::GuestSpec& spec,
                                          const RunPlan& plan, Progress& progress) {
  RestorePoint point = RestorePoint::golden(golden);
  if (!plan.use_layers) return point;
  if (plan.setup) {
    KILN_ASSIGN_OR_RETURN(point, with_fixture(store, golden, spec, plan, progress));
  }
  if (plan.payload.empty()) return point;
  return with_payload(store, golden, spec, plan, std::move(point), progress);
}

}  // namespace kiln::runner
