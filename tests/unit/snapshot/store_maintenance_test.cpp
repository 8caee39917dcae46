// kiln snapshots list / rm / gc.
#include "snapshot/store.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

SnapshotKey key_with(uint32_t memory_mib, const std::string& version = "0.1.0") {
  SnapshotKey k = sample_key();
  k.memory_mib = memory_mib;
  k.baked_by_version = version;
  return k;
}

// A pid that certainly belonged to a process and now does not.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

const GcReport::Item* find_item(const std::vector<GcReport::Item>& items, const std::string& name) {
  for (auto& i : items)
    if (i.name == name) return &i;
  return nullptr;
}

GcOptions options_for(const std::string& version) {
  GcOptions o;
  o.current_version = version;
  return o;
}

}  // namespace

TEST(StoreList, ShowsEverySnapshotWithStatusAndSparseSize) {
  TmpRoot tmp;
  Store store(tmp.path());
  EXPECT_TRUE(Store(tmp / "nope").list().empty());
  Snapshot a = bake_and_publish(store, key_with(256));
  Snapshot b = bake_and_publish(store, key_with(512));
  stdfs::resize_file(b.files().state, 1);
  stdfs::create_directories(tmp / "zz-not-a-snapshot");
  stdfs::create_directories(tmp / ".tmp-whatever-1-abcdef");  // in-progress bakes are not listed
  store.mark_used(a);

  auto entries = store.list();
  ASSERT_EQ(entries.size(), 3u);
  for (size_t i = 1; i < entries.size(); ++i) EXPECT_LT(entries[i - 1].id, entries[i].id);  // sorted
  for (auto& e : entries) {
    if (e.id == a.dir.filename()) {
      EXPECT_EQ(e.status, LookupStatus::found);
      ASSERT_TRUE(e.meta);
      EXPECT_EQ(e.meta->key.memory_mib, 256u);
      // 16 MiB apparent, three 4 KiB pages touched: sparse-aware accounting stays small.
      EXPECT_GT(e.disk_bytes, 100000u);
      EXPECT_LT(e.disk_bytes, 2u << 20);
      EXPECT_GT(e.last_used.time_since_epoch().count(), 0);
    } else if (e.id == b.dir.filename()) {
      EXPECT_EQ(e.status, LookupStatus::unusable);
      EXPECT_NE(e.reason.find("state.bin is 1 bytes"), std::string::npos) << e.reason;
      ASSERT_TRUE(e.meta) << "what an unusable snapshot claims to be is still shown";
      EXPECT_EQ(e.meta->key.memory_mib, 512u);
    } else {
      EXPECT_EQ(e.id, "zz-not-a-snapshot");
      EXPECT_EQ(e.status, LookupStatus::unusable);
      EXPECT_NE(e.reason.find("metadata.json is missing"), std::string::npos) << e.reason;
      EXPECT_FALSE(e.meta);
    }
  }
}

TEST(StoreRemove, ByUniquePrefix) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot a = bake_and_publish(store, key_with(256));
  std::string id = a.dir.filename();
  auto r = store.remove(id.substr(0, 6));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 1);
  EXPECT_FALSE(stdfs::exists(a.dir));
  EXPECT_EQ(store.lookup(key_with(256)).status, LookupStatus::missing);
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{".locks"}));  // no trash, no lock file left
  EXPECT_TRUE(names_in(tmp / ".locks").empty());
}

TEST(StoreRemove, RefusesAmbiguousUnknownAndHostileIds) {
  TmpRoot tmp;
  Store store(tmp.path());
  stdfs::create_directories(tmp / "abc1");
  stdfs::create_directories(tmp / "abc2");
  stdfs::create_directories(tmp / "abc");
  auto amb = store.remove("ab");
  ASSERT_FALSE(amb.ok());
  EXPECT_NE(amb.error().message.find("'ab' matches 3 snapshots"), std::string::npos) << amb.error().message;
  EXPECT_TRUE(stdfs::exists(tmp / "abc1"));

  auto exact = store.remove("abc");  // an exact id wins over being a prefix of others
  ASSERT_TRUE(exact.ok()) << exact.error().message;
  EXPECT_FALSE(stdfs::exists(tmp / "abc"));
  EXPECT_TRUE(stdfs::exists(tmp / "abc1"));

  auto none = store.remove("ffff");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no snapshot id starts with 'ffff'"), std::string::npos);
  for (const char* bad : {"", ".", "..", ".locks", "../x", "a/b"}) {
    auto r = store.remove(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_TRUE(stdfs::exists(tmp / ".locks"));
}

TEST(StoreRemove, RefusesASnapshotBeingBaked) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot a = bake_and_publish(store, key_with(256));
  auto lock = store.lock_for_bake(key_with(256));
  ASSERT_TRUE(lock.ok());
  auto r = store.remove(a.dir.filename());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("being baked by another kiln"), std::string::npos) << r.error().message;
  EXPECT_TRUE(store.lookup(key_with(256)).found());
}

