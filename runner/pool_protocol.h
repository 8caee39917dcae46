// The warm pool's wire format and where its daemon listens (docs/pool.md). One daemon
// per user, cache directory and kiln build; a kiln run asks it over a SOCK_SEQPACKET
// unix socket (mode 0600) for a VM restored and paused at the run's restore point, and
// gets the VM's descriptors back (common/fd_passing.h).
//
//   run -> daemon   {"op":"take","kiln":"<version>", <PoolRequest>}   (another version: a miss)
//   daemon -> run   {"hit":true,"vm":"qemu","pid":N,"qmp_next_id":K,"qmp_pending":"..."}
//                   + fds: pidfd, qmp, agent, share, console, stderr   (kHandoverFds)
//                   or {"hit":true,"vm":"kvm-worker","pid":N}
//                   + fds: pidfd, control, agent, share                (kKvmHandoverFds)
//                   or {"hit":false,"why":"..."}
//   run -> daemon   {"op":"status"}  ->  PoolStatus as JSON
//
// A kvm VM cannot leave the process that made it (KVM descriptors are bound to their
// process's memory): it lives in a worker process of its own (runner/pool_kvm_worker.h)
// that the run drives over the control socket; the agent and share channels go straight
// to the run.
//
// A handed-over VM belongs to the run while the run's connection stays open; when it
// closes (the run ended, or was killed), the daemon kills that qemu and reaps it.
#pragma once

#include "common/result.h"
#include "vmm/engine.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::runner::pool {

/// Largest message either side accepts.
inline constexpr size_t kMaxMessageBytes = 64 << 10;
/// Descriptors that come with a hit, in this order.
inline constexpr size_t kHandoverFds = 6;
/// ... with a hit of the kvm engine (a worker process).
inline constexpr size_t kKvmHandoverFds = 4;
/// The descriptor a daemon started by a run finds that run's take on (`kiln serve
/// --first-take-fd`): one end of a socket pair, the take already in it.
inline constexpr int kFirstTakeFd = 3;

/// A restore point as the daemon needs it to restore VMs ahead of the runs that want them.
struct PoolRequest {
  std::string engine;           ///< "qemu" or "kvm"
  std::string engine_identity;  ///< the run's engine; the daemon's must be the same
  std::string accel;            ///< qemu accelerator: "kvm" or "tcg" ("kvm" for the kvm engine)
  vmm::GuestSpec spec;
  /// State and memory: a flat file (qemu), or the golden's with the layers' page files
  /// as overlays (kvm). Overlays travel as their files only: the kvm worker reads their
  /// extents from the store's layer chain again (snapshot::overlay_files).
  vmm::SnapshotFiles files;
  /// Device, inode, size, mtime and ctime of every file: a snapshot replaced since (a
  /// rebake, a rebuilt layer or flat file) is another key, never served from old VMs.
  std::string files_identity;
  std::string label;  ///< for `kiln serve --status` (the snapshot's id)

  /// Everything but the label, as one string: VMs restored for one key serve only it.
  std::string key() const;
};

/// The identity string of `files` now (PoolRequest::files_identity), or an error if
/// either is missing.
Result<std::string> files_identity(const vmm::SnapshotFiles& files);

std::string encode_take(const PoolRequest& request);
/// Parse a take message (untrusted: every field checked).
Result<PoolRequest> decode_take(const std::string& message);

struct PoolStats {
  std::string label;
  uint64_t ready = 0, hits = 0, misses = 0;
};
struct PoolStatus {
  int64_t pid = 0;
  int64_t uptime_s = 0;
  uint64_t hits = 0, misses = 0, ready = 0, lent = 0, max_ready = 0;
  std::vector<PoolStats> pools;
};
std::string encode_status(const PoolStatus& status);
Result<PoolStatus> decode_status(const std::string& message);

/// The op of a message from a run ("take", "status"), or an error for anything else.
Result<std::string> message_op(const std::string& message);

/// This user's daemon socket for this cache directory and this kiln binary:
/// $XDG_RUNTIME_DIR/kiln/pool-<hash>.sock when XDG_RUNTIME_DIR is set, else
/// <cache>/pool/pool-<hash>.sock (hash of the cache root and the kiln executable's path,
/// size and mtime: a rebuilt kiln gets a daemon of its own). An error when the path
/// would not fit a unix socket address.
Result<std::filesystem::path> socket_path();

}  // namespace kiln::runner::pool
