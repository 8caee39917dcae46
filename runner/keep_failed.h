// `kiln run`'s keep phase (--keep-failed, KILN_KEEP_FAILED=1): the VM of a failed
// run — its command exited non-zero, was killed by a signal, or timed out — is
// paused and saved whole as a kept VM (kept_vms.h) before it is torn down, so
// `kiln shell <id>` can walk back into it: a timed-out command is left running in
// it. Keeping never changes the run's outcome; when it cannot be done, kiln says why.
#pragma once

#include "common/result.h"
#include "runner/agent_client.h"
#include "runner/run_in_vm.h"
#include "vmm/engine.h"

#include <chrono>
#include <functional>
#include <string>

namespace kiln::runner {

/// What a kept VM is restored with, besides its own files.
struct KeepTarget {
  std::string engine;           ///< Engine::name()
  std::string engine_identity;  ///< Engine::identity()
  vmm::GuestSpec guest;
  std::string test_name;        ///< --test-name; "" names it by its command line
};

/// How long keeping may take. Saving must end inside ctest's TIMEOUT, which the CMake
/// functions set KILN_TIMEOUT_MARGIN (default 30 s) past kiln's own --timeout.
inline constexpr std::chrono::seconds kKeepBudget{20};

/// Did the run end the way --keep-failed keeps: a non-zero exit or a signal, or a
/// timeout? Not a VM-level failure (kiln's 125) or an interrupted kiln.
bool run_failed(const Result<RunOutcome>& outcome);

/// Keep `vm`, whose run of `request` failed (`outcome`), as `target` says. Once the VM
/// is saved, `shares_state` gives the share server's session for the record
/// (share::ShareServer::export_state; "" without shares). Prints "kept the failed VM:
/// kiln shell <id>", or a warning saying why it was not kept.
void keep_failed_vm(AgentClient& agent, vmm::Vm& vm, const KeepTarget& target, const RunRequest& request,
                    const Result<RunOutcome>& outcome, const std::function<std::string()>& shares_state);

}  // namespace kiln::runner
