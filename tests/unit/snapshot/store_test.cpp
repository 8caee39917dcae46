#include "snapshot/store.h"

#include "snapshot/digest_stamp.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

void expect_unusable(const LookupResult& r, const std::string& needle) {
  EXPECT_EQ(r.status, LookupStatus::unusable);
  EXPECT_FALSE(r.snapshot.has_value());
  EXPECT_NE(r.reason.find(needle), std::string::npos) << "reason: " << r.reason << "\nexpected: " << needle;
  EXPECT_EQ(r.reason.find('\n'), std::string::npos) << r.reason;
}

void edit_metadata(const stdfs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_text(dir / "metadata.json"));
  edit(j);
  write_text(dir / "metadata.json", j.dump());
}

// Same size, different bytes at `offset`.
void flip_byte(const stdfs::path& path, off_t offset) {
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, offset), 1);
  c = static_cast<char>(c ^ 0x5a);
  ASSERT_EQ(::pwrite(fd, &c, 1, offset), 1);
  ::close(fd);
}

}  // namespace

TEST(Store, MissingWhenNothingBaked) {
  TmpRoot tmp;
  Store store(tmp / "does-not-exist-yet");
  auto r = store.lookup(sample_key());
  EXPECT_EQ(r.status, LookupStatus::missing);
  EXPECT_FALSE(r.found());
}

TEST(Store, PublishThenLookupFinds) {
  TmpRoot tmp;
  Store store(tmp / "snapshots");
  SnapshotKey key = sample_key();
  Snapshot snap = bake_and_publish(store, key);
  EXPECT_EQ(snap.dir, store.root() / key.id());
  EXPECT_EQ(snap.files().state, snap.dir / "state.bin");
  EXPECT_EQ(snap.files().memory, snap.dir / "memory.ram");

  for (auto level : {VerifyLevel::quick, VerifyLevel::full}) {
    auto r = store.lookup(key, level);
    ASSERT_TRUE(r.found()) << r.reason;
    EXPECT_EQ(r.snapshot->meta, snap.meta);
    EXPECT_EQ(r.snapshot->meta.key, key);
    EXPECT_EQ(r.snapshot->meta.memory.size, kMemBytes);
    EXPECT_EQ(r.snapshot->meta.state.size, 100000u);
    EXPECT_FALSE(r.snapshot->meta.parent.has_value());
  }
  // Only the snapshot and the lock directory remain: no temp or metadata.json.tmp files.
  auto names = names_in(store.root());
  EXPECT_EQ(names, (std::vector<std::string>{key.id()}));
  EXPECT_EQ(names_in(snap.dir),
            (std::vector<std::string>{"memory.ram", "memory.ram.stamp", "metadata.json", "state.bin"}));
  // Publishing digested memory.ram: the stamp spares the first layer restore this boot a re-read.
  EXPECT_EQ(read_digest_stamp(snap.dir / "memory.ram.stamp").digest, snap.meta.memory.digest);

  // A different key is still missing.
  SnapshotKey other = key;
  other.memory_mib = 512;
  EXPECT_EQ(store.lookup(other).status, LookupStatus::missing);
}

TEST(Store, TruncatedFilesAreUnusable) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot snap = bake_and_publish(store, sample_key());
  stdfs::resize_file(snap.files().memory, kMemBytes / 2);
  expect_unusable(store.lookup(sample_key()), "memory.ram is 8388608 bytes but metadata.json says 16777216");

  bake_and_publish(store, sample_key());
  stdfs::resize_file(snap.files().state, 10);
  expect_unusable(store.lookup(sample_key()), "state.bin is 10 bytes");

  bake_and_publish(store, sample_key());
  stdfs::remove(snap.files().memory);
  expect_unusable(store.lookup(sample_key()), "memory.ram is missing");
}

TEST(Store, CorruptContentIsUnusable) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot snap = bake_and_publish(store, sample_key());
  flip_byte(snap.files().state, 500);
  expect_unusable(store.lookup(sample_key(), VerifyLevel::quick), "state.bin does not match its digest");

  snap = bake_and_publish(store, sample_key());
  flip_byte(snap.files().memory, kMemBytes / 2 + 7);
  // The quick check does not read RAM; the full one does.
  EXPECT_TRUE(store.lookup(sample_key(), VerifyLevel::quick).found());
  expect_unusable(store.lookup(sample_key(), VerifyLevel::full), "memory.ram does not match its digest");
}

