// Pass 1 alone: which member of which layer survives, from tarballs held in memory.
#include "image/rootfs/layer_index.h"

#include "rootfs_test_util.h"

#include <gtest/gtest.h>

namespace kiln::rootfs {
namespace {

namespace stdfs = std::filesystem;
using namespace testing;  // NOLINT: the test helpers

class LayerIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-layer-index-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_.emplace(std::move(d).value());
  }
  Result<void> add(const std::vector<Member>& members, Compression c = Compression::none) {
    auto blob = write_layer(dir_->path(), "l" + std::to_string(n_++), members, c);
    auto reader = LayerReader::open_file(blob.path, blob.digest);
    if (!reader) return reader.take_error();
    return index_.add_layer(*reader);
  }
  // path -> (layer, ordinal) of the member the plan writes for it ("+link" for extra names).
  std::map<std::string, std::pair<uint32_t, uint64_t>> survivors() {
    std::map<std::string, std::pair<uint32_t, uint64_t>> out;
    FlatPlan plan = index_.plan();
    for (uint32_t l = 0; l < plan.layers.size(); ++l)
      for (const auto& em : plan.layers[l]) {
        out[em.path] = {l, em.ordinal};
        for (const auto& link : em.links) out[link + "+link"] = {l, em.ordinal};
      }
    return out;
  }
  std::optional<fs::TempDir> dir_;
  LayerIndex index_;
  int n_ = 0;
};

using Where = std::pair<uint32_t, uint64_t>;

TEST_F(LayerIndexTest, TopLayerWinsAndEmissionsAreInLayerOrder) {
  ASSERT_TRUE(add({dir("etc"), file("etc/a", "1"), file("etc/b", "2")}).ok());
  ASSERT_TRUE(add({file("etc/b", "22"), dir("etc", 5)}).ok());
  auto s = survivors();
  EXPECT_EQ(s["etc"], Where(1, 1));
  EXPECT_EQ(s["etc/a"], Where(0, 1));
  EXPECT_EQ(s["etc/b"], Where(1, 0));
  FlatPlan plan = index_.plan();
  EXPECT_EQ(plan.file_bytes, 1u + 2u);
  for (const auto& layer : plan.layers)
    for (size_t i = 1; i < layer.size(); ++i) EXPECT_LT(layer[i - 1].ordinal, layer[i].ordinal);
}

TEST_F(LayerIndexTest, OpaqueRootHidesEverythingBelow) {
  ASSERT_TRUE(add({dir("./"), file("a", "1"), dir("d"), file("d/x", "2")}).ok());
  ASSERT_TRUE(add({file(".wh..wh..opq", ""), file("b", "3")}).ok());
  auto s = survivors();
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s[""], Where(0, 0));  // the root itself stays
  EXPECT_EQ(s["b"], Where(1, 1));
}

TEST_F(LayerIndexTest, WhiteoutDoesNotHideItsOwnLayer) {
  ASSERT_TRUE(add({file("x", "low")}).ok());
  ASSERT_TRUE(add({file("x", "high"), file(".wh.x", "")}).ok());
  EXPECT_EQ(survivors()["x"], Where(1, 0));
}

TEST_F(LayerIndexTest, SiblingWithCommonPrefixSurvivesSubtreeRemoval) {
  ASSERT_TRUE(add({dir("a"), file("a/x", "1"), dir("a.b"), file("a.b/y", "2"), dir("a0"), file("ab", "3")}).ok());
  ASSERT_TRUE(add({file(".wh.a", "")}).ok());
  auto s = survivors();
  EXPECT_FALSE(s.count("a"));
  EXPECT_FALSE(s.count("a/x"));
  EXPECT_TRUE(s.count("a.b/y"));
  EXPECT_TRUE(s.count("a0"));
  EXPECT_TRUE(s.count("ab"));
}

TEST_F(LayerIndexTest, HardLinkGroupsWriteTheDataOnceUnderTheFirstSurvivingName) {
  ASSERT_TRUE(add({file("z", "data"), hardlink("y", "z"), hardlink("x", "y")}).ok());
  auto s = survivors();
  EXPECT_EQ(s["x"], Where(0, 0));  // smallest name carries the data of member #0
  EXPECT_EQ(s["y+link"], Where(0, 0));
  EXPECT_EQ(s["z+link"], Where(0, 0));
  FlatPlan plan = index_.plan();
  EXPECT_EQ(plan.files, 1u);
  EXPECT_EQ(plan.hardlinks, 2u);
  EXPECT_EQ(plan.file_bytes, 4u);
}

TEST_F(LayerIndexTest, ReplacedTargetKeepsTheLinkOnTheOldData) {
  ASSERT_TRUE(add({file("t", "old"), hardlink("l", "t")}).ok());
  ASSERT_TRUE(add({file("t", "new")}).ok());
  auto s = survivors();
  EXPECT_EQ(s["l"], Where(0, 0));
  EXPECT_EQ(s["t"], Where(1, 0));
}

TEST_F(LayerIndexTest, RefusesTheRootAsAFileAndALinkToADirectory) {
  EXPECT_FALSE(add({symlink("./", "elsewhere")}).ok());
  EXPECT_FALSE(add({dir("d"), hardlink("l", "d")}).ok());
  EXPECT_FALSE(add({hardlink("l", "/")}).ok());
}

TEST_F(LayerIndexTest, ReadsGzipZstdAndEmptyLayers) {
  ASSERT_TRUE(add({file("g", "1")}, Compression::gzip).ok());
  ASSERT_TRUE(add({file("z", "2")}, Compression::zstd).ok());
  ASSERT_TRUE(add({}, Compression::none).ok());
  auto s = survivors();
  EXPECT_EQ(s["g"], Where(0, 0));
  EXPECT_EQ(s["z"], Where(1, 0));
}

TEST(LayerReader, GarbageIsAnErrorNamingTheLayer) {
  std::string junk(2048, '\x7f');
  auto reader = LayerReader::open_memory(junk, "sha256:junk");
  Result<void> added = reader ? LayerIndex().add_layer(*reader) : Result<void>(reader.take_error());
  ASSERT_FALSE(added.ok());
  EXPECT_NE(added.error().message.find("sha256:junk"), std::string::npos) << added.error().message;
}

}  // namespace
}  // namespace kiln::rootfs
