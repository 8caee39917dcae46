// `kiln bake`: make sure the golden snapshot exists (e.g. before a parallel ctest run);
// with --image, the image is pulled and its root disk written first.
#include "common/fs.h"
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/golden.h"
#include "runner/interrupt.h"

#include <memory>

namespace kiln::runner {
namespace {

struct BakeCliOptions {
  VmOptions vm;
  bool force = false;
};

int execute(BakeCliOptions& o) {
  apply_log_options(o.vm);
  Progress progress;
  o.vm.guest.progress = [&progress](const std::string& s) { progress.step(s); };
  auto fail = [&progress](const Error& e) {
    progress.done();
    log::error(e.message);
    return e.kind == ErrorKind::interrupted ? exit_code::signal_base + interrupt::received() : exit_code::kiln_error;
  };
  auto image = resolve_guest_image(o.vm.image, progress);
  if (!image) return fail(image.error());
  auto guest = prepare_guest(o.vm.guest);
  if (!guest) return fail(guest.error());
  if (*image) attach_image(**image, *guest);
  snapshot::Store store(fs::cache_root() / "snapshots");
  if (auto attached = attach_remote(store, o.vm); !attached) return fail(attached.error());
  auto golden = ensure_golden(store, *guest, o.vm.engine, progress, o.force, o.vm.verbosity > 0);
  if (!golden) return fail(golden.error());
  progress.done();
  const auto& meta = golden->snapshot.meta;
  std::printf("%s %s (%s, %u MiB, %u vCPU)\n", golden->baked_now ? "baked" : "up to date",
              golden->snapshot.dir.string().c_str(), meta.key.engine.c_str(), meta.key.memory_mib, meta.key.vcpus);
  return 0;
}

}  // namespace

void register_bake(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<BakeCliOptions>();
  auto* cmd = app.add_subcommand("bake", "Cold-boot the guest once and save the golden snapshot runs restore from");
  add_vm_options(*cmd, o->vm);
  cmd->add_flag("--force", o->force, "Bake again even if a usable snapshot exists");
  cmd->callback([o, &exit_code] { exit_code = execute(*o); });
}

}  // namespace kiln::runner
