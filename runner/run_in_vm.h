// One command in one restored VM: restore, sync clock and entropy, place the
// payload, exec, stream output, map the outcome to an exit code.
#pragma once

#include "common/result.h"
#include "agent/protocol.h"
#include "runner/agent_client.h"
#include "runner/outputs.h"
#include "runner/payload.h"
#include "vmm/engine.h"

#include <optional>
#include <string>
#include <vector>

namespace kiln::runner {

struct RunRequest {
  std::vector<std::string> argv;
  /// The program as the user named it (a host executable: its absolute host path),
  /// whatever argv becomes (an image guest starts it through its own loader).
  std::string program;
  std::vector<std::string> env;  ///< K=V, on top of kiln's default guest environment
  std::string cwd;               ///< guest working directory (created if missing)
  std::optional<double> timeout_seconds;
  bool verbose = false;          ///< print the guest console log on stderr
  uint32_t memory_mib = 0;       ///< the guest's memory, named when its OOM killer strikes (0: unknown)
  /// Forwarded to the command's stdin unless it is /dev/null, a terminal or closed
  /// (then the command gets the guest's /dev/null); see stdin_forward.h.
  int stdin_fd = 0;
  /// -i: a terminal on stdin_fd is streamed like a pipe, line by line as it gives them.
  bool interactive = false;
  /// -t: the command gets a guest terminal, with stdin_fd (a terminal, in raw mode
  /// meanwhile) as its keyboard and window; its output all comes back on stdout.
  bool terminal = false;
  /// Host directories shared read-only at their own paths (share_roots(): absolute,
  /// none inside another); the guest's writes there stay in the guest. The caller
  /// serves them (tree_shares.h); run_in_vm asks the agent to mount them.
  std::vector<std::string> shares;
  /// The guest has them mounted already (a kept VM): served, not asked for again.
  bool shares_mounted = false;
  /// The environment `env` goes on top of: empty = default_guest_env(); an OCI image
  /// guest's Env otherwise.
  std::vector<std::string> base_env;
  /// Run as this guest user ("name", "uid", "name:group", "uid:gid"); "" = root.
  std::string user;
  /// --output-dir: the command gets an empty KILN_OUTPUT_DIR, brought back here after
  /// it ends (outputs.h).
  std::optional<OutputsSpec> outputs;
};

/// How the command ended, already mapped to kiln's exit code convention.
struct RunOutcome {
  int exit_code = 0;
  std::string summary;  ///< e.g. "exited with code 3", "killed by signal 11 (SIGSEGV)"
  std::string notice;   ///< said to the user even without -v when set (the guest's OOM killer struck)
  bool coverage = false;  ///< the guest holds gcov counters of the run (coverage.h)
};

/// The environment every command starts from (hermetic: nothing leaks in from the host).
std::vector<std::string> default_guest_env();

/// The exec request `request` becomes: kiln's environment under the request's, the
/// guest directories kiln gives the command (outputs, coverage), the stdin mode.
proto::Exec exec_for(const RunRequest& request);

/// Run `request` with `payload` in place in a freshly restored `vm`, talking to its
/// agent through `agent` (the VM's channel). Errors are
/// VM-level failures (exit code 125) unless their kind says timeout or interrupted;
/// output the command wrote that did not all arrive is such an error. The outcome's
/// notice is printed here.
/// After restoring a payload layer, `payload` is empty: its files are already there.
Result<RunOutcome> run_in_vm(AgentClient& agent, vmm::Vm& vm, const Payload& payload, const RunRequest& request);

/// The command timed out (its exec is still outstanding): ask the agent to leave it
/// running and serve requests again, so a restore of this VM gets a working agent.
/// Output the command wrote before that goes to kiln's streams. Returns its pid, or
/// nothing if it ended meanwhile.
Result<std::optional<uint32_t>> detach_command(AgentClient& agent, Deadline deadline);

/// Sync the guest (clock, entropy) and place `payload`, nothing else: what a payload
/// layer holds when it is saved.
Result<void> place_payload(vmm::Vm& vm, const Payload& payload);

struct SetupOutcome {
  int exit_code = 0;
  std::string summary;  ///< "exited with code 1"
  std::string output;   ///< stdout and stderr interleaved (the last 64 KiB)
};

/// Sync, place `payload` and run `command` with `/bin/sh -c` in the guest (cwd /,
/// `base_env` — empty: the default environment — plus `env`), collecting its output;
/// `echo` also copies it to the host's stderr (-v). Errors are VM-level failures; a
/// non-zero exit is an outcome.
Result<SetupOutcome> run_setup(vmm::Vm& vm, const Payload& payload, const std::string& command,
                               const std::vector<std::string>& base_env, const std::vector<std::string>& env,
                               bool echo);

}  // namespace kiln::runner
