#include "vm_test_support.h"

#include "common/clock.h"
#include "common/fs.h"
#include "common/process_list.h"
#include "common/subprocess.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace kiln::vmtest {
namespace {

namespace stdfs = std::filesystem;

// Every test of this binary sees kiln's orphans: a process kiln started that outlives
// it is reparented to the nearest subreaper ancestor, this test, instead of init.
[[maybe_unused]] const bool kSubreaper = [] {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0) return true;
  std::perror("kiln vm tests: prctl(PR_SET_CHILD_SUBREAPER)");
  std::abort();  // without it, "nothing outlived kiln" would pass whatever kiln leaves
}();

// The warm pool is off in the VM suite: a pooled VM lives on in the daemon, which the
// leftovers() checks would count. Set in this process, so every kiln a test starts —
// through kiln_argv() or a script of its own — inherits it; pool_test.cpp turns the
// pool on for its runs (KILN_NO_POOL=0 in their host_env).
[[maybe_unused]] const bool kPoolOff = [] { return ::setenv("KILN_NO_POOL", "1", /*overwrite=*/0) == 0; }();

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Can this process make a mount namespace of its own? Root with unshare(1) is not
// enough everywhere: in a chroot (a fresh-machine check) unshare cannot make the new
// namespace's mounts private. Probed once, the way kiln_argv() will use it.
bool can_unshare_mounts() {
  static const bool can = [] {
    if (::geteuid() != 0 || !fs::is_executable_file("/usr/bin/unshare")) return false;
    auto r = run_captured({"unshare", "--mount", "--", "true"});
    return r && r->exit_code == 0;
  }();
  return can;
}

// A private /tmp needs a mount namespace, and must not hide kiln or the cache.
bool can_give_private_tmp(const PrivateCache& cache) {
  return can_unshare_mounts() && !fs::is_within(KILN_BINARY, "/tmp") && !fs::is_within(cache.path(), "/tmp");
}

std::string cmdline_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', ' ');
  return s;
}

// Children of this test now alive; reaps the zombies among them. With no kiln run in
// flight, every child is an orphan kiln left. SIGKILLed ones (die-with-parent) may
// take a moment to exit: each gets up to 30 s, which only a process that stays costs.
std::vector<std::string> orphans() {
  const Deadline until = deadline_after(std::chrono::seconds(30));
  for (;;) {
    std::vector<std::string> alive;
    for (const auto& child : proc::children_of(::getpid())) {
      if (child.state == 'Z') {
        ::waitpid(child.pid, nullptr, WNOHANG);
        continue;
      }
      alive.push_back("process " + std::to_string(child.pid) + " (" + child.comm + ") outlived kiln: " +
                      cmdline_of(child.pid));
    }
    if (alive.empty() || Clock::now() >= until) return alive;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::vector<std::string> entries(const stdfs::path& dir, const std::string& prefix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path().string());
  return out;
}

}  // namespace

std::filesystem::path shared_cache() { return KILN_TEST_CACHE; }

std::string probe() { return VM_PROBE; }

std::string engine() { return env_or("KILN_TEST_ENGINE", "qemu"); }

std::vector<std::string> engine_args() {
  std::vector<std::string> out = {"--engine", engine()};
  if (std::string accel = env_or("KILN_TEST_ACCEL", ""); !accel.empty()) {
    out.push_back("--accel");
    out.push_back(accel);
  }
  return out;
}

std::vector<std::string> kiln_argv(const std::vector<std::string>& args, const stdfs::path& cache,
                                   const std::vector<std::string>& host_env) {
  std::vector<std::string> argv = {"env"};
  argv.insert(argv.end(), host_env.begin(), host_env.end());
  argv.push_back("KILN_CACHE_DIR=" + cache.string());
  argv.push_back(KILN_BINARY);
  const auto options_end = std::find(args.begin(), args.end(), "--");
  const bool names_engine = std::find(args.begin(), options_end, "--engine") != options_end;
  if (!args.empty() && (args[0] == "run" || args[0] == "bake") && !names_engine) {
    argv.push_back(args[0]);  // the engine options right after the subcommand
    for (auto& a : engine_args()) argv.push_back(a);
    argv.insert(argv.end(), args.begin() + 1, args.end());
  } else {
    argv.insert(argv.end(), args.begin(), args.end());
  }
  return argv;
}

