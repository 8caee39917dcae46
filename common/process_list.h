// Which processes are whose children, as /proc shows them now: for the tests and
// benches that look at what a run started or left behind.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace kiln::proc {

/// One process, from /proc/<pid>/stat.
struct ProcessInfo {
  pid_t pid = -1;
  char state = '?';  ///< 'R', 'S', 'D'... or 'Z': exited, not yet reaped by its parent
  std::string comm;  ///< the command name (at most 15 characters)
};

/// The direct children of `parent` now, zombies included. A process that exits while
/// /proc is being read is left out.
std::vector<ProcessInfo> children_of(pid_t parent);

}  // namespace kiln::proc
