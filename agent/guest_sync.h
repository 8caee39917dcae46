// Per-restore freshening. Every VM restored from one golden snapshot starts
// with the same clock and the same RNG state; SYNC makes each clone distinct.
#pragma once

#include "agent/protocol.h"
#include "agent/status.h"

namespace kiln::agent {

/// Sets CLOCK_REALTIME from the host (0 = leave it) and mixes the host's
/// entropy into the kernel RNG, crediting it and forcing a reseed so that
/// getrandom() output diverges between clones immediately.
Status apply_sync(const proto::Sync& sync);

}  // namespace kiln::agent
