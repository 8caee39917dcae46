// `kiln run`'s first phase: what to run, resolved on the host before any VM
// exists — the command (a host executable with its library closure, or a guest
// command), the files it needs, the setup, and the request the agent will get.
#pragma once

#include "common/result.h"
#include "runner/fixture.h"
#include "runner/payload.h"
#include "runner/run_in_vm.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::runner {

/// The command-line arguments of `kiln run` besides the VM options.
struct RunArgs {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::vector<std::string> files;
  std::string cwd;
  double timeout = 0;
  std::string setup;
  bool setup_given = false;  ///< --setup '' is an error, not "no setup"
  std::vector<std::string> setup_files;
  bool no_layers = false;
  bool verbose = false;
  std::vector<std::string> shares;  ///< --share: host trees the guest reads read-only (docs/shares.md)
  std::string user;                 ///< --user: the guest user the command runs as (an image's User otherwise)
  std::string output_dir;           ///< --output-dir: where the command's KILN_OUTPUT_DIR comes back to
  uint64_t output_cap_mib = kDefaultOutputCapMiB;  ///< --output-cap
  bool interactive = false;  ///< -i: stream kiln's stdin even when it is a terminal
  bool tty = false;          ///< -t: a guest terminal, driven by kiln's own (stdin must be one)
  bool keep_failed = false;  ///< --keep-failed (or KILN_KEEP_FAILED=1): keep a failed run's VM
  std::string test_name;     ///< --test-name: what a kept VM is listed as
};

struct RunPlan {
  RunRequest request;              ///< argv (host paths made absolute), env, cwd, timeout
  Payload payload;                 ///< the executable, its libraries, every --file
  std::optional<SetupSpec> setup;  ///< --setup, with the files it needs in setup_files
  Payload setup_files;
  bool use_layers = true;          ///< payload and fixture layers (off: --no-layers, KILN_NO_LAYERS=1)
  std::string label;               ///< the executable's file name, for layer labels
  bool keep_failed = false;        ///< --keep-failed or KILN_KEEP_FAILED=1 (keep_failed.h)
  std::string test_name;
};

/// Resolve `args` into a plan. A host command that does not exist fails with
/// ErrorKind::not_found, one that cannot be executed with ErrorKind::not_executable.
Result<RunPlan> plan_run(const RunArgs& args);

}  // namespace kiln::runner
