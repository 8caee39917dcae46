#include "image/guest_kernel.h"

#include "common/fs.h"
#include "common/log.h"
#include "image/bzimage.h"
#include "image/debian_kernel.h"

#include <sys/stat.h>

#include <cstring>
#include <system_error>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;

bool is_reg_file(const stdfs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_dir(const stdfs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

stdfs::path absolute_or_same(const stdfs::path& p) {
  std::error_code ec;
  auto abs = stdfs::absolute(p, ec);
  return ec ? p : abs.lexically_normal();
}

// "run `depmod -b /opt/k 6.1.0-x`" for /opt/k/lib/modules/6.1.0-x, so the user can copy it.
std::string depmod_hint(const stdfs::path& modules_dir) {
  stdfs::path dir = modules_dir.filename().empty() ? modules_dir.parent_path() : modules_dir;
  stdfs::path parent = dir.parent_path();
  if (parent.filename() == "modules" && parent.parent_path().filename() == "lib")
    return fmt::format("`depmod -b {} {}`", parent.parent_path().parent_path().string(), dir.filename().string());
  return fmt::format("`depmod -b <root> <version>` for the <root>/lib/modules/<version> tree holding {}",
                     dir.string());
}

Result<void> check_modules_dir(const stdfs::path& dir) {
  if (!is_dir(dir))
    return make_error("modules directory {} does not exist; pass --modules with the kernel's lib/modules/<version> "
                      "directory",
                      dir.string());
  if (!is_reg_file(dir / "modules.dep"))
    return make_error("{} has no modules.dep; generate it with {} and try again", dir.string(), depmod_hint(dir));
  return {};
}

Result<GuestKernel> resolve_override(const KernelOptions& options) {
  GuestKernel k;
  k.kernel = absolute_or_same(options.kernel);
  std::error_code ec;
  if (!stdfs::exists(k.kernel, ec))
    return make_error("kernel {} does not exist; pass --kernel with a bzImage such as /boot/vmlinuz-<version>",
                      k.kernel.string());
  KILN_TRY(check_bzimage(k.kernel));
  auto version = bzimage_version(k.kernel);

  if (!options.modules.empty()) {
    k.modules_dir = absolute_or_same(options.modules);
    KILN_TRY(check_modules_dir(k.modules_dir));
    std::string dir_version = k.modules_dir.filename().string();
    if (version) {
      k.version = *version;
      // Modules built for another release fail in the guest with "invalid module format".
      if (dir_version != k.version)
        log::info("warning: kernel {} is version {} but --modules is {}; its modules may not load",
                  k.kernel.string(), k.version, k.modules_dir.string());
    } else {
      k.version = dir_version;
    }
    return k;
  }

  if (!version)
    return with_context("cannot tell which modules belong to the kernel; pass --modules", version.error());
  k.version = *version;
  k.modules_dir = stdfs::path("/lib/modules") / k.version;
  if (!is_dir(k.modules_dir))
    return make_error("no modules for kernel {} (version {}) at {}; pass --modules with its lib/modules/{} directory",
                      k.kernel.string(), k.version, k.modules_dir.string(), k.version);
  KILN_TRY(check_modules_dir(k.modules_dir));
  return k;
}

}  // namespace

stdfs::path kernel_cache_dir() { return fs::cache_root() / "kernels"; }

std::optional<GuestKernel> find_cached_kernel(const stdfs::path& kernels_dir) {
  std::optional<GuestKernel> best;
  std::error_code ec;
  stdfs::directory_iterator it(kernels_dir, ec);
  if (ec) return best;
  for (; !ec && it != stdfs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    // Dot entries are the lock file and in-progress fetches.
    if (name.empty() || name.front() == '.') continue;
    auto marker = fs::read_file(it->path() / kKernelCompleteMarker, 4096);
    if (!marker) continue;
    std::string version = *marker;
    while (!version.empty() && (version.back() == '\n' || version.back() == ' ')) version.pop_back();
    // The marker names its own directory; anything else is not ours to trust.
    if (version != name) continue;
    GuestKernel k{it->path() / "boot" / ("vmlinuz-" + version), it->path() / "lib" / "modules" / version, version};
    if (!is_reg_file(k.kernel) || !is_reg_file(k.modules_dir / "modules.dep")) continue;
    if (!best || ::strverscmp(version.c_str(), best->version.c_str()) > 0) best = std::move(k);
  }
  if (best) {
    best->kernel = absolute_or_same(best->kernel);
    best->modules_dir = absolute_or_same(best->modules_dir);
  }
  return best;
}

Result<GuestKernel> resolve_guest_kernel(const KernelOptions& options) {
  if (!options.kernel.empty()) return resolve_override(options);
  if (!options.modules.empty())
    return make_error("--modules {} needs --kernel too: it names the modules of a kernel you provide",
                      options.modules.string());
  stdfs::path dir = kernel_cache_dir();
  if (auto cached = find_cached_kernel(dir)) return *cached;
  return fetch_debian_kernel(dir, options.progress);
}

}  // namespace kiln::image