std::vector<std::string> kiln_argv(const std::vector<std::string>& args, const PrivateCache& cache,
                                   const std::vector<std::string>& host_env) {
  auto argv = kiln_argv(args, cache.path(), host_env);
  if (!can_give_private_tmp(cache)) return argv;
  // unshare(1) makes the new mount namespace private: the bind stays in it.
  std::vector<std::string> wrapped = {"unshare", "--mount", "--", "sh", "-c",
                                      R"(mount --bind "$0" /tmp && exec "$@")", cache.tmp().string()};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  return wrapped;
}

KilnRun run_argv(const std::vector<std::string>& argv) {
  const auto start = Clock::now();
  auto r = run_captured(argv);
  KilnRun run;
  run.seconds = seconds_since(start);
  if (!r) {
    run.err = r.error().message;
    return run;
  }
  run.exit_code = r->exit_code;
  run.out = std::move(r->out);
  run.err = std::move(r->err);
  return run;
}


KilnRun run_kiln(const std::vector<std::string>& args, const stdfs::path& cache,
                 const std::vector<std::string>& host_env) {
  return run_argv(kiln_argv(args, cache, host_env));
}

KilnRun run_kiln(const std::vector<std::string>& args, const PrivateCache& cache,
                 const std::vector<std::string>& host_env) {
  return run_argv(kiln_argv(args, cache, host_env));
}

PrivateCache::PrivateCache() {
  stdfs::create_directories(shared_cache());
  std::string tmpl = (shared_cache().parent_path() / "test-cache-private-XXXXXX").string();
  path_ = ::mkdtemp(tmpl.data());
  // Reuse what is expensive to make and never changes under a test.
  for (const char* shared : {"kernels", "initramfs", "host"}) {
    stdfs::create_directories(shared_cache() / shared);
    stdfs::create_directory_symlink(shared_cache() / shared, path_ / shared);
  }
  stdfs::create_directory(tmp());
  if (!can_give_private_tmp(*this))
    std::fprintf(stderr, "note: kiln runs share the host's /tmp here (needs root and a working unshare --mount): "
                         "what they leave in /tmp is not checked\n");
}

bool PrivateCache::has_private_tmp() const { return can_give_private_tmp(*this); }

PrivateCache::~PrivateCache() {
  std::error_code ec;
  stdfs::remove_all(path_, ec);
}

void PrivateCache::use_shared_snapshots() const {
  stdfs::create_directories(shared_cache() / "snapshots");
  stdfs::create_directory_symlink(shared_cache() / "snapshots", path_ / "snapshots");
}

std::vector<stdfs::path> PrivateCache::snapshots() const {
  std::vector<stdfs::path> out;
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(path_ / "snapshots", ec))
    if (e.is_directory() && e.path().filename().string().front() != '.') out.push_back(e.path());
  return out;
}

std::string leftovers(const PrivateCache& cache, After how) {
  std::vector<std::string> found = orphans();
  if (how == After::exit) {
    for (const auto& e : entries(cache.tmp(), "")) found.push_back("left in its /tmp: " + e);
    // A store shared with the other tests (use_shared_snapshots) is not this test's to check.
    if (!stdfs::is_symlink(cache.path() / "snapshots"))
      for (const auto& e : entries(cache.path() / "snapshots", ".tmp-")) found.push_back("left in the store: " + e);
    for (const auto& e : entries(cache.path() / "kept", ".saving-")) found.push_back("a kept VM half saved: " + e);
  }
  // qemu, or the pool's kvm worker (the kvm engine itself runs in kiln's own process).
  if (processes_mentioning(cache.path().string()) > 0)
    found.push_back("a process naming " + cache.path().string() + " is still running (a qemu or kvm worker?)");
  std::string out;
  for (const auto& f : found) out += f + "\n";
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

int count(const std::string& s, const std::string& needle) {
  int n = 0;
  for (size_t p = s.find(needle); p != std::string::npos; p = s.find(needle, p + 1)) ++n;
  return n;
}

std::string value_of(const std::string& lines, const std::string& key) {
  std::istringstream in(lines);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  return {};
}

}  // namespace kiln::vmtest
