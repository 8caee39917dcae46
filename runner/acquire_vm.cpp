#include "runner/acquire_vm.h"

#include "common/log.h"
#include "runner/pool_client.h"

namespace kiln::runner {
namespace {

Result<std::unique_ptr<vmm::Vm>> restore(const GoldenSource& source, const Golden& golden,
                                         const snapshot::Snapshot& snap) {
  KILN_ASSIGN_OR_RETURN(auto files, source.store.restore_files(snap, golden.engine->maps_overlays()));
  if (auto pooled = take_pooled_vm(*golden.engine, source.guest.spec, files, snap.id())) return pooled;
  return golden.engine->restore(source.guest.spec, files);
}

// The engine found the snapshot corrupt or not loadable although it passed the store's
// checksums: rebake a golden once; run this test without a layer.
Result<AcquiredVm> heal_and_restore(const GoldenSource& source, Golden& golden, const RestorePoint& point,
                                    const Error& why, Progress& progress) {
  if (point.snapshot.is_layer()) {
    log::info("layer {} did not restore ({}); running from the golden snapshot this time", point.snapshot.id(),
              why.message);
  } else {
    log::info("snapshot {} did not restore ({}); rebaking it", point.snapshot.id(), why.message);
    KILN_ASSIGN_OR_RETURN(golden, ensure_golden(source.store, source.guest, source.engine_options, progress, true,
                                                source.verbose));
  }
  RestorePoint from_golden = RestorePoint::golden(golden);
  KILN_ASSIGN_OR_RETURN(auto vm, restore(source, golden, from_golden.snapshot));
  return AcquiredVm{std::move(vm), std::move(from_golden)};
}

}  // namespace

Result<AcquiredVm> acquire_vm(const GoldenSource& source, Golden& golden, RestorePoint point, Progress& progress) {
  log::ScopedTimer t("restore");
  auto restored = restore(source, golden, point.snapshot);
  AcquiredVm acquired;
  if (restored) {
    acquired = {std::move(restored).value(), std::move(point)};
  } else if (restored.error().kind == ErrorKind::corrupt) {
    KILN_ASSIGN_OR_RETURN(acquired, heal_and_restore(source, golden, point, restored.error(), progress));
  } else {
    return restored.take_error();
  }
  source.store.mark_used(acquired.point.snapshot);
  if (acquired.point.snapshot.is_layer()) source.store.mark_used(golden.snapshot);  // its base is in use too
  return acquired;
}

}  // namespace kiln::runner
