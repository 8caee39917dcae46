#include "snapshot/lock.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

using kiln::snapshot::BakeLock;
using namespace kiln::snapshot::testing;

TEST(BakeLock, TryAcquireSeesAHeldLock) {
  TmpRoot tmp;
  auto path = tmp / "k.lock";
  auto a = BakeLock::try_acquire(path);
  ASSERT_TRUE(a.ok() && a->has_value());
  auto b = BakeLock::try_acquire(path);
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->has_value()) << "a second open file description must not get the lock";
  a.value().reset();
  auto c = BakeLock::try_acquire(path);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->has_value());
}

TEST(BakeLock, UnlinkedLockCannotHaveTwoOwners) {
  // gc unlinks a lock file while holding it. A waiter that opened the old file must not
  // end up holding the orphaned inode while a newcomer locks a fresh file at the path.
  TmpRoot tmp;
  auto path = tmp / "k.lock";
  auto holder = BakeLock::acquire(path, {});
  ASSERT_TRUE(holder.ok());

  std::atomic<bool> waiting{false}, acquired{false}, release{false};
  std::thread waiter([&] {
    auto lock = BakeLock::acquire(path, [&] { waiting = true; });
    EXPECT_TRUE(lock.ok());  // not ASSERT: the main thread waits for `acquired`
    acquired = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  holder->unlink_file();
  { auto drop = std::move(holder).value(); }
  while (!acquired) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  EXPECT_TRUE(std::filesystem::exists(path)) << "the waiter must have re-created and locked the file at the path";
  auto newcomer = BakeLock::try_acquire(path);
  ASSERT_TRUE(newcomer.ok());
  EXPECT_FALSE(newcomer->has_value()) << "two owners of one lock";
  release = true;
  waiter.join();
}

TEST(BakeLock, UnopenableLockFileIsAClearError) {
  TmpRoot tmp;
  auto r = BakeLock::acquire(tmp / "no-such-dir" / "k.lock", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot open snapshot lock"), std::string::npos) << r.error().message;
}
