// Concurrent `kiln run`s racing for a missing snapshot bake it exactly once.
#include "snapshot/store.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

// The runner's protocol (see store.h), as one process runs it. Returns an exit code:
// 0 ok, 2..6 which step failed. Each bake appends one byte to `bakes`.
int run_like_kiln(const stdfs::path& root, const stdfs::path& bakes, const stdfs::path& waits) {
  Store store(root);  // a fresh Store per process: nothing shared but the filesystem
  SnapshotKey key = sample_key();
  auto r = store.lookup(key);
  if (!r.found()) {
    auto lock = store.lock_for_bake(key, [&] {
      int fd = ::open(waits.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      (void)!::write(fd, "w", 1);
      ::close(fd);
    });
    if (!lock) return 2;
    r = store.lookup(key);
    if (!r.found()) {
      int fd = ::open(bakes.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0644);
      (void)!::write(fd, "b", 1);
      ::close(fd);
      auto bake = store.begin_bake(key);
      if (!bake) return 3;
      fake_engine_bake(bake->files());
      // A bake takes seconds; make the race window wide.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto snap = store.publish(std::move(bake).value(), key);
      if (!snap) return 4;
      r.status = LookupStatus::found;
      r.snapshot = std::move(snap).value();
    }
  }
  if (!r.found()) return 5;
  store.mark_used(*r.snapshot);
  // What every runner does next: restore from these files. They must be complete.
  if (!store.lookup(key, VerifyLevel::full).found()) return 6;
  return 0;
}

void race(const stdfs::path& root, int processes) {
  TmpRoot scratch;
  auto bakes = scratch / "bakes";
  auto waits = scratch / "waits";
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  std::vector<pid_t> kids;
  for (int i = 0; i < processes; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // Start line: every child blocks until the parent closes the pipe, so they all
      // look up the missing snapshot at about the same moment.
      ::close(go[1]);
      char c;
      (void)!::read(go[0], &c, 1);
      ::_exit(run_like_kiln(root, bakes, waits));
    }
    kids.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);
  for (pid_t pid : kids) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child killed by signal";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child failed at step " << WEXITSTATUS(status);
  }
  EXPECT_EQ(read_text(bakes), "b") << "exactly one process must bake";
  // Everyone else either found it at once or waited on the lock (and was told so once each).
  EXPECT_LE(read_text(waits).size(), static_cast<size_t>(processes - 1));
  EXPECT_TRUE(Store(root).lookup(sample_key(), VerifyLevel::full).found());
}

}  // namespace

TEST(StoreConcurrency, RacingProcessesBakeOnce) {
  TmpRoot tmp;
  race(tmp / "snapshots", 8);
  // No temp or trash directories left behind.
  EXPECT_EQ(names_in(tmp / "snapshots"), (std::vector<std::string>{".locks", sample_key().id()}));
}

TEST(StoreConcurrency, RacingProcessesRebakeACorruptSnapshotOnce) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot snap = bake_and_publish(store, sample_key());
  write_text(snap.dir / "metadata.json", "{ garbage");
  race(tmp.path(), 6);
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{".locks", sample_key().id()}));
}
