// Deadlines for every wait on qemu or the guest: nothing they send (or fail to send) may hang kiln.
#pragma once

#include <chrono>
#include <climits>

namespace kiln::vmm {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_after(std::chrono::milliseconds d) { return Clock::now() + d; }

/// Milliseconds left until `deadline`, as poll() wants them: 0 once passed, rounded up
/// (so a wait never spins on a sub-millisecond remainder), capped to fit an int.
inline int poll_timeout_ms(Deadline deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

}  // namespace kiln::vmm
