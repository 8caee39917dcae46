// Helpers for tests of engine and accelerator choice: this boot's id (to name the
// per-boot records a test sets up) and which steps ran (their ScopedTimers).
#pragma once

#include "common/log.h"

#include <fstream>
#include <mutex>
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

}  // namespace kiln::vmm::testing
