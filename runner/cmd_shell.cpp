// `kiln shell ID [-- COMMAND [ARGS...]]`: walk back into a failed test's VM that
// `kiln run --keep-failed` kept. Phases:
//   find (kept_vms)           the kept VM by id or unique prefix, held while in use
//   check                     kept by this kiln, on an engine identical to this host's
//   restore (the engine)      from its whole-VM snapshot, its share session served on
//   run (run_in_vm)           a shell (or COMMAND) in the test's working directory,
//                             with its environment and user; a terminal when kiln has one
// The kept VM is never changed: every shell starts from the moment the test failed.
#include "common/log.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/interrupt.h"
#include "runner/kept_vms.h"
#include "runner/run_in_vm.h"
#include "runner/tree_shares.h"

#include <unistd.h>

#include <memory>

namespace kiln::runner {
namespace {

struct ShellOptions {
  std::string id;
  std::vector<std::string> argv;
  VmOptions log;  ///< only -v and --timings: the VM is the kept one
};

// A kept VM is restored only into what it was saved from: this kiln, this engine.
Result<std::unique_ptr<vmm::Engine>> engine_for(const KeptVm& kept) {
  if (kept.kiln_version != KILN_VERSION)
    return make_error("the VM {} was kept by kiln {}; this is kiln {}, which cannot restore it (kiln snapshots gc "
                      "removes it)",
                      kept.id, kept.kiln_version, KILN_VERSION);
  vmm::EngineOptions options;
  options.name = kept.engine;
  KILN_ASSIGN_OR_RETURN(auto engine, vmm::make_engine(options, kept.guest));
  if (engine->identity() != kept.engine_identity)
    return make_error("the VM {} was kept on the {} engine as {}; here it is {}, which cannot restore it", kept.id,
                      kept.engine, kept.engine_identity, engine->identity());
  std::vector<std::filesystem::path> files{kept.guest.kernel, kept.guest.initramfs};
  for (const auto& d : kept.guest.disks) files.push_back(d.image);
  for (const auto& f : files)
    if (std::error_code ec; !std::filesystem::exists(f, ec))
      return make_error("the VM {} needs {}, which is gone (the guest was rebuilt or gc'd since): it cannot be "
                        "restored",
                        kept.id, f.string());
  return engine;
}

RunRequest shell_request(const KeptVm& kept, const std::vector<std::string>& argv) {
  RunRequest request;
  request.argv = argv.empty() ? std::vector<std::string>{"sh"} : argv;
  request.program = request.argv.front();
  request.base_env = kept.command.env;
  request.cwd = kept.command.cwd;
  request.user = kept.command.user;
  request.shares = kept.command.shares;
  request.shares_mounted = true;
  request.memory_mib = kept.guest.memory_mib;
  request.terminal = ::isatty(STDIN_FILENO) && ::isatty(STDOUT_FILENO);
  return request;
}

Result<int> shell(const ShellOptions& o) {
  KeptVms kept_vms;
  KILN_ASSIGN_OR_RETURN(KeptVm kept, kept_vms.find(o.id));
  KILN_ASSIGN_OR_RETURN(UniqueFd in_use, kept_vms.hold(kept.id));
  KILN_ASSIGN_OR_RETURN(auto engine, engine_for(kept));
  log::verbose("restoring the VM of {} ({}), kept {}", kept.test, kept.why, kept.id);
  KILN_ASSIGN_OR_RETURN(auto vm, engine->restore(kept.guest, KeptVms::files_in(kept_vms.root() / kept.id)));
  KILN_ASSIGN_OR_RETURN(auto shares, serve_shares(*vm, kept.command.shares, kept.command.share_state));
  AgentClient agent(vm->agent_fd(), [&vm] { return vm->vmm_exited(); });
  auto outcome = run_in_vm(agent, *vm, Payload{}, shell_request(kept, o.argv));
  if (shares) report_share(*shares);
  vm->destroy();
  if (!outcome) return outcome.take_error();
  return outcome->exit_code;
}

}  // namespace

void register_shell(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ShellOptions>();
  auto* cmd = app.add_subcommand("shell", "Enter a failed test's kept VM (kiln run --keep-failed)");
  cmd->footer(
      "Restores the VM as it was when the test failed (a timed-out command still running in it) and\n"
      "runs a shell, or COMMAND, in the test's working directory with its environment and user.\n"
      "A terminal when kiln has one (stdin and stdout), else stdin is streamed like kiln run's.\n"
      "Every shell starts from the saved moment: nothing done in one is kept for the next.\n"
      "kiln snapshots list shows the kept VMs (kind failed); kiln snapshots rm ID removes one.\n"
      "Example: kiln shell 3f9a -- ps");
  cmd->add_option("id", o->id, "The kept VM's id, or a unique prefix of it")->required();
  cmd->add_option("command", o->argv, "What to run instead of sh (put it after --)");
  cmd->add_flag("-v,--verbose", o->log.verbosity, "Say more (-vv: debug)");
  cmd->add_flag("--timings", o->log.timings, "Print how long each phase took");
  cmd->callback([o, &exit_code] {
    apply_log_options(o->log);
    auto code = shell(*o);
    if (code) {
      exit_code = *code;
      return;
    }
    log::error(code.error().message);
    exit_code = code.error().kind == ErrorKind::interrupted ? exit_code::signal_base + interrupt::received()
                                                            : exit_code::kiln_error;
  });
}

}  // namespace kiln::runner
