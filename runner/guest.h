// Resolves the guest a run needs — kernel, initramfs with the agent, machine
// size — into the boot spec and the snapshot key (minus the engine part).
#pragma once

#include "common/result.h"
#include "snapshot/key.h"
#include "vmm/engine.h"

#include <filesystem>
#include <functional>
#include <string>

namespace kiln::runner {

struct GuestOptions {
  std::filesystem::path kernel;   ///< --kernel (default: Debian's cloud kernel in the cache)
  std::filesystem::path modules;  ///< --modules: that kernel's lib/modules/<version>
  uint32_t memory_mib = 256;
  uint32_t vcpus = 1;
  std::function<void(const std::string&)> progress;
};

struct PreparedGuest {
  vmm::GuestSpec spec;
  snapshot::SnapshotKey key;  ///< complete except `engine`
  std::string kernel_version;
};

/// The kernel command line every kiln guest boots with.
std::string guest_cmdline();

/// Locate kiln-agent: $KILN_AGENT, beside the kiln binary, or ../libexec/kiln/.
Result<std::filesystem::path> find_agent_binary();

Result<PreparedGuest> prepare_guest(const GuestOptions& options);

}  // namespace kiln::runner
