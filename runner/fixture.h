// Fixture snapshots: `kiln run --setup 'CMD'` runs CMD once in a VM restored from the
// golden (say, start and seed a database server), saves that VM as a fixture layer,
// and every run naming the same setup restores with the server already running.
#pragma once

#include "common/result.h"
#include "runner/layers.h"
#include "runner/payload.h"

#include <string>
#include <vector>

namespace kiln::runner {

struct SetupSpec {
  std::string command;             ///< run with /bin/sh -c in the guest, cwd /
  std::vector<std::string> files;  ///< --setup-file: host paths it needs (executables with their closure)
  std::vector<std::string> env;    ///< K=V on top of the base environment
  /// The environment it starts from: "" = kiln's default guest environment; an OCI
  /// image guest's Env otherwise (runner/image_plan).
  std::vector<std::string> base_env;
};

/// Where the setup command's first word comes from: the host (shipped with its closure,
/// the default guest) or the guest itself (an OCI image has its own programs).
enum class SetupCommandFrom { host, guest };

/// What the setup needs in the guest: the command's first word resolved on the host's
/// PATH (if it is found there: else it is a shell builtin or a guest command) with its
/// library closure, and every --setup-file — an executable one with its closure too.
Result<Payload> setup_payload(const SetupSpec& setup, SetupCommandFrom from = SetupCommandFrom::host);

/// The fixture layer for `setup`: keyed by the command, its payload's contents and its
/// environment. Building it runs the setup; a non-zero exit fails the build with the
/// setup's output, and nothing is saved. `echo` shows the setup's output as it runs (-v).
Result<LayerRecipe> fixture_recipe(const SetupSpec& setup, const Payload& payload, bool echo);

/// Run the setup in `vm` (no layers: --no-layers runs it before every test).
Result<void> run_setup_in(vmm::Vm& vm, const SetupSpec& setup, const Payload& payload, bool echo);

}  // namespace kiln::runner
