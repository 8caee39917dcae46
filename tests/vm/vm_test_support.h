// Helpers for VM-level tests: run the real kiln binary against a test cache, and
// see what it left behind.
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

/// The engine the suite tests: KILN_TEST_ENGINE (qemu or kvm; default qemu).
std::string engine();

/// The engine options of the suite: `--engine engine()` and, when KILN_TEST_ACCEL is
/// set, `--accel $KILN_TEST_ACCEL`. The vm.setup.bake fixture bakes with the same
/// options (tests/vm/CMakeLists.txt).
std::vector<std::string> engine_args();

/// A cache with its own (empty) snapshot store that reuses the shared kernel and
/// initramfs, so a test can bake or corrupt snapshots without touching others. As
/// root, the kiln runs made through it also get a /tmp of their own (tmp()), so what
/// they leave there is theirs.
class PrivateCache {
 public:
  PrivateCache();
  ~PrivateCache();
  const std::filesystem::path& path() const { return path_; }
  /// The directory kiln's runs through this cache see as /tmp (as root).
  std::filesystem::path tmp() const { return path_ / "tmp"; }
  /// Do kiln's runs through this cache get tmp() as their /tmp? Not without root, nor
  /// when kiln or the cache is itself under /tmp (the bind would hide it).
  bool has_private_tmp() const;
  /// Snapshot directories currently in the store.
  std::vector<std::filesystem::path> snapshots() const;
  /// Use the shared cache's snapshot store (its baked golden; a symlink, nothing is
  /// copied), so runs restore at once instead of baking: for tests that need a cache
  /// of their own for something else (kept VMs). Call it before the first run.
  void use_shared_snapshots() const;

 private:
  std::filesystem::path path_;
};

/// kiln's command line for `kiln ARGS...`: `env [HOST_ENV...] KILN_CACHE_DIR=cache kiln
/// ARGS...`. `run` and `bake` get engine_args() unless ARGS name an engine themselves
/// (engine-specific tests). The warm pool is off in this process and every kiln it
/// starts (KILN_NO_POOL=1) unless HOST_ENV turns it on. HOST_ENV (KEY=VALUE) is kiln's own environment, not the guest's.
std::vector<std::string> kiln_argv(const std::vector<std::string>& args, const std::filesystem::path& cache,
                                   const std::vector<std::string>& host_env = {});

/// kiln_argv() through `cache`, inside a private mount namespace whose /tmp is
/// cache.tmp() when the tests run as root (unshare(1)); plain kiln_argv() otherwise.
/// The pid of the command it gives is kiln's (each step execs the next).
std::vector<std::string> kiln_argv(const std::vector<std::string>& args, const PrivateCache& cache,
                                   const std::vector<std::string>& host_env = {});

/// Run a command line (a kiln_argv(), maybe wrapped) and capture what it printed.
KilnRun run_argv(const std::vector<std::string>& argv);

/// Run `kiln ARGS...` with KILN_CACHE_DIR=cache (see kiln_argv).
KilnRun run_kiln(const std::vector<std::string>& args, const std::filesystem::path& cache = shared_cache(),
                 const std::vector<std::string>& host_env = {});
KilnRun run_kiln(const std::vector<std::string>& args, const PrivateCache& cache,
                 const std::vector<std::string>& host_env = {});

/// How the kiln runs a leftovers() check follows ended.
enum class After {
  exit,     ///< kiln exited on its own (or on SIGTERM/SIGINT): it must leave nothing
  sigkill,  ///< a kiln was SIGKILLed: it could not remove its temp files, only processes count
};

/// What kiln runs through `cache` left behind, once none is running: "" when nothing,
/// else one line per thing. Checked for both engines:
///  - processes kiln started that are still alive: this test process is a child
///    subreaper (PR_SET_CHILD_SUBREAPER, set when the test binary starts), so any orphan
///    kiln leaves is reparented to it rather than to init. Dying ones (SIGKILLed with
///    their parent) get up to 30 s to go, and are reaped;
///  - with After::exit, entries in cache.tmp(), the runs' /tmp (as root; see
///    kiln_argv), bake or layer directories under construction (.tmp-*) in the store
///    (unless it is the shared one) and kept VMs half saved (kept/.saving-*);
///  - with the qemu engine, any process on the host whose command line names the
///    cache (a qemu started outside kiln's process tree would show there).
/// These checks run with the warm pool off (kiln_argv's default).
std::string leftovers(const PrivateCache& cache, After how = After::exit);

/// How many times `needle` occurs in `s` (progress lines in a run's stderr).
int count(const std::string& s, const std::string& needle);

/// The value of `key` in "KEY=VALUE" lines (what scripts/test-registry prints), or "".
std::string value_of(const std::string& lines, const std::string& key);

/// Number of live processes whose command line mentions `needle` (e.g. a cache path).
int processes_mentioning(const std::string& needle);

std::string probe();

}  // namespace kiln::vmtest
