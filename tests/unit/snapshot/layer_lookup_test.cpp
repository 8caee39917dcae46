// A layer whose base vanished, changed, was rebaked by another kiln, or whose own files
// are corrupt is never restored: lookup_layer says `unusable` and why.
#include "layer_test_util.h"
#include "common/digest.h"
#include "common/digest_memo.h"
#include "snapshot/layout.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

Image golden_image() {
  Image img;
  for (uint64_t p = 0; p < 32; ++p) img.fill_page(p, 'g');
  return img;
}

struct Fixture {
  TmpRoot tmp;
  Store store{tmp.path()};
  Image base = golden_image();
  Snapshot golden = publish_golden(store, sample_key(), base);
  Image img1 = [this] {
    Image i = base;
    i.fill_page(40, 'x');
    i.zero_page(3);
    return i;
  }();
  LayerKey key1 = layer_key(golden, "one");
  Snapshot l1 = publish_layer(store, golden, key1, img1);
  LayerKey key2 = layer_key(l1, "two", "fixture");
  Snapshot l2 = [this] {
    Image i = img1;
    i.fill_page(41, 'y');
    return publish_layer(store, l1, key2, i);
  }();
};

void expect_unusable(const LookupResult& r, const std::string& needle) {
  ASSERT_EQ(r.status, LookupStatus::unusable) << "expected unusable: " << needle;
  EXPECT_NE(r.reason.find(needle), std::string::npos) << "reason: " << r.reason << "\nexpected: " << needle;
  EXPECT_EQ(r.reason.find('\n'), std::string::npos) << r.reason;
}

void edit_metadata(const stdfs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_text(dir / "metadata.json"));
  edit(j);
  write_text(dir / "metadata.json", j.dump());
}

}  // namespace

TEST(LayerLookup, BaseVanished) {
  Fixture f;
  ASSERT_TRUE(f.store.lookup_layer(f.key2).found());
  ASSERT_TRUE(f.store.remove(f.golden.id()).ok());
  expect_unusable(f.store.lookup_layer(f.key1), "its base " + f.golden.id().substr(0, 12) + " vanished");
  // Two levels up: the reason names the whole way down.
  expect_unusable(f.store.lookup_layer(f.key2), "its base " + f.l1.id().substr(0, 12) + " is unusable: its base");
}

TEST(LayerLookup, BaseRebakedWithOtherContent) {
  Fixture f;
  Image other = f.base;
  other.fill_page(7, 'R');
  publish_golden(f.store, sample_key(), other);  // same key, new bake (replaces the golden)
  ASSERT_TRUE(f.store.lookup(sample_key()).found());
  expect_unusable(f.store.lookup_layer(f.key1), "changed since the layer was made");
  expect_unusable(f.store.lookup_layer(f.key2), "is unusable: its base");
}

TEST(LayerLookup, MiddleLayerRebuiltInvalidatesItsChildren) {
  Fixture f;
  Image again = f.img1;
  again.fill_page(42, 'z');
  publish_layer(f.store, f.golden, f.key1, again);  // l1 rebuilt (say, after a rebuild of its payload)
  EXPECT_TRUE(f.store.lookup_layer(f.key1).found());
  expect_unusable(f.store.lookup_layer(f.key2), "its base " + f.l1.id().substr(0, 12) + " changed");
}

TEST(LayerLookup, LayerMadeByAnotherKilnVersion) {
  Fixture f;
  edit_metadata(f.l1.dir, [](nlohmann::json& j) { j["baked_by_version"] = "0.0.9"; });
  expect_unusable(f.store.lookup_layer(f.key1), "was rebaked by kiln 0.1.0 (the layer was made over kiln 0.0.9)");
  edit_metadata(f.l1.dir, [](nlohmann::json& j) { j["format_version"] = 1; });
  expect_unusable(f.store.lookup_layer(f.key1), "snapshot format 1 is older");
}

