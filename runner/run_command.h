// `kiln run`'s "run" phase: the planned command in an acquired VM — its setup
// first when the restore point does not hold it, its payload unless a layer does —
// then the VM is destroyed.
#pragma once

#include "common/result.h"
#include "runner/acquire_vm.h"
#include "runner/run_in_vm.h"
#include "runner/run_plan.h"

namespace kiln::runner {

/// Errors are VM-level failures unless their kind says timeout (the message then
/// names the command and its --timeout) or interrupted.
Result<RunOutcome> run_command(AcquiredVm& acquired, const RunPlan& plan);

}  // namespace kiln::runner
