// Helpers for tests of engine and accelerator choice: this boot's id (to name the
// per-boot records a test sets up), which steps ran (their ScopedTimers), and a host
// without /dev/kvm on any host.
#pragma once

#include "common/log.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>

namespace kiln::vmm::testing {

/// /proc/sys/kernel/random/boot_id as the kernel gives it (empty without /proc), read
/// here rather than through vmm/per_boot_cache.h, the code under test.
inline std::string this_boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

/// Records the names of the ScopedTimers that end while it lives ("kvm: select engine"
/// says the kvm engine was opened, "kvm: usability probe" that a probe VM ran). One at a
/// time: the timing sink is process-wide.
class TimerRecorder {
 public:
  TimerRecorder() {
    std::lock_guard lock(mutex());
    names().clear();
    log::set_timing_sink(&record);
  }
  ~TimerRecorder() { log::set_timing_sink(nullptr); }
  TimerRecorder(const TimerRecorder&) = delete;
  TimerRecorder& operator=(const TimerRecorder&) = delete;

  bool ran(const std::string& name) const { return times(name) > 0; }
  size_t times(const std::string& name) const {
    std::lock_guard lock(mutex());
    return names().count(name);
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::multiset<std::string>& names() {
    static std::multiset<std::string> n;
    return n;
  }
  static void record(const char* name, double) {
    std::lock_guard lock(mutex());
    names().insert(name);
  }
};

/// What a check run without /dev/kvm printed, or why it could not run.
struct WithoutDevKvm {
  std::optional<std::string> report;  ///< the check's result; empty when it could not run
  std::string why_not;                ///< one line, when it could not run
};

/// Runs `check` in a child process that sees no /dev/kvm — its own mount namespace, an
/// empty tmpfs over /dev — so the no-KVM answers are tested on every host, this one
/// included (it has a /dev/kvm). Needs CAP_SYS_ADMIN, as CI has (root). `check` must not
/// use gtest assertions: what it returns is compared in the parent.
inline WithoutDevKvm without_dev_kvm(const std::function<std::string()>& check) {
  int fds[2];
  if (::pipe(fds) != 0) return {std::nullopt, std::string("pipe: ") + std::strerror(errno)};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string out;
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/dev", "tmpfs", 0, "size=64k,mode=755") != 0)
      out = std::string("!cannot make a mount namespace without /dev/kvm (needs root): ") + std::strerror(errno);
    else
      out = check();
    for (size_t off = 0; off < out.size();) {
      const ssize_t n = ::write(fds[1], out.data() + off, out.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (pid < 0) return {std::nullopt, "fork failed"};
  if (!out.empty() && out.front() == '!') return {std::nullopt, out.substr(1)};
  return {out, ""};
}

}  // namespace kiln::vmm::testing
