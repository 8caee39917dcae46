// `kiln serve`: the warm pool daemon (docs/pool.md). It keeps, per restore point that
// runs asked for lately, a few qemu VMs restored and paused just before they would run,
// and hands one to each run that asks (runner/pool_client.h); a VM is never used twice.
// One daemon per socket (pool::socket_path()); it exits after an idle period.
#pragma once

#include <chrono>
#include <cstdint>

namespace kiln::runner::pool {

struct ServeOptions {
  /// Exit after this long with no run connected and no request.
  std::chrono::seconds idle{60};
  /// Ready VMs kept per restore point (ctest -j2 takes two at once).
  uint32_t per_key = 2;
  /// Ready VMs at most, all restore points together; 0: 8.
  uint32_t max_ready = 0;
  /// A connection the run that started this daemon left its take on (kFirstTakeFd),
  /// or -1: served like any run's, so the daemon restores for that point at once.
  int first_take_fd = -1;
};

/// Serve on pool::socket_path() until idle or SIGTERM/SIGINT; the exit code. When
/// another daemon already serves that socket, returns 0 at once.
int serve(const ServeOptions& options);

}  // namespace kiln::runner::pool
