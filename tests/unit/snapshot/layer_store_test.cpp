// Layers in the store: publish, lookup, restore files for both kinds of engine, chains.
#include "layer_test_util.h"
#include "snapshot/layout.h"

#include <gtest/gtest.h>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

Image golden_image() {
  Image img;
  for (uint64_t p = 0; p < 64; ++p) img.fill_page(p, static_cast<char>('A' + p % 26));
  img.fill_page(1000, 'g');
  return img;
}

// The image after the runner placed a payload: some pages changed, one zeroed, some new.
Image changed(Image img, char tag, uint64_t first_page) {
  img.fill_page(first_page, tag);
  img.fill_page(first_page + 1, tag);
  img.poke(5 * kPage + static_cast<uint64_t>(tag), tag);
  img.zero_page(1000);
  img.fill_page(3000 + static_cast<uint64_t>(tag), tag);
  return img;
}

struct Fixture {
  TmpRoot tmp;
  Store store{tmp.path()};
  Image base = golden_image();
  Snapshot golden = publish_golden(store, sample_key(), base);
};

}  // namespace

TEST(LayerStore, PublishedLayerIsFoundAndRestoresTheExactImage) {
  Fixture f;
  Image img = changed(f.base, 'p', 200);
  LayerKey key = layer_key(f.golden, "d1");
  EXPECT_EQ(f.store.lookup_layer(key).status, LookupStatus::missing);
  Snapshot layer = publish_layer(f.store, f.golden, key, img);
  EXPECT_EQ(layer.dir, f.tmp / key.id());
  EXPECT_EQ(layer.depth(), 1u);
  EXPECT_EQ(layer.meta.key, f.golden.meta.key);
  EXPECT_EQ(*layer.meta.parent, f.golden.id());
  EXPECT_EQ(layer.meta.layer->label, key.label);
  EXPECT_FALSE(std::filesystem::exists(layer.dir / "memory.ram")) << "the complete image is not kept";
  EXPECT_FALSE(std::filesystem::exists(layer.dir / layout::kFlatFile));

  auto found = f.store.lookup_layer(key);
  ASSERT_TRUE(found.found()) << found.reason;
  EXPECT_EQ(found.snapshot->meta, layer.meta);
  // The label is not part of the identity.
  LayerKey relabelled = key;
  relabelled.label = "renamed";
  EXPECT_TRUE(f.store.lookup_layer(relabelled).found());

  auto mapped = f.store.restore_files(layer, /*maps_overlays=*/true);
  ASSERT_TRUE(mapped.ok()) << mapped.error().message;
  EXPECT_EQ(mapped->memory, f.golden.dir / "memory.ram");
  EXPECT_EQ(mapped->state, layer.dir / "state.bin");
  ASSERT_EQ(mapped->overlays.size(), 1u);
  EXPECT_EQ(mapped->overlays[0].file, layer.dir / "memory.diff");
  EXPECT_TRUE(apply_overlays(*mapped) == img.bytes);

  auto flat = f.store.restore_files(layer, /*maps_overlays=*/false);
  ASSERT_TRUE(flat.ok()) << flat.error().message;
  EXPECT_EQ(flat->memory, layer.dir / layout::kFlatFile);
  EXPECT_TRUE(flat->overlays.empty());
  EXPECT_TRUE(read_text(flat->memory) == img.bytes) << "flat file differs from the full image";
  // Sparse: about the golden's data plus the diff, not 16 MiB.
  struct stat st {};
  ASSERT_EQ(::stat(flat->memory.c_str(), &st), 0);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, 1u << 20);
  // Reused, not rebuilt.
  auto ino = st.st_ino;
  auto again = f.store.restore_files(layer, false);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(::stat(again->memory.c_str(), &st), 0);
  EXPECT_EQ(st.st_ino, ino);
}