TEST(Store, EditedOrGarbageMetadataIsUnusable) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot snap = bake_and_publish(store, sample_key());

  edit_metadata(snap.dir, [](nlohmann::json& j) { j["memory_mib"] = 512; });
  expect_unusable(store.lookup(sample_key()), "describes a different snapshot (differs in: memory_mib)");

  edit_metadata(snap.dir, [](nlohmann::json& j) {
    j["memory_mib"] = 256;
    j["format_version"] = kFormatVersion + 1;
  });
  expect_unusable(store.lookup(sample_key()),
                  fmt::format("snapshot format {} is newer than this kiln understands", kFormatVersion + 1));

  edit_metadata(snap.dir, [](nlohmann::json& j) {
    j["format_version"] = kFormatVersion;
    j["files"]["memory"]["size"] = "big";
  });
  expect_unusable(store.lookup(sample_key()), "files.memory: field 'size' must be an integer");

  edit_metadata(snap.dir, [](nlohmann::json& j) {
    j["files"]["memory"]["size"] = kMemBytes;
    j["files"]["state"]["name"] = "other.bin";
  });
  expect_unusable(store.lookup(sample_key()), "expected 'state.bin' and 'memory.ram'");

  edit_metadata(snap.dir, [](nlohmann::json& j) {
    j["files"]["state"]["name"] = "state.bin";
    j["parent"] = "abc";
  });
  expect_unusable(store.lookup(sample_key()), "'parent' and 'layer' must be both set");

  write_text(snap.dir / "metadata.json", "{\"format_version\": 1, \"ima");
  expect_unusable(store.lookup(sample_key()), "metadata.json: metadata is not valid JSON");

  write_text(snap.dir / "metadata.json", std::string(100 * 1024, '{'));
  expect_unusable(store.lookup(sample_key()), "larger than the 65536 bytes");

  stdfs::remove(snap.dir / "metadata.json");
  expect_unusable(store.lookup(sample_key()), "metadata.json is missing");

  ASSERT_EQ(::mkfifo((snap.dir / "metadata.json").c_str(), 0644), 0);  // would hang a naive reader
  expect_unusable(store.lookup(sample_key()), "metadata.json is not a regular file");
}

TEST(Store, NonDirectoryAtSnapshotPathIsUnusable) {
  TmpRoot tmp;
  Store store(tmp.path());
  write_text(tmp / sample_key().id(), "junk");
  expect_unusable(store.lookup(sample_key()), "not a directory");
  // ...and publishing replaces it.
  bake_and_publish(store, sample_key());
  EXPECT_TRUE(store.lookup(sample_key()).found());
}

TEST(Store, PublishReplacesACorruptSnapshot) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot first = bake_and_publish(store, sample_key());
  stdfs::resize_file(first.files().memory, 4096);
  write_text(first.dir / "stray-file", "left by the corrupt one");
  ASSERT_FALSE(store.lookup(sample_key()).found());

  Snapshot second = bake_and_publish(store, sample_key());
  auto r = store.lookup(sample_key(), VerifyLevel::full);
  ASSERT_TRUE(r.found()) << r.reason;
  EXPECT_FALSE(stdfs::exists(second.dir / "stray-file"));
  // The old directory is gone, not left as trash or temp.
  EXPECT_EQ(names_in(store.root()), (std::vector<std::string>{sample_key().id()}));
}

TEST(Store, UnpublishedBakeIsRemoved) {
  TmpRoot tmp;
  Store store(tmp.path());
  stdfs::path dir;
  {
    auto bake = store.begin_bake(sample_key());
    ASSERT_TRUE(bake.ok()) << bake.error().message;
    dir = bake->dir();
    EXPECT_EQ(dir.parent_path(), store.root());  // same filesystem: publish is a rename
    EXPECT_EQ(dir.filename().string().rfind(".tmp-" + sample_key().id() + "-" + std::to_string(::getpid()) + "-", 0),
              0u)
        << dir;
    fake_engine_bake(bake->files());
    EXPECT_EQ(store.lookup(sample_key()).status, LookupStatus::missing);  // invisible until published
  }
  EXPECT_FALSE(stdfs::exists(dir));
}

