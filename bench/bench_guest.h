// The guest, store and golden snapshot one bench measures against, and the timed
// unit every bench is built from: restore (or cold-boot) a VM, run one command in it,
// check it exited 0. The command's output is discarded (it would garble the tables).
#pragma once

#include "common/result.h"
#include "runner/golden.h"
#include "runner/guest.h"
#include "runner/payload.h"
#include "runner/run_in_vm.h"
#include "snapshot/store.h"
#include "vmm/engine.h"

#include <memory>
#include <string>

namespace kiln::bench {

class BenchGuest {
 public:
  /// Prepare the default guest and find or bake its golden snapshot on `engine`, in the
  /// store of the current cache root (a ScratchCache for benches).
  static Result<BenchGuest> create(const vmm::EngineOptions& engine);

  vmm::Engine& engine() { return *golden_.engine; }
  const snapshot::Store& store() const { return *store_; }
  const snapshot::Snapshot& golden() const { return golden_.snapshot; }
  const vmm::GuestSpec& spec() const { return guest_.spec; }

  /// The payload layer of `payload` over the golden: found, or built now (not timed).
  Result<snapshot::Snapshot> payload_layer(const runner::Payload& payload, const std::string& label);

  /// Restore `snap` (golden or layer) into a running VM.
  Result<std::unique_ptr<vmm::Vm>> restore(const snapshot::Snapshot& snap);

 private:
  BenchGuest() = default;
  runner::PreparedGuest guest_;
  std::unique_ptr<snapshot::Store> store_;
  runner::Golden golden_;
};

/// One timed run: what was measured and the VM it ran in (kept alive if asked).
struct TimedRun {
  double ms = 0;                ///< restore (or boot) start -> the command's exit seen
  std::unique_ptr<vmm::Vm> vm;  ///< set only with keep_vm
};

/// Restore `snap`, send `shipped` (empty for a payload layer), run `request`, require exit 0.
Result<TimedRun> restore_and_run(BenchGuest& guest, const snapshot::Snapshot& snap, const runner::Payload& shipped,
                                 const runner::RunRequest& request, bool keep_vm = false);

/// Cold-boot the guest (fresh RAM file in a temp dir), wait for the agent, send
/// `shipped`, run `request`, require exit 0.
Result<TimedRun> cold_boot_and_run(BenchGuest& guest, const runner::Payload& shipped,
                                   const runner::RunRequest& request);

}  // namespace kiln::bench
