#include "runner/run_plan.h"

#include "runner/tree_shares.h"

#include "common/env.h"
#include "common/fs.h"
#include "runner/layers.h"

#include <unistd.h>

#include <filesystem>

namespace kiln::runner {
namespace {

// A command with a '/' is a host file shipped into the guest; a bare name is looked up
// on the guest's PATH (busybox applets), as a shell would.
Result<void> resolve_command(std::string& cmd, Payload& payload) {
  if (cmd.find('/') == std::string::npos) return {};
  std::error_code ec;
  auto abs = std::filesystem::absolute(cmd, ec).lexically_normal();
  if (!std::filesystem::exists(abs, ec)) {
    Error e = make_error("{}: no such file on the host", cmd);
    e.kind = ErrorKind::not_found;
    return e;
  }
  if (!fs::is_executable_file(abs)) {
    Error e = make_error("{}: not an executable file (check its permissions)", abs.string());
    e.kind = ErrorKind::not_executable;
    return e;
  }
  cmd = abs.string();
  return payload.add_executable_with_closure(abs);
}

Result<void> add_files(const std::vector<std::string>& files, Payload& payload) {
  for (const auto& f : files)
    if (auto r = payload.add_path(f); !r) return with_context("--file " + f, r.error());
  return {};
}

Result<void> plan_setup(const RunArgs& args, RunPlan& plan) {
  if (!args.setup_given) {
    if (!args.setup_files.empty()) return make_error("--setup-file needs --setup: it lists files the setup command uses");
    return {};
  }
  plan.setup = SetupSpec{args.setup, args.setup_files, args.env, {}};
  KILN_ASSIGN_OR_RETURN(plan.setup_files, setup_payload(*plan.setup));
  return {};
}

// --output-dir: emptied now, so what a failed run leaves there is never an earlier run's.
Result<void> plan_outputs(const RunArgs& args, RunRequest& request) {
  if (args.output_dir.empty()) return {};
  if (args.output_cap_mib == 0 || args.output_cap_mib > (uint64_t{1} << 20))
    return make_error("--output-cap must be 1 to {} MiB, got {}", uint64_t{1} << 20, args.output_cap_mib);
  std::error_code ec;
  auto dir = std::filesystem::absolute(args.output_dir, ec).lexically_normal();
  KILN_TRY(prepare_output_dir(dir));
  request.outputs = OutputsSpec{dir, args.output_cap_mib << 20};
  return {};
}

// -t: checked before any VM exists, as docker and ssh refuse it.
Result<void> plan_stdin(const RunArgs& args, RunRequest& request) {
  request.interactive = args.interactive;
  request.terminal = args.tty;
  if (args.tty && !::isatty(request.stdin_fd))
    return make_error("-t needs kiln's stdin to be a terminal; without -t, a piped stdin is streamed to the command");
  return {};
}

}  // namespace

Result<RunPlan> plan_run(const RunArgs& args) {
  RunPlan plan;
  plan.request.argv = args.argv;
  KILN_TRY(resolve_command(plan.request.argv.front(), plan.payload));
  plan.request.program = plan.request.argv.front();
  KILN_TRY(add_files(args.files, plan.payload));
  KILN_TRY(plan_setup(args, plan));
  plan.request.env = args.env;
  plan.request.user = args.user;
  std::error_code ec;
  plan.request.cwd = args.cwd.empty() ? std::filesystem::current_path(ec).string() : args.cwd;
  if (args.timeout > 0) plan.request.timeout_seconds = args.timeout;
  plan.request.verbose = args.verbose;
  KILN_ASSIGN_OR_RETURN(plan.request.shares, share_roots(args.shares));
  KILN_TRY(plan_outputs(args, plan.request));
  KILN_TRY(plan_stdin(args, plan.request));
  plan.use_layers = layers_enabled(args.no_layers);
  plan.keep_failed = args.keep_failed || env_flag("KILN_KEEP_FAILED");
  plan.test_name = args.test_name;
  plan.label = std::filesystem::path(plan.request.argv.front()).filename().string();
  return plan;
}

}  // namespace kiln::runner
