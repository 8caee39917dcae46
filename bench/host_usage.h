// What VMs cost the host: memory of VMM processes (RSS and PSS from
// /proc/<pid>/smaps_rollup) and bytes allocated on disk (sparse files count their data).
#pragma once

#include "common/result.h"

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

namespace kiln::bench {

struct ProcessMemory {
  uint64_t rss = 0;  ///< resident bytes, shared pages counted in full
  uint64_t pss = 0;  ///< proportional: each shared page divided among the processes mapping it
  uint64_t uss = 0;  ///< private (clean + dirty): what one more such process adds to the host
  uint64_t pss_file = 0;  ///< the file-backed part of pss (0 on kernels before 5.14)
};

/// RSS and PSS of one process.
Result<ProcessMemory> process_memory(pid_t pid);

/// Live direct children of this process whose command name (/proc/<pid>/comm, 15
/// characters at most) starts with `comm_prefix`.
std::vector<pid_t> child_processes(std::string_view comm_prefix);

/// Bytes allocated on disk (st_blocks * 512) under `path` (a file or a directory tree).
uint64_t allocated_bytes(const std::filesystem::path& path);

}  // namespace kiln::bench
