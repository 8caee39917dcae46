#include "runner/run_command.h"

#include "common/log.h"
#include "runner/guest_text.h"

namespace kiln::runner {
namespace {

Result<RunOutcome> run_in(vmm::Vm& vm, const RestorePoint& point, const RunPlan& plan) {
  if (plan.setup && !point.setup_done) {
    log::verbose("running the setup command (no fixture layer)");
    KILN_TRY(run_setup_in(vm, *plan.setup, plan.setup_files, plan.request.verbose));
  }
  if (point.payload_in_place) {
    log::verbose("the payload ({} entries, {} KiB) is in the layer: not sending it", plan.payload.entries().size(),
                 plan.payload.total_bytes() >> 10);
    return run_in_vm(vm, Payload{}, plan.request);
  }
  if (!plan.payload.empty())
    log::verbose("sending the payload: {} entries, {} KiB", plan.payload.entries().size(),
                 plan.payload.total_bytes() >> 10);
  return run_in_vm(vm, plan.payload, plan.request);
}

}  // namespace

Result<RunOutcome> run_command(AcquiredVm& acquired, const RunPlan& plan) {
  auto outcome = run_in(*acquired.vm, acquired.point, plan);
  if (!outcome && outcome.error().kind == ErrorKind::timeout)
    outcome = Error{with_console_tail(fmt::format("timeout: {} did not finish within {} s; the VM was killed",
                                                  plan.request.argv.front(), plan.request.timeout_seconds.value_or(0)),
                                      *acquired.vm),
                    ErrorKind::timeout};
  acquired.vm->destroy();
  if (outcome) log::verbose("{} {}", plan.request.argv.front(), outcome->summary);
  return outcome;
}

}  // namespace kiln::runner
