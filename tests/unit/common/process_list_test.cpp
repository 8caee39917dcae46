#include "common/process_list.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>

namespace kiln::proc {
namespace {

std::optional<ProcessInfo> child(pid_t pid) {
  auto all = children_of(::getpid());
  auto it = std::find_if(all.begin(), all.end(), [&](const ProcessInfo& p) { return p.pid == pid; });
  if (it == all.end()) return std::nullopt;
  return *it;
}

TEST(ProcessList, SeesAChildWithAHostileNameAliveThenAsAZombie) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // a failed assertion must not leave it behind
    // Spaces and parentheses in the name: the parser must split on the last ')'.
    ::prctl(PR_SET_NAME, "a) (b c", 0, 0, 0);
    if (::write(ready[1], "r", 1) != 1) ::_exit(1);
    for (;;) ::pause();
  }
  struct Reap {
    pid_t pid;
    bool reaped = false;
    ~Reap() {
      if (reaped) return;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } guard{pid};
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);

  auto alive = child(pid);
  ASSERT_TRUE(alive) << "the child is not listed";
  EXPECT_EQ(alive->comm, "a) (b c");
  EXPECT_NE(alive->state, 'Z');

  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT), 0);  // exited, not reaped
  auto zombie = child(pid);
  ASSERT_TRUE(zombie) << "an unreaped child is still a child";
  EXPECT_EQ(zombie->state, 'Z');

  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  guard.reaped = true;
  EXPECT_FALSE(child(pid)) << "a reaped child is gone";
}

TEST(ProcessList, ThisProcessIsItsParentsChild) {
  bool self_listed = false;
  for (const auto& p : children_of(::getppid())) self_listed |= p.pid == ::getpid();
  EXPECT_TRUE(self_listed) << "this test is its parent's child";
  EXPECT_TRUE(children_of(-1).empty());
}

}  // namespace
}  // namespace kiln::proc