TEST(Store, FailedPublishLeavesNothing) {
  TmpRoot tmp;
  Store store(tmp.path());
  auto bake = store.begin_bake(sample_key());
  ASSERT_TRUE(bake.ok());
  write_text(bake->files().state, "state only");  // the engine failed before writing RAM
  auto dir = bake->dir();
  auto r = store.publish(std::move(bake).value(), sample_key());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("memory.ram"), std::string::npos) << r.error().message;
  EXPECT_FALSE(stdfs::exists(dir));
  EXPECT_EQ(store.lookup(sample_key()).status, LookupStatus::missing);

  auto bake2 = store.begin_bake(sample_key());
  ASSERT_TRUE(bake2.ok());
  fake_engine_bake(bake2->files());
  SnapshotKey other = sample_key();
  other.vcpus = 4;
  auto r2 = store.publish(std::move(bake2).value(), other);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("internal error"), std::string::npos) << r2.error().message;
}

TEST(Store, PublishRefusesAKeyThatCannotBeStoredFaithfully) {
  TmpRoot tmp;
  Store store(tmp.path());
  SnapshotKey key = sample_key();
  key.cmdline = "console=\xff";
  auto bake = store.begin_bake(key);
  ASSERT_TRUE(bake.ok());
  fake_engine_bake(bake->files());
  auto r = store.publish(std::move(bake).value(), key);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("not valid UTF-8"), std::string::npos) << r.error().message;
}

TEST(Store, MarkUsedTouchesAStamp) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot snap = bake_and_publish(store, sample_key());
  store.mark_used(snap);
  auto stamp = snap.dir / "last-used";
  ASSERT_TRUE(stdfs::exists(stamp));
  set_mtime(stamp, 1000, 0);
  store.mark_used(snap);
  struct stat st {};
  ASSERT_EQ(::stat(stamp.c_str(), &st), 0);
  EXPECT_GT(st.st_mtim.tv_sec, 1000);
  EXPECT_TRUE(store.lookup(sample_key(), VerifyLevel::full).found());  // the stamp is not part of the snapshot
}

TEST(Store, SecondLockerWaitsAndIsToldOnce) {
  TmpRoot tmp;
  Store store(tmp.path());
  auto first = store.lock_for_bake(sample_key());
  ASSERT_TRUE(first.ok()) << first.error().message;

  std::atomic<int> waits{0};
  std::atomic<bool> acquired{false};
  std::thread second([&] {
    auto lock = store.lock_for_bake(sample_key(), [&] { ++waits; });
    EXPECT_TRUE(lock.ok());
    acquired = true;
  });
  for (int i = 0; i < 2000 && waits == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(waits, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(acquired) << "the second locker must block while the first holds the lock";
  { auto release = std::move(first).value(); }
  second.join();
  EXPECT_TRUE(acquired);
  EXPECT_EQ(waits, 1);

  // Uncontended: on_wait is not called.
  int calls = 0;
  auto again = store.lock_for_bake(sample_key(), [&] { ++calls; });
  EXPECT_TRUE(again.ok());
  EXPECT_EQ(calls, 0);
}

namespace {
void ignore_signal(int) {}
}  // namespace

TEST(Store, SignalEndsTheWaitForTheLock) {
  // kiln's SIGINT/SIGTERM handlers do not restart syscalls: ^C or ctest's timeout kill
  // must end the wait with an `interrupted` error, not leave kiln blocked.
  TmpRoot tmp;
  Store store(tmp.path());
  auto first = store.lock_for_bake(sample_key());
  ASSERT_TRUE(first.ok());
  struct sigaction sa {}, old {};
  sa.sa_handler = ignore_signal;
  sigemptyset(&sa.sa_mask);
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);

  std::atomic<bool> waiting{false}, finished{false};
  std::optional<kiln::Error> error;  // written by the thread before `finished`, read after join
  std::thread second([&] {
    auto lock = store.lock_for_bake(sample_key(), [&] { waiting = true; });
    if (!lock) error = lock.error();
    finished = true;
  });
  while (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Keep signalling until the thread is out of flock (the first signal may land just before it).
  for (int i = 0; i < 2000 && !finished; ++i) {
    ::pthread_kill(second.native_handle(), SIGUSR1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  second.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->kind, kiln::ErrorKind::interrupted);
  EXPECT_NE(error->message.find("interrupted while waiting for the snapshot lock"), std::string::npos)
      << error->message;
}
