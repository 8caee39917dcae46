// `kiln run [options] -- COMMAND [ARGS...]`: a short sequence of named phases,
// each in its own file —
//   plan (run_plan)          what to run: command, payload, setup, request
//   image (guest_image)      --image: the pulled OCI image and its root disk; the plan
//                            adapted to it (image_plan)
//   guest (guest, golden)    kernel + initramfs (+ image disk), and their golden snapshot
//   restore chain            golden -> fixture layer -> payload layer
//   get a VM (acquire_vm)    restored from that point (healed if corrupt)
//   run (run_command)        setup if needed, payload, exec, stream
//   keep (keep_failed)       --keep-failed: a failed run's VM saved for kiln shell
//                            (then the VM is destroyed)
#include "common/fs.h"
#include "common/log.h"
#include "runner/acquire_vm.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "runner/image_plan.h"
#include "runner/interrupt.h"
#include "runner/run_command.h"
#include "runner/test_listing.h"

#include <memory>

namespace kiln::runner {
namespace {

struct RunCliOptions {
  VmOptions vm;
  RunArgs args;
  bool list_tests_on_host = false;
  bool no_share = false;
};

Result<int> run(RunCliOptions& o, Progress& progress) {
  KILN_ASSIGN_OR_RETURN(RunPlan plan, plan_run(o.args));
  KILN_ASSIGN_OR_RETURN(std::optional<GuestImage> image, resolve_guest_image(o.vm.image, progress));
  if (image) KILN_TRY(plan_for_image(*image, o.args, plan));
  KILN_ASSIGN_OR_RETURN(PreparedGuest guest, prepare_guest(o.vm.guest));
  if (image) attach_image(*image, guest);
  plan.request.memory_mib = guest.spec.memory_mib;
  snapshot::Store store(fs::cache_root() / "snapshots");
  KILN_TRY(attach_remote(store, o.vm));
  KILN_ASSIGN_OR_RETURN(Golden golden, ensure_golden(store, guest, o.vm.engine, progress, false, plan.request.verbose));
  KILN_ASSIGN_OR_RETURN(RestorePoint point, choose_restore_point(store, golden, guest.spec, plan, progress));
  GoldenSource source{store, guest, o.vm.engine, plan.request.verbose};
  KILN_ASSIGN_OR_RETURN(AcquiredVm vm, acquire_vm(source, golden, std::move(point), progress));
  progress.done();
  std::optional<KeepTarget> keep;
  if (plan.keep_failed) keep = KeepTarget{golden.engine->name(), golden.engine->identity(), guest.spec, plan.test_name};
  KILN_ASSIGN_OR_RETURN(RunOutcome outcome, run_command(vm, plan, keep));
  return outcome.exit_code;
}

// kiln's own exit codes (docs/exit-codes.md) for a run that did not get the command's.
int exit_code_for(const Error& e) {
  switch (e.kind) {
    case ErrorKind::timeout: return exit_code::timeout;
    case ErrorKind::not_found: return exit_code::not_found;
    case ErrorKind::not_executable: return exit_code::not_executable;
    case ErrorKind::interrupted: return exit_code::signal_base + interrupt::received();
    default: return exit_code::kiln_error;
  }
}

int execute(RunCliOptions& o) {
  apply_log_options(o.vm);
  log::ScopedTimer total("kiln run");
  o.args.verbose = o.vm.verbosity > 0;
  Progress progress;
  o.vm.guest.progress = [&progress](const std::string& s) { progress.step(s); };
  auto code = run(o, progress);
  if (code) return *code;
  progress.done();
  log::error(code.error().message);
  return exit_code_for(code.error());
}

}  // namespace

void register_run(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<RunCliOptions>();
  auto* cmd = app.add_subcommand("run", "Run a command in a fresh microVM restored from the golden snapshot");
  cmd->footer(
      "A COMMAND containing '/' is a host executable: it, its shared libraries (as the host's dynamic\n"
      "loader resolves them) and every --file appear in the guest at the same absolute paths (with\n"
      "--image: under /.kiln/host, apart from the image's files; docs/images.md).\n"
      "A bare name runs from the guest's PATH (busybox applets; the image's programs with --image).\n"
      "Example: kiln run --timeout 30 --file ./testdata -- ./build/my_test --gtest_brief=1");
  // Once parsed, before kiln prepares its cache (main.cpp): a listing needs no cache,
  // no golden and no VM.
  add_vm_options(*cmd, o->vm, [o] {
    if (!o->list_tests_on_host || !is_test_listing(o->args.argv)) return;
    auto listed = exec_listing_on_host(o->args.argv);
    log::error(listed.error().message);
    throw CLI::RuntimeError(exit_code_for(listed.error()));
  });
  // One value per flag (repeat the flag for more), so `--file X -- cmd --flag` keeps `--`
  // as the end of kiln's options rather than the end of --file's values.
  cmd->add_option("--env", o->args.env, "Set K=V in the command's environment (repeatable)")
      ->allow_extra_args(false)
      ->check([](const std::string& s) { return s.find('=') == std::string::npos || s.front() == '='
                                                    ? std::string("expected K=V")
                                                    : std::string(); });
  cmd->add_option("--cwd", o->args.cwd, "Working directory in the guest (default: the current directory, created empty)");
  cmd->add_option("--user", o->args.user,
                  "Run the command as this guest user (name, uid, name:group, uid:gid; default: the image's "
                  "User, else root)");
  cmd->add_option("--timeout", o->args.timeout, "Kill the VM after SEC seconds; kiln then exits 124")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--output-dir", o->args.output_dir,
                  "Give the command an empty KILN_OUTPUT_DIR in the guest and bring what it leaves there back "
                  "into DIR, pass or fail (emptied at the start of every run; docs/outputs.md)");
  cmd->add_option("--output-cap", o->args.output_cap_mib,
                  "Bring back at most MiB of output file contents; what does not fit is named, not copied")
      ->default_val(kDefaultOutputCapMiB)
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  cmd->add_flag("-i,--interactive", o->args.interactive,
                "Stream stdin to the command even when it is a terminal (a pipe or file always is)");
  cmd->add_flag("-t,--tty", o->args.tty,
                "Give the command a terminal in the guest, driven by kiln's own (raw mode; ^C, ^Z and window "
                "size changes reach the guest's foreground job): kiln run -it -- sh");
  cmd->add_flag("--keep-failed", o->args.keep_failed,
                "If the command fails (non-zero exit, signal, timeout), save its VM before it is torn down, a "
                "timed-out command still running in it, for `kiln shell ID` (also KILN_KEEP_FAILED=1)");
  cmd->add_option("--test-name", o->args.test_name, "The test's name, for a kept VM (default: the command line)");
  cmd->add_option("--file", o->args.files, "Host file or directory to place in the guest at the same path (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--setup", o->args.setup,
                  "Run CMD (/bin/sh -c, in /) once and save the VM as a fixture snapshot every run with the "
                  "same setup starts from (e.g. start and seed a server)");
  cmd->add_option("--setup-file", o->args.setup_files,
                  "Host file the setup needs (repeatable; executables come with their libraries)")
      ->allow_extra_args(false);
  cmd->add_flag("--no-layers", o->args.no_layers,
                "Build no payload or fixture layers: ship the payload (and run the setup) on every run "
                "(also KILN_NO_LAYERS=1)");
  cmd->add_option("--share", o->args.shares,
                                "Host directory the guest reads at the same path, read-only and live; the "
                                "guest's writes there stay in the guest (repeatable; docs/shares.md)")
                    ->allow_extra_args(false)
                    ->check(CLI::ExistingDirectory);
  cmd->add_flag("--no-share", o->no_share,
                "Share no host directory, even where --share is given (e.g. in a launcher): the guest sees "
                "only the payload and the --files");
  cmd->add_flag("--list-tests-on-host", o->list_tests_on_host,
                "If the command only lists test cases (EXE --gtest_list_tests [--gtest_*...]), run it on the "
                "host: the launcher mode of the whole-project switch, so test discovery boots no VM");
  cmd->add_option("command", o->args.argv, "The command and its arguments (put them after --)")->required();
  cmd->callback([o, cmd, &exit_code] {
    o->args.setup_given = cmd->count("--setup") > 0;
    if (o->no_share) o->args.shares.clear();
    exit_code = execute(*o);
  });
}

}  // namespace kiln::runner
