// The kiln command line: one subcommand, one file (cmd_*.cpp).
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/result.h"
#include "runner/guest.h"
#include "runner/guest_image.h"
#include "vmm/engine.h"

namespace kiln::snapshot {
class Store;
}

namespace kiln::runner {

/// Options every VM-starting subcommand shares (run, bake).
struct VmOptions {
  GuestOptions guest;
  ImageOptions image;
  vmm::EngineOptions engine;
  int verbosity = 0;
  bool timings = false;
  std::string remote_cache;  ///< --remote-cache HOST[:PORT]/REPOSITORY ("" = $KILN_REMOTE_CACHE)
};

/// Adds the options and, as `cmd`'s parse_complete_callback (CLI11 keeps one per
/// command), the engine-limits check; `then` runs after that check passed.
void add_vm_options(CLI::App& cmd, VmOptions& options, std::function<void()> then = {});
/// Apply -v / --timings to the logger.
void apply_log_options(const VmOptions& options);
/// The remote cache (--remote-cache, else $KILN_REMOTE_CACHE; none: nothing) set on
/// `store`: misses look there before baking, bakes are pushed, and the store's end
/// waits for those pushes ($KILN_REMOTE_PUSH_WAIT seconds, default 60).
Result<void> attach_remote(snapshot::Store& store, const VmOptions& options);

void register_run(CLI::App& app, int& exit_code);
void register_bake(CLI::App& app, int& exit_code);
void register_snapshots(CLI::App& app, int& exit_code);
/// `kiln snapshots push|pull` under the `snapshots` command (cmd_snapshots_remote.cpp).
void register_snapshot_transfer(CLI::App& snapshots, int& exit_code);
void register_resources(CLI::App& app, int& exit_code);
void register_tests(CLI::App& app, int& exit_code);
void register_images(CLI::App& app, int& exit_code);
void register_serve(CLI::App& app, int& exit_code);
void register_shell(CLI::App& app, int& exit_code);

/// "1.5 MiB", and "3m ago" (shared by the listing commands).
std::string human_bytes(uint64_t bytes);
std::string age(std::chrono::system_clock::time_point t);
/// The image part of `kiln snapshots gc` (cmd_images.cpp): prints what it removes and
/// keeps (an image a snapshot in `snapshots` was baked from is kept); returns bytes freed.
Result<uint64_t> gc_images(const snapshot::Store& snapshots, bool dry_run);

}  // namespace kiln::runner
