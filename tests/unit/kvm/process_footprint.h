// What this process holds: threads, open file descriptors, child processes. The kvm
// engine runs in kiln's own process (vCPU and I/O threads, no exec anywhere), so what
// "nothing outlives kiln" means for it is that a destroyed VM gives all of these back.
// Once kiln keeps a warm pool of VMs, these checks run with the pool off.
#pragma once

#include "common/process_list.h"

#include <unistd.h>

#include <filesystem>
#include <ostream>

namespace kiln::vmm::kvm::testing {

struct ProcessFootprint {
  size_t threads = 0;
  size_t fds = 0;
  size_t children = 0;

  static ProcessFootprint now() {
    ProcessFootprint f;
    f.threads = entries("/proc/self/task");
    f.fds = entries("/proc/self/fd");
    f.children = proc::children_of(::getpid()).size();
    return f;
  }
  bool operator==(const ProcessFootprint&) const = default;

 private:
  static size_t entries(const char* dir) {
    size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec); !ec && it != std::filesystem::directory_iterator();
         it.increment(ec))
      ++n;
    return n;
  }
};

inline std::ostream& operator<<(std::ostream& os, const ProcessFootprint& f) {
  return os << f.threads << " threads, " << f.fds << " open fds, " << f.children << " child processes";
}

}  // namespace kiln::vmm::kvm::testing
