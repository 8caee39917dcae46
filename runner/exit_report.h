// What the agent's exit message means for the user: the exit code ctest sees,
// and what kiln must say about it — output that did not all arrive (an error:
// a test's output is never lost silently), or the guest's out-of-memory killer.
#pragma once

#include "agent/protocol.h"
#include "common/result.h"
#include "runner/run_in_vm.h"

#include <cstdint>

namespace kiln::runner {

/// How many bytes of each stream kiln received from the agent.
struct ReceivedOutput {
  uint64_t stdout_bytes = 0;
  uint64_t stderr_bytes = 0;
};

/// The outcome of `exit`: the command's code (128+N for signal N), or an error when
/// `received` falls short of what the agent says the command wrote. `memory_mib`
/// (0: unknown) is named when the guest's OOM killer was at work.
Result<RunOutcome> outcome_of_exit(const proto::Exit& exit, const ReceivedOutput& received, uint32_t memory_mib);

}  // namespace kiln::runner
