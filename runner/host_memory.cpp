#include "runner/host_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace kiln::runner {

std::optional<uint64_t> meminfo_mib(std::string_view field) {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  const std::string want = std::string(field) + ":";
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    uint64_t kib = 0;
    if (fields >> key >> kib && key == want) return kib / 1024;
  }
  return std::nullopt;
}

}  // namespace kiln::runner
