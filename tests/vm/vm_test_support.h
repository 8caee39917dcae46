// Helpers for VM-level tests: run the real kiln binary against a test cache.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::vmtest {

struct KilnRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  double seconds = 0;
};

/// The cache shared by the VM tests (kernel, initramfs, golden snapshot baked once).
std::filesystem::path shared_cache();

/// The engine the suite tests: `--engine $KILN_TEST_ENGINE` (qemu or kvm; default
/// qemu) and, when KILN_TEST_ACCEL is set, `--accel $KILN_TEST_ACCEL`. The
/// vm.setup.bake fixture bakes with the same options (tests/vm/CMakeLists.txt).
std::vector<std::string> engine_args();

/// Run `kiln ARGS...` with KILN_CACHE_DIR=cache. `run` and `bake` get engine_args()
/// unless ARGS name an engine themselves (engine-specific tests).
KilnRun run_kiln(const std::vector<std::string>& args, const std::filesystem::path& cache = shared_cache());

/// A cache with its own (empty) snapshot store that reuses the shared kernel and
/// initramfs, so a test can bake or corrupt snapshots without touching others.
class PrivateCache {
 public:
  PrivateCache();
  ~PrivateCache();
  const std::filesystem::path& path() const { return path_; }
  /// Snapshot directories currently in the store.
  std::vector<std::filesystem::path> snapshots() const;

 private:
  std::filesystem::path path_;
};

/// Number of live processes whose command line mentions `needle` (e.g. a cache path).
int processes_mentioning(const std::string& needle);

std::string probe();

}  // namespace kiln::vmtest
