// The kiln command line: one subcommand, one file (cmd_*.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

#include "runner/guest.h"
#include "vmm/engine.h"

namespace kiln::runner {

/// Options every VM-starting subcommand shares (run, bake).
struct VmOptions {
  GuestOptions guest;
  vmm::EngineOptions engine;
  int verbosity = 0;
  bool timings = false;
};

/// Adds the options and, as `cmd`'s parse_complete_callback (CLI11 keeps one per
/// command), the engine-limits check; `then` runs after that check passed.
void add_vm_options(CLI::App& cmd, VmOptions& options, std::function<void()> then = {});
/// Apply -v / --timings to the logger.
void apply_log_options(const VmOptions& options);

void register_run(CLI::App& app, int& exit_code);
void register_bake(CLI::App& app, int& exit_code);
void register_snapshots(CLI::App& app, int& exit_code);
void register_resources(CLI::App& app, int& exit_code);
void register_tests(CLI::App& app, int& exit_code);

}  // namespace kiln::runner
