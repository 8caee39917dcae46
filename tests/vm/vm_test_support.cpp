#include "vm_test_support.h"

#include "common/clock.h"
#include "common/subprocess.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>

namespace kiln::vmtest {

std::filesystem::path shared_cache() { return KILN_TEST_CACHE; }

std::string probe() { return VM_PROBE; }

std::vector<std::string> engine_args() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  std::string engine = env("KILN_TEST_ENGINE");
  std::vector<std::string> out = {"--engine", engine.empty() ? "qemu" : engine};
  if (std::string accel = env("KILN_TEST_ACCEL"); !accel.empty()) {
    out.push_back("--accel");
    out.push_back(accel);
  }
  return out;
}

KilnRun run_kiln(const std::vector<std::string>& args, const std::filesystem::path& cache) {
  std::vector<std::string> argv = {"env", "KILN_CACHE_DIR=" + cache.string(), KILN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto options_end = std::find(args.begin(), args.end(), "--");
  const bool names_engine = std::find(args.begin(), options_end, "--engine") != options_end;
  if (!args.empty() && (args[0] == "run" || args[0] == "bake") && !names_engine) {
    auto engine = engine_args();
    argv.insert(argv.begin() + 4, engine.begin(), engine.end());  // right after the subcommand
  }
  const auto start = kiln::Clock::now();
  auto r = run_captured(argv);
  KilnRun run;
  run.seconds = kiln::seconds_since(start);
  if (!r) {
    run.err = r.error().message;
    return run;
  }
  run.exit_code = r->exit_code;
  run.out = std::move(r->out);
  run.err = std::move(r->err);
  return run;
}

PrivateCache::PrivateCache() {
  std::filesystem::create_directories(shared_cache());
  std::string tmpl = (shared_cache().parent_path() / "test-cache-private-XXXXXX").string();
  path_ = ::mkdtemp(tmpl.data());
  // Reuse what is expensive to make and never changes under a test.
  for (const char* shared : {"kernels", "initramfs", "host"}) {
    std::filesystem::create_directories(shared_cache() / shared);
    std::filesystem::create_directory_symlink(shared_cache() / shared, path_ / shared);
  }
}

PrivateCache::~PrivateCache() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<std::filesystem::path> PrivateCache::snapshots() const {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(path_ / "snapshots", ec))
    if (e.is_directory() && e.path().filename().string().front() != '.') out.push_back(e.path());
  return out;
}

int processes_mentioning(const std::string& needle) {
  int count = 0;
  DIR* proc = ::opendir("/proc");
  if (!proc) return 0;
  while (dirent* d = ::readdir(proc)) {
    if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
    std::ifstream f(std::string("/proc/") + d->d_name + "/cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos && std::to_string(::getpid()) != d->d_name) ++count;
  }
  ::closedir(proc);
  return count;
}

}  // namespace kiln::vmtest
