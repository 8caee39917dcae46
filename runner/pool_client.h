// `kiln run`'s side of the warm pool (docs/pool.md): ask this user's pool daemon for a
// VM already restored and paused at the run's restore point, and start the daemon when
// there is none, for the runs after this one.
#pragma once

#include "common/unique_fd.h"
#include "vmm/engine.h"

#include <filesystem>
#include <memory>
#include <string>

namespace kiln::runner {

/// A connection to this user's pool daemon at `socket`, or an invalid fd: no socket
/// (`*absent` true), a stale one (its daemon died: `*absent` true too), or a socket or
/// daemon of another user (`*absent` false: do not start one).
UniqueFd connect_pool_daemon(const std::filesystem::path& socket, bool* absent);

/// Is the pool in use? Not with KILN_NO_POOL=1.
bool pool_enabled();

/// A running VM from the pool for `engine` restoring `files` with `spec`, or null: the
/// pool is off, there is no daemon yet (one is
/// started now, for later runs), or none is ready. Never an error: the caller then
/// restores as before. `label` names the restore point in `kiln serve --status`.
std::unique_ptr<vmm::Vm> take_pooled_vm(const vmm::Engine& engine, const vmm::GuestSpec& spec,
                                        const vmm::SnapshotFiles& files, const std::string& label);

}  // namespace kiln::runner
