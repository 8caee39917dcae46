// From the agent's exit report to what kiln says and exits with.
#include "runner/exit_report.h"

#include <gtest/gtest.h>

using namespace kiln;
using namespace kiln::runner;

namespace {

proto::Exit exited(int code, uint64_t out, uint64_t err) {
  proto::Exit e;
  e.code = code;
  e.stdout_bytes = out;
  e.stderr_bytes = err;
  return e;
}

}  // namespace

TEST(ExitReport, AllOutputReceivedGivesTheCommandsCode) {
  auto o = outcome_of_exit(exited(3, 100, 7), {100, 7}, 256);
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->exit_code, 3);
  EXPECT_EQ(o->summary, "exited with code 3");
  EXPECT_TRUE(o->notice.empty());
}

TEST(ExitReport, MissingStdoutIsAnErrorSayingHowMuch) {
  auto o = outcome_of_exit(exited(0, 16777216, 0), {9175040, 0}, 256);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.error().kind, ErrorKind::general);  // a VM-level failure: exit code 125
  EXPECT_EQ(o.error().message.rfind("output was lost: the command wrote 16777216 bytes to stdout, kiln received 9175040",
                                    0),
            0u)
      << o.error().message;
}

TEST(ExitReport, MissingOnBothStreamsNamesBoth) {
  auto o = outcome_of_exit(exited(0, 10, 20), {9, 19}, 256);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.error().message.find("wrote 10 bytes to stdout, kiln received 9; the command wrote 20 bytes to stderr, "
                                   "kiln received 19"),
            std::string::npos)
      << o.error().message;
}

TEST(ExitReport, MoreReceivedThanWrittenIsAlsoAMismatch) {
  // A guest claiming less than it sent is as wrong as one that lost bytes.
  EXPECT_FALSE(outcome_of_exit(exited(0, 5, 0), {6, 0}, 256).ok());
}

TEST(ExitReport, OomKillOfTheCommandIsNamedWithTheMemory) {
  proto::Exit e = exited(9, 0, 0);
  e.signaled = true;
  e.oom_kills = 1;
  auto o = outcome_of_exit(e, {}, 256);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->exit_code, 137);  // still 128+9 for ctest
  EXPECT_EQ(o->notice.rfind("the test was killed by the guest's out-of-memory killer; MEMORY is 256 MiB", 0), 0u)
      << o->notice;
}

TEST(ExitReport, SigkillWithoutOomKillsIsAPlainSignal) {
  proto::Exit e = exited(9, 0, 0);
  e.signaled = true;
  auto o = outcome_of_exit(e, {}, 256);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->exit_code, 137);
  EXPECT_EQ(o->summary, "killed by signal 9 (Killed)");
  EXPECT_TRUE(o->notice.empty());
}

TEST(ExitReport, OomKillsOfOtherProcessesAreMentioned) {
  proto::Exit e = exited(1, 0, 0);
  e.oom_kills = 2;
  auto o = outcome_of_exit(e, {}, 512);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->exit_code, 1);
  EXPECT_EQ(o->notice.rfind("the guest's out-of-memory killer ended 2 processes while the test ran; MEMORY is 512 MiB",
                            0),
            0u)
      << o->notice;
}
