// `kiln run`'s "run" phase: the planned command in an acquired VM — its setup
// first when the restore point does not hold it, its payload unless a layer does,
// the shares served meanwhile — then, if it failed and --keep-failed asks, the
// keep phase; then the VM is destroyed.
#pragma once

#include "common/result.h"
#include "runner/acquire_vm.h"
#include "runner/keep_failed.h"
#include "runner/run_in_vm.h"
#include "runner/run_plan.h"

#include <optional>

namespace kiln::runner {

/// Errors are VM-level failures unless their kind says timeout (the message then
/// names the command and its --timeout) or interrupted. With `keep`, a failed run's
/// VM is kept first (keep_failed.h).
Result<RunOutcome> run_command(AcquiredVm& acquired, const RunPlan& plan, const std::optional<KeepTarget>& keep);

}  // namespace kiln::runner
