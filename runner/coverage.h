// Coverage of tests built with gcc --coverage (gcov), as if they had run on the host.
//
// In the guest, an instrumented command writes its counters under GCOV_PREFIX =
// proto::kGuestCoverageDir, never into the build tree it may see through a share (the
// guest's writes there stay in the guest, so the counts would be lost, or counted
// twice if they ever reached the host). After the run kiln brings that tree back
// (collect) and merges each .gcda into the host's with gcov-tool, holding the same
// fcntl lock on the host's .gcda that libgcov takes, so runs in parallel and plain
// host runs add up. A .gcda is only written where the host build has its .gcno: the
// guest cannot make kiln write anywhere else. docs/coverage.md.
#pragma once

#include "common/clock.h"
#include "common/result.h"
#include "runner/agent_client.h"

#include <cstdint>
#include <filesystem>

namespace kiln::runner {

struct CoverageReport {
  uint32_t merged = 0;   ///< .gcda files added into the host's
  uint32_t skipped = 0;  ///< counters with no .gcno of the host build beside their path
};

/// Merge the counters under `guest_tree` (kGuestCoverageDir as collected: host paths
/// relative to /) into the host's .gcda files.
Result<CoverageReport> merge_coverage(const std::filesystem::path& guest_tree);

/// After a run whose outcome says it left counters: collect and merge them.
Result<CoverageReport> bring_back_coverage(AgentClient& agent, Deadline deadline);

}  // namespace kiln::runner
