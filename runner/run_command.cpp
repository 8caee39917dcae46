#include "runner/run_command.h"

#include "common/log.h"
#include "runner/guest_text.h"
#include "runner/tree_shares.h"

namespace kiln::runner {
namespace {

Result<RunOutcome> run_in(AgentClient& agent, vmm::Vm& vm, const RestorePoint& point, const RunPlan& plan) {
  if (plan.setup && !point.setup_done) {
    log::verbose("running the setup command (no fixture layer)");
    KILN_TRY(run_setup_in(vm, *plan.setup, plan.setup_files, plan.request.verbose));
  }
  if (point.payload_in_place) {
    log::verbose("the payload ({} entries, {} KiB) is in the layer: not sending it", plan.payload.entries().size(),
                 plan.payload.total_bytes() >> 10);
    return run_in_vm(agent, vm, Payload{}, plan.request);
  }
  if (!plan.payload.empty())
    log::verbose("sending the payload: {} entries, {} KiB", plan.payload.entries().size(),
                 plan.payload.total_bytes() >> 10);
  return run_in_vm(agent, vm, plan.payload, plan.request);
}

// The run itself, with the shares served meanwhile, and the keep phase when it failed.
Result<RunOutcome> run_served(vmm::Vm& vm, const RestorePoint& point, const RunPlan& plan,
                              const std::optional<KeepTarget>& keep) {
  // Serving before the request goes out: mounting the share already asks for its roots.
  KILN_ASSIGN_OR_RETURN(auto share_server, serve_shares(vm, plan.request.shares));
  AgentClient agent(vm.agent_fd(), [&vm] { return vm.vmm_exited(); });
  auto outcome = run_in(agent, vm, point, plan);
  if (keep && run_failed(outcome))
    keep_failed_vm(agent, vm, *keep, plan.request, outcome,
                   [&] { return share_server ? share_server->export_state() : std::string(); });
  if (share_server) report_share(*share_server);
  return outcome;
}

}  // namespace

Result<RunOutcome> run_command(AcquiredVm& acquired, const RunPlan& plan, const std::optional<KeepTarget>& keep) {
  auto outcome = run_served(*acquired.vm, acquired.point, plan, keep);
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
