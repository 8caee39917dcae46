// kiln's own exit codes. A test's exit code (0-255) passes through unchanged and
// death by signal N becomes 128+N, as in a shell; kiln's failures use the codes
// below, chosen like `timeout(1)` and `docker run`, so ctest and CI logs can
// tell a failing test from a broken VM. Documented in docs/exit-codes.md.
#pragma once

namespace kiln::exit_code {

inline constexpr int timeout = 124;         ///< --timeout expired; the VM was killed
inline constexpr int kiln_error = 125;      ///< kiln or the VM failed (no kernel, no qemu, bad snapshot, agent silent)
inline constexpr int not_executable = 126;  ///< the command exists in the guest but cannot be executed
inline constexpr int not_found = 127;       ///< the command does not exist in the guest
inline constexpr int signal_base = 128;     ///< command killed by signal N -> 128 + N
inline constexpr int usage = 2;             ///< bad command line (CLI11's convention)

}  // namespace kiln::exit_code