TEST(LayerStore, KeepFlatKeepsTheEnginesImageAsTheFlatFile) {
  Fixture f;
  Image img = changed(f.base, 'k', 300);
  Snapshot layer = publish_layer(f.store, f.golden, layer_key(f.golden, "k"), img, /*keep_flat=*/true);
  ASSERT_TRUE(std::filesystem::exists(layer.dir / layout::kFlatFile));
  struct stat st {};
  ASSERT_EQ(::stat((layer.dir / layout::kFlatFile).c_str(), &st), 0);
  auto flat = f.store.restore_files(layer, false);
  ASSERT_TRUE(flat.ok()) << flat.error().message;
  EXPECT_TRUE(read_text(flat->memory) == img.bytes);
  struct stat after {};
  ASSERT_EQ(::stat(flat->memory.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, st.st_ino) << "a kept flat file must be used, not rebuilt";
}

TEST(LayerStore, DamagedOrStaleFlatFileIsRebuilt) {
  Fixture f;
  Image img = changed(f.base, 's', 400);
  Snapshot layer = publish_layer(f.store, f.golden, layer_key(f.golden, "s"), img, /*keep_flat=*/true);
  auto flat = layer.dir / layout::kFlatFile;
  flip(flat, 400 * kPage + 5);  // a write changes ctime: the stamp no longer vouches for it
  auto r = f.store.restore_files(layer, false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(read_text(r->memory) == img.bytes);

  std::filesystem::remove(layer.dir / layout::kFlatStampFile);
  r = f.store.restore_files(layer, false);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(read_text(r->memory) == img.bytes);
  EXPECT_TRUE(std::filesystem::exists(layer.dir / layout::kFlatStampFile));
  // No temp files left behind.
  for (auto& name : names_in(layer.dir)) EXPECT_NE(name.rfind(".flat-", 0), 0u) << name;
}

TEST(LayerStore, ChainsOfLayersRestoreEachLevelExactly) {
  Fixture f;
  Image i1 = changed(f.base, '1', 500);
  Snapshot l1 = publish_layer(f.store, f.golden, layer_key(f.golden, "one", "payload"), i1);
  Image i2 = changed(i1, '2', 600);
  i2.zero_page(500);  // undo part of l1: the page is the golden's hole again, but l1 had data
  Snapshot l2 = publish_layer(f.store, l1, layer_key(l1, "two", "fixture"), i2);
  Image i3 = changed(i2, '3', 700);
  i3.fill_page(500, '1');  // back to l1's content
  Snapshot l3 = publish_layer(f.store, l2, layer_key(l2, "three", "payload"), i3);
  EXPECT_EQ(l2.depth(), 2u);
  EXPECT_EQ(l3.depth(), 3u);
  EXPECT_EQ(*l3.meta.parent, l2.id());

  ASSERT_TRUE(f.store.lookup_layer(layer_key(l2, "three", "payload")).found());
  const std::pair<const Snapshot*, const Image*> levels[] = {{&l1, &i1}, {&l2, &i2}, {&l3, &i3}};
  for (auto [snap, img] : levels) {
    auto mapped = f.store.restore_files(*snap, true);
    ASSERT_TRUE(mapped.ok()) << mapped.error().message;
    EXPECT_EQ(mapped->overlays.size(), snap->depth());
    EXPECT_EQ(mapped->memory, f.golden.dir / "memory.ram");
    EXPECT_TRUE(apply_overlays(*mapped) == img->bytes) << "depth " << snap->depth();
    auto flat = f.store.restore_files(*snap, false);
    ASSERT_TRUE(flat.ok()) << flat.error().message;
    EXPECT_TRUE(read_text(flat->memory) == img->bytes) << "depth " << snap->depth();
  }
  // The golden restores as before.
  auto g = f.store.restore_files(f.golden, true);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->memory, f.golden.dir / "memory.ram");
  EXPECT_TRUE(g->overlays.empty());
  EXPECT_TRUE(f.store.lookup(sample_key()).found());
}

TEST(LayerStore, ChainsDeeperThanTheMaximumAreRefused) {
  Fixture f;
  Snapshot parent = f.golden;
  Image img = f.base;
  for (uint32_t depth = 1; depth <= kMaxLayerDepth; ++depth) {
    img.fill_page(800 + depth, static_cast<char>('0' + depth));
    parent = publish_layer(f.store, parent, layer_key(parent, "d" + std::to_string(depth)), img);
    ASSERT_EQ(parent.depth(), depth);
  }
  auto mapped = f.store.restore_files(parent, true);
  ASSERT_TRUE(mapped.ok()) << mapped.error().message;
  EXPECT_TRUE(apply_overlays(*mapped) == img.bytes);

  auto too_deep = try_publish_layer(f.store, parent, layer_key(parent, "deeper"), img, false);
  ASSERT_FALSE(too_deep.ok());
  EXPECT_NE(too_deep.error().message.find("at most 4 layers"), std::string::npos) << too_deep.error().message;
  EXPECT_EQ(f.store.lookup_layer(layer_key(parent, "deeper")).status, LookupStatus::missing);
  for (auto& name : names_in(f.tmp.path())) EXPECT_NE(name.rfind(".tmp-", 0), 0u) << name;
}

TEST(LayerStore, PublishChecksItsArguments) {
  Fixture f;
  Snapshot l1 = publish_layer(f.store, f.golden, layer_key(f.golden, "a"), f.base);
  // Keyed over the golden but diffed against l1.
  auto wrong = try_publish_layer(f.store, l1, layer_key(f.golden, "b"), f.base, false);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("keyed over"), std::string::npos) << wrong.error().message;
  LayerKey odd = layer_key(f.golden, "c");
  odd.kind = "other";
  EXPECT_FALSE(try_publish_layer(f.store, f.golden, odd, f.base, false).ok());
}