TEST(StoreGc, RemovesLeftoversUnusableOtherVersionsAndUnused) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot keep = bake_and_publish(store, key_with(256));
  store.mark_used(keep);
  Snapshot corrupt = bake_and_publish(store, key_with(512));
  write_text(corrupt.dir / "metadata.json", "not json");
  Snapshot old_version = bake_and_publish(store, key_with(1024, "0.0.9"));
  Snapshot unused = bake_and_publish(store, key_with(2048));
  store.mark_used(unused);
  set_mtime(unused.dir / "last-used", ::time(nullptr) - 40 * 24 * 3600, 0);

  std::string stale_tmp = ".tmp-" + key_with(4096).id() + "-" + std::to_string(dead_pid()) + "-Ab12Cd";
  std::string live_tmp = ".tmp-" + key_with(4096).id() + "-" + std::to_string(::getpid()) + "-Zz99Yy";
  std::string stale_trash = ".trash-" + key_with(4096).id() + "-" + std::to_string(dead_pid()) + "-Qq11Rr";
  for (auto& d : {stale_tmp, live_tmp, stale_trash}) {
    stdfs::create_directories(tmp / d);
    write_sparse(tmp / d / "memory.ram", 1 << 20);
  }
  // A lock file whose snapshot no longer exists.
  stdfs::create_directories(tmp / ".locks");
  write_text(tmp / ".locks" / "0000dead.lock", "");

  // Dry run: reports, removes nothing.
  GcOptions dry = options_for("0.1.0");
  dry.dry_run = true;
  auto preview = store.gc(dry);
  ASSERT_TRUE(preview.ok()) << preview.error().message;
  EXPECT_EQ(preview->removed.size(), 5u);
  EXPECT_TRUE(stdfs::exists(corrupt.dir));
  EXPECT_TRUE(stdfs::exists(tmp / stale_tmp));

  auto report = store.gc(options_for("0.1.0"));
  ASSERT_TRUE(report.ok()) << report.error().message;
  auto removed = [&](const stdfs::path& p) { return find_item(report->removed, p.filename().string()); };
  ASSERT_TRUE(removed(corrupt.dir));
  EXPECT_NE(removed(corrupt.dir)->why.find("unusable: metadata.json: metadata is not valid JSON"), std::string::npos)
      << removed(corrupt.dir)->why;
  ASSERT_TRUE(removed(old_version.dir));
  EXPECT_EQ(removed(old_version.dir)->why, "baked by kiln 0.0.9, this is kiln 0.1.0");
  ASSERT_TRUE(removed(unused.dir));
  EXPECT_EQ(removed(unused.dir)->why, "unused for 40 days");
  ASSERT_TRUE(removed(tmp / stale_tmp));
  EXPECT_NE(removed(tmp / stale_tmp)->why.find("unfinished bake"), std::string::npos);
  ASSERT_TRUE(removed(tmp / stale_trash));
  EXPECT_EQ(report->removed.size(), 5u);
  EXPECT_GT(report->bytes_freed, 3u * 100000u);  // three snapshots with ~100 KB of state each
  uint64_t sum = 0;
  for (auto& i : report->removed) sum += i.bytes;
  EXPECT_EQ(report->bytes_freed, sum);

  EXPECT_TRUE(store.lookup(key_with(256), kiln::snapshot::VerifyLevel::full).found());
  EXPECT_TRUE(stdfs::exists(tmp / live_tmp)) << "a bake whose process is alive must survive gc";
  for (auto* gone : {&corrupt.dir, &old_version.dir, &unused.dir}) EXPECT_FALSE(stdfs::exists(*gone));
  EXPECT_FALSE(stdfs::exists(tmp / stale_tmp));
  EXPECT_FALSE(stdfs::exists(tmp / stale_trash));
  EXPECT_FALSE(stdfs::exists(tmp / ".locks" / "0000dead.lock"));
  std::vector<std::string> expected = {".locks", keep.dir.filename().string(), live_tmp};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names_in(tmp.path()), expected);

  // Idempotent.
  auto again = store.gc(options_for("0.1.0"));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->removed.empty());
}

TEST(StoreGc, KeepsSnapshotsWhoseLockIsHeld) {
  TmpRoot tmp;
  Store store(tmp.path());
  Snapshot corrupt = bake_and_publish(store, key_with(512));
  stdfs::resize_file(corrupt.files().memory, 0);
  auto lock = store.lock_for_bake(key_with(512));  // a kiln is rebaking it right now
  ASSERT_TRUE(lock.ok());
  auto report = store.gc(options_for("0.1.0"));
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->removed.empty());
  ASSERT_TRUE(find_item(report->kept, corrupt.dir.filename()));
  EXPECT_TRUE(stdfs::exists(corrupt.dir));

  { auto release = std::move(lock).value(); }
  report = store.gc(options_for("0.1.0"));
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(find_item(report->removed, corrupt.dir.filename()));
  EXPECT_FALSE(stdfs::exists(corrupt.dir));
}

TEST(StoreGc, EmptyOrMissingStoreIsFine) {
  TmpRoot tmp;
  auto r = Store(tmp / "never-created").gc();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->removed.empty());
  EXPECT_FALSE(stdfs::exists(tmp / "never-created"));
}
