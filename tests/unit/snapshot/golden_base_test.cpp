// The golden-base rule: same image, memory_mib, baked_by_version and memory-file size;
// never the fresh snapshot itself; newest wins at sub-second resolution.
#include "snapshot/golden_base.h"

#include "snapshot_test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

using kiln::snapshot::find_golden_base;
using namespace kiln::snapshot::testing;

namespace {

constexpr const char* kMem = "memory.ram";

stdfs::path make_snap(const TmpRoot& root, const std::string& name, const std::string& mem_file, uint64_t size,
                      const std::string& image, uint32_t mib, const std::string& version) {
  auto d = root / name;
  stdfs::create_directories(d);
  write_text(d / mem_file, std::string(size, '\0'));
  nlohmann::json meta = {{"image", image}, {"memory_mib", mib}, {"baked_by_version", version}};
  write_text(d / "metadata.json", meta.dump());
  return d;
}

std::optional<stdfs::path> find(const TmpRoot& root, const stdfs::path& fresh, const std::string& mem_file,
                                const std::string& image, uint32_t mib, const std::string& version) {
  return find_golden_base(root.path(), fresh, mem_file, image, mib, version);
}

}  // namespace

TEST(GoldenBase, PicksOnlyAFullyMatchingSibling) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", kMem, 1000, "img:1", 512, "v1");
  make_snap(root, "wrong_size", kMem, 999, "img:1", 512, "v1");
  make_snap(root, "wrong_image", kMem, 1000, "img:2", 512, "v1");
  make_snap(root, "wrong_mem", kMem, 1000, "img:1", 256, "v1");
  make_snap(root, "wrong_ver", kMem, 1000, "img:1", 512, "v2");
  // Make every wrong one newer than the good one, so only the rule can exclude them.
  for (const char* n : {"wrong_size", "wrong_image", "wrong_mem", "wrong_ver"}) set_mtime(root / n / kMem, 2000, 0);
  auto good = make_snap(root, "good", kMem, 1000, "img:1", 512, "v1");
  set_mtime(good / kMem, 1000, 0);
  EXPECT_EQ(find(root, fresh, kMem, "img:1", 512, "v1"), good / kMem);
}

TEST(GoldenBase, EachMismatchAloneDisqualifies) {
  struct Case {
    const char* what;
    uint64_t size;
    const char* image;
    uint32_t mib;
    const char* version;
  };
  for (const Case& c : {Case{"size", 999, "i", 128, "v"}, Case{"image", 500, "j", 128, "v"},
                        Case{"memory_mib", 500, "i", 129, "v"}, Case{"version", 500, "i", 128, "w"}}) {
    TmpRoot root;
    auto fresh = make_snap(root, "fresh", kMem, 500, "i", 128, "v");
    make_snap(root, "other", kMem, c.size, c.image, c.mib, c.version);
    EXPECT_EQ(find(root, fresh, kMem, "i", 128, "v"), std::nullopt) << "mismatched " << c.what << " was chosen";
  }
}

TEST(GoldenBase, MemoryFileNameIsRespected) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", "vm.snap", 500, "i", 128, "v");
  make_snap(root, "other_layout", "restore.snap", 500, "i", 128, "v");
  EXPECT_EQ(find(root, fresh, "vm.snap", "i", 128, "v"), std::nullopt);
  auto right = make_snap(root, "same_layout", "vm.snap", 500, "i", 128, "v");
  EXPECT_EQ(find(root, fresh, "vm.snap", "i", 128, "v"), right / "vm.snap");
}

TEST(GoldenBase, ExcludesSelfAndNoneWithoutSibling) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", kMem, 500, "i", 128, "v");
  EXPECT_EQ(find(root, fresh, kMem, "i", 128, "v"), std::nullopt);
  // However the fresh dir is spelled, it is still itself.
  EXPECT_EQ(find(root, root.path() / "." / "fresh" / ".." / "fresh", kMem, "i", 128, "v"), std::nullopt);
  stdfs::create_directory_symlink(fresh, root / "link-to-fresh");
  EXPECT_EQ(find(root, root / "link-to-fresh", kMem, "i", 128, "v"), std::nullopt);
}

