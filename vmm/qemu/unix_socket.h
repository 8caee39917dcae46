// Connecting to the unix sockets qemu listens on (QMP, agent channel).
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "common/unique_fd.h"

#include <filesystem>
#include <functional>

namespace kiln::vmm::qemu {

/// Connect a stream socket to `path`. qemu creates its sockets a few ms after it starts,
/// so a missing or not-yet-listening socket is retried until `deadline`. `peer_alive`
/// (optional) is asked between attempts: returning false stops at once, so a qemu that
/// died at start-up costs milliseconds, not the whole deadline.
/// Errors of kind timeout when the deadline passes.
Result<UniqueFd> connect_unix(const std::filesystem::path& path, Deadline deadline,
                              const std::function<bool()>& peer_alive = {});

}  // namespace kiln::vmm::qemu
