#include "runner/guest.h"

#include "common/digest_memo.h"
#include "common/fs.h"
#include "common/log.h"
#include "image/guest_kernel.h"
#include "image/initramfs.h"
#include "image/module_deps.h"

#include <cstdlib>

namespace kiln::runner {

std::string guest_cmdline() {
  // quiet console, no reboot loop on panic (qemu exits with -no-reboot), and no
  // TSC recalibration after a restore moves the VM in time.
  return "console=ttyS0 loglevel=4 panic=-1 rdinit=/init tsc=reliable no_timer_check";
}

Result<std::filesystem::path> find_agent_binary() {
  if (const char* env = std::getenv("KILN_AGENT"); env && *env) {
    if (!fs::is_executable_file(env)) return make_error("KILN_AGENT={} is not an executable file", env);
    return std::filesystem::path(env);
  }
  auto dir = fs::self_dir();
  for (auto candidate : {dir / "kiln-agent", dir / ".." / "libexec" / "kiln" / "kiln-agent"})
    if (fs::is_executable_file(candidate)) return candidate.lexically_normal();
  return make_error("kiln-agent not found beside {} or in ../libexec/kiln: reinstall kiln or set KILN_AGENT",
                    dir.string());
}

Result<PreparedGuest> prepare_guest(const GuestOptions& options) {
  log::ScopedTimer timer("prepare guest");
  image::KernelOptions kernel_options;
  kernel_options.kernel = options.kernel;
  kernel_options.modules = options.modules;
  kernel_options.progress = options.progress;
  KILN_ASSIGN_OR_RETURN(auto kernel, image::resolve_guest_kernel(kernel_options));
  KILN_ASSIGN_OR_RETURN(auto modules, image::guest_module_load_order(kernel.modules_dir));
  KILN_ASSIGN_OR_RETURN(auto agent, find_agent_binary());

  image::InitramfsInputs inputs;
  inputs.agent = agent;
  if (fs::is_executable_file("/bin/busybox")) inputs.busybox = "/bin/busybox";
  inputs.kernel = kernel;
  inputs.modules = modules;
  inputs.cache_dir = fs::cache_root();
  KILN_ASSIGN_OR_RETURN(auto initramfs, image::build_initramfs(inputs));
  KILN_ASSIGN_OR_RETURN(auto kernel_digest, memo_digest_file(kernel.kernel));

  PreparedGuest g;
  g.spec.kernel = kernel.kernel;
  g.spec.initramfs = initramfs.file;
  g.spec.cmdline = guest_cmdline();
  g.spec.memory_mib = options.memory_mib;
  g.spec.vcpus = options.vcpus;
  g.kernel_version = kernel.version;
  g.key.image = "default";
  // The default image *is* the initramfs: agent, busybox and modules.
  g.key.image_digest = initramfs.digest;
  g.key.initramfs_digest = initramfs.digest;
  g.key.kernel_digest = kernel_digest;
  g.key.memory_mib = options.memory_mib;
  g.key.vcpus = options.vcpus;
  g.key.baked_by_version = KILN_VERSION;
  g.key.cmdline = g.spec.cmdline;
  return g;
}

}  // namespace kiln::runner