TEST(GoldenBase, NoneWhenFreshMemoryFileIsMissing) {
  TmpRoot root;
  auto fresh = root / "fresh";
  stdfs::create_directories(fresh);
  make_snap(root, "other", kMem, 100, "i", 64, "v");
  EXPECT_EQ(find(root, fresh, kMem, "i", 64, "v"), std::nullopt);
  EXPECT_EQ(find(root, root / "no-such-dir", kMem, "i", 64, "v"), std::nullopt);
  EXPECT_EQ(find_golden_base(root / "no-such-store", fresh, kMem, "i", 64, "v"), std::nullopt);
}

TEST(GoldenBase, NewestWinsAtSubSecondResolution) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", kMem, 800, "i", 256, "v");
  auto older = make_snap(root, "a_older", kMem, 800, "i", 256, "v");
  auto newer = make_snap(root, "b_newer", kMem, 800, "i", 256, "v");
  auto oldest = make_snap(root, "c_oldest", kMem, 800, "i", 256, "v");
  // Same second, 1 ns apart: a seconds-truncated comparison could not order these.
  set_mtime(older / kMem, 1'700'000'000, 500'000'000);
  set_mtime(newer / kMem, 1'700'000'000, 500'000'001);
  set_mtime(oldest / kMem, 1'699'999'999, 999'999'999);
  EXPECT_EQ(find(root, fresh, kMem, "i", 256, "v"), newer / kMem);
  // And the other way round, so directory order cannot be what decides.
  set_mtime(older / kMem, 1'700'000'000, 500'000'002);
  EXPECT_EQ(find(root, fresh, kMem, "i", 256, "v"), older / kMem);
}

TEST(GoldenBase, TiesAreBrokenDeterministically) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", kMem, 800, "i", 256, "v");
  for (const char* n : {"m", "b", "x"}) {
    make_snap(root, n, kMem, 800, "i", 256, "v");
    set_mtime(root / n / kMem, 1'700'000'000, 7);
  }
  EXPECT_EQ(find(root, fresh, kMem, "i", 256, "v"), root / "b" / kMem);
}

TEST(GoldenBase, GarbageAndHostileCandidatesAreSkipped) {
  TmpRoot root;
  auto fresh = make_snap(root, "fresh", kMem, 800, "i", 256, "v");
  auto good = make_snap(root, "good", kMem, 800, "i", 256, "v");
  set_mtime(good / kMem, 1000, 0);
  auto bad = [&](const std::string& name, const std::string& metadata) {
    auto d = make_snap(root, name, kMem, 800, "i", 256, "v");
    write_text(d / "metadata.json", metadata);
    set_mtime(d / kMem, 2000, 0);  // newer than good: only skipping can exclude it
  };
  bad("garbage", "\x01\x02 not json {{{");
  bad("truncated", R"({"image": "i", "memory_mib": 25)");
  bad("array", "[1,2,3]");
  bad("wrong_types", R"({"image": 1, "memory_mib": "256", "baked_by_version": ["v"]})");
  bad("float_mib", R"({"image": "i", "memory_mib": 256.0, "baked_by_version": "v"})");
  bad("negative_mib", R"({"image": "i", "memory_mib": -256, "baked_by_version": "v"})");
  bad("missing_version", R"({"image": "i", "memory_mib": 256})");
  bad("oversized", R"({"image": "i", "memory_mib": 256, "baked_by_version": "v", "pad": ")" +
                       std::string(100 * 1024, 'x') + "\"}");
  bad("deep", std::string(60000, '['));
  auto no_meta = make_snap(root, "no_metadata", kMem, 800, "i", 256, "v");
  stdfs::remove(no_meta / "metadata.json");
  auto fifo_meta = make_snap(root, "fifo_metadata", kMem, 800, "i", 256, "v");
  stdfs::remove(fifo_meta / "metadata.json");
  ASSERT_EQ(::mkfifo((fifo_meta / "metadata.json").c_str(), 0644), 0);  // a naive read would hang
  auto dir_mem = make_snap(root, "dir_memory", kMem, 800, "i", 256, "v");
  stdfs::remove(dir_mem / kMem);
  stdfs::create_directories(dir_mem / kMem);
  auto in_progress = make_snap(root, ".tmp-abc-1-XXXXXX", kMem, 800, "i", 256, "v");  // not finished
  set_mtime(in_progress / kMem, 3000, 0);
  write_text(root / "a-plain-file", "not a directory");

  EXPECT_EQ(find(root, fresh, kMem, "i", 256, "v"), good / kMem);
}
