// The qemu command line for booting and restoring a kiln guest: a pure function.
#pragma once

#include "vmm/accel.h"
#include "vmm/engine.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::vmm::qemu {

enum class LaunchMode {
  boot,     ///< cold boot; guest RAM in a new file mapped shared (it becomes the snapshot's memory)
  restore,  ///< wait for an incoming migration; RAM mapped copy-on-write from the snapshot's memory file
  /// wait for an incoming migration; RAM mapped shared from a private copy of the snapshot's
  /// memory file, which thereby becomes the new layer's memory (Engine::restore_for_layer)
  restore_shared,
};

/// Everything the qemu command line depends on.
struct QemuCommand {
  std::string binary;  ///< qemu-system-x86_64 (path or name on PATH)
  Accel accel = Accel::tcg;
  LaunchMode mode = LaunchMode::boot;
  GuestSpec guest;
  std::filesystem::path memory_file;   ///< guest RAM backing file
  std::filesystem::path console_log;   ///< serial console (ttyS0) output
  std::filesystem::path agent_socket;  ///< qemu listens here; port proto::kAgentPortName in the guest
  std::filesystem::path share_socket;  ///< qemu listens here; port proto::kSharePortName in the guest
  std::filesystem::path qmp_socket;    ///< qemu listens here for QMP
  /// Appended to the kernel command line as tsc_early_khz= (TCG: see tcg_tsc.h), unless
  /// the command line already sets it.
  std::optional<uint32_t> tsc_khz;
};

/// Build the argv (argv[0] = binary). The modes differ only in the RAM mapping
/// (share=on vs share=off) and `-incoming defer`: the device model must be identical
/// for the migration stream to load.
std::vector<std::string> build_qemu_argv(const QemuCommand& command);

/// qemu parses option values as comma-separated key=value lists; a literal comma in a
/// value (a path, say) must be doubled.
std::string escape_option_value(const std::string& value);

}  // namespace kiln::vmm::qemu
