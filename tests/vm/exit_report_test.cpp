// What the agent's exit report lets kiln tell the user, on real VMs: output that
// did not arrive is an error, never silent; a test the guest's out-of-memory
// killer ended is named as such.
#include "vm_test_support.h"

#include <gtest/gtest.h>

using namespace kiln::vmtest;

TEST(ExitReport, AFloodArrivesWholeOnBothStreams) {
  auto r = run_kiln({"run", "--", "sh", "-c", "head -c 8388608 /dev/zero; head -c 1048576 /dev/zero >&2"});
  EXPECT_EQ(r.exit_code, 0) << r.err.substr(r.err.size() > 2000 ? r.err.size() - 2000 : 0);
  EXPECT_EQ(r.out.size(), 8388608u);
  EXPECT_EQ(r.out.find_first_not_of('\0'), std::string::npos);
  EXPECT_GE(r.err.size(), 1048576u);  // plus any kiln: lines
}

TEST(ExitReport, OutputLeftUnforwardedIsAnErrorNotSilence) {
  // 16 MiB sit in the command's stdout pipe when it exits; the agent forwards a
  // bounded amount after the exit (a daemon may hold the pipe forever), so part
  // of it cannot arrive. kiln must say so and fail as a VM-level error.
  auto r = run_kiln({"run", "--", GUEST_LIMITS_PROBE, "unread-output", "16777216"});
  EXPECT_EQ(r.exit_code, 125) << r.err;
  EXPECT_NE(r.err.find("output was lost: the command wrote 16777216 bytes to stdout, kiln received " +
                       std::to_string(r.out.size())),
            std::string::npos)
      << r.err;
  EXPECT_LT(r.out.size(), 16777216u);
}

TEST(ExitReport, TheGuestOomKillerIsNamedWithTheGuestMemory) {
  auto r = run_kiln({"run", "--", GUEST_LIMITS_PROBE, "hog"});
  EXPECT_EQ(r.exit_code, 128 + 9) << r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0);
  EXPECT_NE(r.err.find("the test was killed by the guest's out-of-memory killer; MEMORY is 256 MiB"),
            std::string::npos)
      << r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0);
  // The guest kernel's own report follows, in the test's output (ctest shows nothing else).
  const size_t tail = r.err.find("--- guest console (tail) ---");
  ASSERT_NE(tail, std::string::npos) << r.err.substr(r.err.size() > 3000 ? r.err.size() - 3000 : 0);
  EXPECT_NE(r.err.find("Out of memory: Killed process", tail), std::string::npos) << r.err.substr(tail);
}
