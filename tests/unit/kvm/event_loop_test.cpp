#include "vmm/kvm/event_loop.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace kiln::vmm::kvm {
namespace {

bool eventually(const std::function<bool()>& f) {
  for (int i = 0; i < 500; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

TEST(EventLoop, CallsASourceWhenItsFdIsReadyAndItWantsIt) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  std::atomic<bool> want{false};
  std::atomic<int> got{0};
  (*loop)->add(EventLoop::Source{a.get(), [&] { return static_cast<short>(want ? POLLIN : 0); },
                                 [&](short) {
                                   char buf[16];
                                   while (::read(a.get(), buf, sizeof buf) > 0) ++got;
                                 }});
  (*loop)->start();
  ASSERT_EQ(::write(b.get(), "x", 1), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(got, 0);  // not interested yet: the byte waits
  want = true;
  (*loop)->wake();
  EXPECT_TRUE(eventually([&] { return got == 1; }));
  (*loop)->stop();
}

TEST(EventLoop, AHungUpPeerWithNoInterestDoesNotSpin) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]);
  ::close(sv[1]);
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  std::atomic<int> polls{0};
  (*loop)->add(EventLoop::Source{a.get(), [&] {
                                   ++polls;
                                   return static_cast<short>(0);
                                 },
                                 [](short) {}});
  (*loop)->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*loop)->stop();
  EXPECT_LE(polls, 3);
}

TEST(EventLoop, StopJoinsAndStartRunsAgain) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  (*loop)->start();
  (*loop)->stop();
  (*loop)->stop();
  (*loop)->start();
  (*loop)->wake();
  (*loop)->stop();
}

}  // namespace
}  // namespace kiln::vmm::kvm
