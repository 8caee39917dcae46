#include "runner/keep_failed.h"

#include "common/log.h"
#include "runner/kept_vms.h"

#include <fmt/format.h>

namespace kiln::runner {
namespace {

// The command line, for a kept VM the run gave no test name.
std::string command_line(const std::vector<std::string>& argv) {
  std::string line = fmt::format("{}", fmt::join(argv, " "));
  return line.size() > 200 ? line.substr(0, 197) + "..." : line;
}

// The timed-out command is left running for the shell; anything else has ended.
Result<std::string> settle_command(AgentClient& agent, const RunRequest& request, const Result<RunOutcome>& outcome,
                                   Deadline deadline) {
  if (outcome) return outcome->summary;
  KILN_ASSIGN_OR_RETURN(std::optional<uint32_t> pid, detach_command(agent, deadline));
  const double limit = request.timeout_seconds.value_or(0);
  if (!pid) return fmt::format("timed out after {} s (it ended as kiln stopped waiting)", limit);
  return fmt::format("timed out after {} s (still running, pid {})", limit, *pid);
}

KeptVm record_of(const KeepTarget& target, const RunRequest& request, std::string why, const std::string& shares_state) {
  const proto::Exec exec = exec_for(request);
  KeptVm vm;
  vm.test = target.test_name.empty() ? command_line(request.argv) : target.test_name;
  vm.why = std::move(why);
  vm.kiln_version = KILN_VERSION;
  vm.engine = target.engine;
  vm.engine_identity = target.engine_identity;
  vm.guest = target.guest;
  vm.command = KeptCommand{exec.argv, exec.env, exec.cwd, exec.user, request.shares, shares_state};
  return vm;
}

Result<std::string> keep(AgentClient& agent, vmm::Vm& vm, const KeepTarget& target, const RunRequest& request,
                         const Result<RunOutcome>& outcome, const std::function<std::string()>& shares_state) {
  const Deadline deadline = Clock::now() + kKeepBudget;
  KILN_ASSIGN_OR_RETURN(std::string why, settle_command(agent, request, outcome, deadline));
  KeptVms kept;
  KILN_ASSIGN_OR_RETURN(auto dir, kept.begin());
  if (auto saved = vm.save_whole(KeptVms::files_in(dir), deadline); !saved) {
    kept.abandon(dir);
    return saved.take_error();
  }
  // The guest is paused: its kernel holds exactly the share session the server has now.
  auto id = kept.publish(dir, record_of(target, request, std::move(why), shares_state()), kept_limits_from_env());
  if (!id) kept.abandon(dir);
  return id;
}

}  // namespace

bool run_failed(const Result<RunOutcome>& outcome) {
  if (!outcome) return outcome.error().kind == ErrorKind::timeout;
  return outcome->exit_code != 0;
}

void keep_failed_vm(AgentClient& agent, vmm::Vm& vm, const KeepTarget& target, const RunRequest& request,
                    const Result<RunOutcome>& outcome, const std::function<std::string()>& shares_state) {
  log::ScopedTimer t("keep the failed VM");
  auto id = keep(agent, vm, target, request, outcome, shares_state);
  if (!id) {
    log::info("warning: the failed VM could not be kept: {}", id.error().message);
    return;
  }
  log::info("kept the failed VM: kiln shell {}", *id);
}

}  // namespace kiln::runner