TEST(LayerLookup, CorruptIndexOrPagesOrStateAreUnusable) {
  Fixture f;
  flip(f.l1.dir / "memory.index", 50);
  expect_unusable(f.store.lookup_layer(f.key1), "memory.index does not match its digest");
  flip(f.l1.dir / "memory.index", 50);
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());

  flip(f.l1.dir / "memory.diff", 10);
  expect_unusable(f.store.lookup_layer(f.key1), "memory.diff does not match its digest");
  expect_unusable(f.store.lookup_layer(f.key2), "memory.diff does not match its digest");
  flip(f.l1.dir / "memory.diff", 10);

  std::filesystem::resize_file(f.l1.dir / "memory.diff", 4096);
  expect_unusable(f.store.lookup_layer(f.key1), "memory.diff is 4096 bytes but metadata.json says");
}

TEST(LayerLookup, IndexThatLiesConsistentlyIsStillRejected) {
  // Index and metadata both rewritten (digest fixed up): the index's own checks catch it.
  Fixture f;
  write_text(f.l1.dir / "memory.index", "KILNDIFF garbage");
  std::string digest = kiln::digest_file(f.l1.dir / "memory.index").value();
  edit_metadata(f.l1.dir, [&](nlohmann::json& j) {
    j["layer"]["index"]["digest"] = digest;
    j["layer"]["index"]["size"] = 16;
  });
  expect_unusable(f.store.lookup_layer(f.key1), "memory.index");
}

TEST(LayerLookup, CorruptGoldenMemoryIsCaughtOnceThenRemembered) {
  Fixture f;
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  EXPECT_TRUE(std::filesystem::exists(f.golden.dir / "memory.ram.stamp"));
  flip(f.golden.dir / "memory.ram", 5 * kPage + 1);  // the write changes ctime: re-digested
  expect_unusable(f.store.lookup_layer(f.key1), "memory.ram does not match its digest");
  expect_unusable(f.store.lookup_layer(f.key2), "memory.ram does not match its digest");
  flip(f.golden.dir / "memory.ram", 5 * kPage + 1);
  EXPECT_TRUE(f.store.lookup_layer(f.key2).found());
}

TEST(LayerLookup, MetadataForAnotherLayerOrAGoldenIsRefused) {
  Fixture f;
  edit_metadata(f.l1.dir, [](nlohmann::json& j) { j["layer"]["content_digest"] = "forged"; });
  expect_unusable(f.store.lookup_layer(f.key1), "describes a different layer (differs in: content_digest)");
  LayerKey as_golden{f.golden.id(), "payload", "x", ""};
  // A golden directory where a layer is expected.
  std::filesystem::rename(f.golden.dir, f.tmp / as_golden.id());
  expect_unusable(f.store.lookup_layer(as_golden), "it is a golden snapshot, not a layer");
}

// A restore's lookup does not re-read a layer's pages (tens of MiB for a test
// executable) while their file is the one digested before: same identity, old enough
// that a rewrite in the same timestamp tick cannot hide (common/digest_memo.h). A changed
// file is digested again and its corruption found.
TEST(LayerLookup, PagesAreDigestedAgainOnlyWhenTheirFileChanged) {
  Fixture f;
  // Until the file is older than the racy margin, every lookup digests it.
  const uint64_t young = kiln::memo_digest_files_hashed();
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  EXPECT_EQ(kiln::memo_digest_files_hashed(), young + 2);
  std::this_thread::sleep_for(kiln::kRacyMargin + std::chrono::milliseconds(200));
  const uint64_t before = kiln::memo_digest_files_hashed();
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  EXPECT_EQ(kiln::memo_digest_files_hashed(), before + 1);
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  ASSERT_TRUE(f.store.lookup_layer(f.key1).found());
  EXPECT_EQ(kiln::memo_digest_files_hashed(), before + 1) << "an unchanged memory.diff was read again";
  // `full` (kiln snapshots verify) always reads it.
  EXPECT_TRUE(f.store.lookup_layer(f.key1, VerifyLevel::full).found());
  flip(f.l1.dir / layout::kDiffFile, 10);
  expect_unusable(f.store.lookup_layer(f.key1), "memory.diff does not match its digest");
  EXPECT_EQ(kiln::memo_digest_files_hashed(), before + 2);
}
