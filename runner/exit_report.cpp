#include "runner/exit_report.h"

#include "runner/exit_codes.h"

#include <csignal>
#include <cstring>
#include <string>

namespace kiln::runner {
namespace {

std::string memory_clause(uint32_t memory_mib) {
  if (memory_mib == 0) return "";
  return fmt::format("; MEMORY is {} MiB (raise it with MEMORY in add_microvm_test, or kiln run --memory)",
                     memory_mib);
}

std::string loss(const char* stream, uint64_t wrote, uint64_t received) {
  if (wrote == received) return "";
  return fmt::format("the command wrote {} bytes to {}, kiln received {}", wrote, stream, received);
}

}  // namespace

Result<RunOutcome> outcome_of_exit(const proto::Exit& exit, const ReceivedOutput& received, uint32_t memory_mib) {
  std::string lost = loss("stdout", exit.stdout_bytes, received.stdout_bytes);
  if (std::string err = loss("stderr", exit.stderr_bytes, received.stderr_bytes); !err.empty())
    lost += (lost.empty() ? "" : "; ") + err;
  if (!lost.empty())
    return make_error(
        "output was lost: {} (the rest was still in the guest when the command ended, e.g. written by a "
        "process it left running, or the agent could not send it: see the guest console)",
        lost);

  RunOutcome outcome;
  if (!exit.signaled) {
    outcome = {exit.code, fmt::format("exited with code {}", exit.code), ""};
  } else if (exit.code == SIGKILL && exit.oom_kills > 0) {
    outcome = {exit_code::signal_base + SIGKILL, "killed by the guest's out-of-memory killer (signal 9)", ""};
    outcome.notice = "the test was killed by the guest's out-of-memory killer" + memory_clause(memory_mib);
    outcome.coverage = exit.coverage.value_or(false);
    return outcome;
  } else {
    outcome = {exit_code::signal_base + exit.code,
               fmt::format("killed by signal {} ({})", exit.code, strsignal(exit.code)), ""};
  }
  if (exit.oom_kills > 0)
    outcome.notice = fmt::format("the guest's out-of-memory killer ended {} process{} while the test ran{}",
                                 exit.oom_kills, exit.oom_kills == 1 ? "" : "es", memory_clause(memory_mib));
  outcome.coverage = exit.coverage.value_or(false);
  return outcome;
}

}  // namespace kiln::runner
