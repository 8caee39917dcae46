// The pool's kvm worker (docs/pool.md): one process per pooled VM of the kvm engine.
// KVM descriptors only work in the process that made the VM (they are bound to its
// memory), so a VM restored ahead of its run cannot be passed to the run as a qemu
// process can. The worker restores it, paused, and the run that takes it drives it over
// a control socket; the agent and share channels go to the run directly, so the test's
// bytes never pass through the worker or the daemon.
//
// The control socket is the worker's stdin (SOCK_SEQPACKET; pool_protocol.h's limits):
//   daemon -> worker   the run's take message (PoolRequest), once
//   worker -> daemon   {"ready":true} + fds: agent, share   or {"ready":false,"why":"..."}
//   run -> worker      {"op":"start"}     -> {"ok":true} or {"ok":false,"why":"..."}
//                      {"op":"exited"}    -> {"exited":null} or {"exited":"why"}
//                      {"op":"console"}   -> {"console":"<the last 48 KiB>"}
//                      {"op":"save_whole","state":P,"memory":P,"ms":N} -> {"ok":...}
// On EOF (the run is done, or died) the worker destroys the VM and exits; the daemon
// also kills it when the run's connection closes, and PR_SET_PDEATHSIG when the daemon dies.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "runner/pool_protocol.h"
#include "runner/pool_ready_vm.h"

#include <nlohmann/json.hpp>

#include <memory>

namespace kiln::runner::pool {

/// `kiln serve --kvm-worker`: restore the VM the daemon asks for on stdin and serve it
/// until stdin closes. The exit code.
int run_kvm_worker();

/// Start a worker from the calling thread (the daemon's refill thread: PR_SET_PDEATHSIG
/// follows it) and wait until its VM is restored per `request`. An error says why not
/// (another engine identity, the snapshot replaced, a failed restore).
Result<std::unique_ptr<ReadyVm>> start_kvm_worker(const PoolRequest& request);

/// One request and its answer on a worker's control socket.
Result<nlohmann::json> worker_call(int control, const nlohmann::json& request, Deadline deadline);

}  // namespace kiln::runner::pool
