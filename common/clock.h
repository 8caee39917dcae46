// kiln's one monotonic clock, for the host and the static guest agent alike: it is
// header-only and std-only, so the agent (which links nothing of kiln's but the
// protocol) includes it too instead of keeping its own clock_gettime wrapper.
#pragma once

#include <chrono>
#include <climits>

namespace kiln {

/// std::chrono::steady_clock: CLOCK_MONOTONIC on Linux, never stepped by the wall clock.
using Clock = std::chrono::steady_clock;
/// A point on Clock by which a wait must end: nothing a guest or a VMM sends (or fails
/// to send) may hang kiln.
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

/// Time since `start` on Clock, in milliseconds (fractional), as timers print it.
inline double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

/// Time since `start` on Clock, in seconds (fractional), as progress lines print it.
inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace kiln
