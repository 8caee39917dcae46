// `kiln snapshots list` and `gc` with layers: sizes, the size cap's order (flat files,
// then least recently used leaves), and bases that kept layers need.
#include "layer_test_util.h"
#include "snapshot/layout.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

Image golden_image() {
  Image img;
  for (uint64_t p = 0; p < 256; ++p) img.fill_page(p, 'g');  // 1 MiB of data
  return img;
}

Image with_pages(Image img, uint64_t first, uint64_t count, char c) {
  for (uint64_t p = first; p < first + count; ++p) img.fill_page(p, c);
  return img;
}

// golden <- a <- c, golden <- b; last used: golden oldest, then a, c, b.
struct Fixture {
  TmpRoot tmp;
  Store store{tmp.path()};
  Image base = golden_image();
  Snapshot golden = publish_golden(store, sample_key(), base);
  Image ia = with_pages(base, 1000, 64, 'a');
  Snapshot a = publish_layer(store, golden, layer_key(golden, "a"), ia, /*keep_flat=*/true);
  Snapshot b = publish_layer(store, golden, layer_key(golden, "b", "fixture"), with_pages(base, 2000, 64, 'b'), true);
  Snapshot c = publish_layer(store, a, layer_key(a, "c"), with_pages(ia, 3000, 64, 'c'), true);

  Fixture() {
    // Recent (the age rule must not apply), one minute apart.
    int64_t t = ::time(nullptr) - 3600;
    for (const Snapshot* s : {&golden, &a, &c, &b}) {
      store.mark_used(*s);
      set_mtime(s->dir / layout::kLastUsedFile, t, 0);
      t += 60;
    }
  }
  uint64_t total() const { return fsops_usage(tmp.path()); }
  static uint64_t fsops_usage(const stdfs::path& p) {
    uint64_t sum = 0;
    for (auto& e : stdfs::recursive_directory_iterator(p)) {
      struct stat st {};
      if (::lstat(e.path().c_str(), &st) == 0) sum += static_cast<uint64_t>(st.st_blocks) * 512;
    }
    struct stat st {};
    ::lstat(p.c_str(), &st);
    return sum + static_cast<uint64_t>(st.st_blocks) * 512;
  }
};

std::vector<std::string> removed_names(const GcReport& r) {
  std::vector<std::string> out;
  for (auto& i : r.removed) out.push_back(i.name);
  return out;
}

GcOptions cap(uint64_t bytes) {
  GcOptions o;
  o.current_version = "0.1.0";
  o.max_size = bytes;
  return o;
}

}  // namespace

TEST(LayerList, ShowsLayersWithParentDepthSharedAndFlatBytes) {
  Fixture f;
  auto entries = f.store.list();
  ASSERT_EQ(entries.size(), 4u);
  for (auto& e : entries) {
    ASSERT_EQ(e.status, LookupStatus::found) << e.id << ": " << e.reason;
    ASSERT_TRUE(e.meta);
    if (e.id == f.golden.id()) {
      EXPECT_FALSE(e.meta->layer);
      EXPECT_EQ(e.shared_bytes, 0u);
      EXPECT_EQ(e.flat_bytes, 0u);
      continue;
    }
    ASSERT_TRUE(e.meta->layer);
    EXPECT_GT(e.flat_bytes, 0u);
    EXPECT_GE(e.disk_bytes, e.flat_bytes);
    // Every layer leaves the golden's 256 data pages alone: all of them are shared.
    EXPECT_EQ(e.shared_bytes, 256 * kPage) << e.id;
    if (e.id == f.c.id()) {
      EXPECT_EQ(*e.meta->parent, f.a.id());
      EXPECT_EQ(e.meta->layer->depth, 2u);
      EXPECT_EQ(e.meta->layer->label, "/usr/bin/test-c");
    }
    if (e.id == f.b.id()) {
      EXPECT_EQ(e.meta->layer->kind, "fixture");
    }
  }
  // A layer that overwrites golden pages shares fewer.
  Snapshot d = publish_layer(f.store, f.golden, layer_key(f.golden, "d"), with_pages(f.base, 0, 16, 'd'));
  for (auto& e : f.store.list())
    if (e.id == d.id()) {
      EXPECT_EQ(e.shared_bytes, (256 - 16) * kPage);
    }
}

TEST(LayerGc, SizeCapEvictsFlatFilesFirst) {
  Fixture f;
  uint64_t flats = 0;
  for (auto& e : f.store.list()) flats += e.flat_bytes;
  ASSERT_GT(flats, 0u);
  // Room for everything but a little less than the flat files: only flat files go.
  auto r = f.store.gc(cap(f.total() - flats / 2));
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_FALSE(r->removed.empty());
  for (auto& item : r->removed) EXPECT_NE(item.name.find("/memory.flat"), std::string::npos) << item.name;
  // Least recently used first: a's flat before c's and b's.
  EXPECT_EQ(r->removed[0].name, f.a.id() + "/memory.flat");
  for (const Snapshot* s : {&f.golden, &f.a, &f.b, &f.c}) EXPECT_TRUE(stdfs::exists(s->dir));
  // A removed flat file is rebuilt on demand.
  auto files = f.store.restore_files(f.a, false);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_TRUE(read_text(files->memory) == f.ia.bytes);
}

TEST(LayerGc, SizeCapRemovesLeastRecentlyUsedLeavesNeverABaseInUse) {
  Fixture f;
  auto r = f.store.gc(cap(0));
  ASSERT_TRUE(r.ok()) << r.error().message;
  std::vector<std::string> snapshots;
  for (auto& n : removed_names(*r))
    if (n.find('/') == std::string::npos) snapshots.push_back(n);
  // c is the least recently used leaf; then a (a leaf now, older than b); then b; the golden last.
  EXPECT_EQ(snapshots, (std::vector<std::string>{f.c.id(), f.a.id(), f.b.id(), f.golden.id()}));
  EXPECT_TRUE(f.store.list().empty());
}

TEST(LayerGc, SizeCapStopsAtTheCap) {
  Fixture f;
  uint64_t c_bytes = 0;  // without its flat file
  for (auto& e : f.store.list())
    if (e.id == f.c.id()) c_bytes = e.disk_bytes - e.flat_bytes;
  uint64_t flats = 0;
  for (auto& e : f.store.list()) flats += e.flat_bytes;
  auto r = f.store.gc(cap(f.total() - flats - c_bytes / 2));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(stdfs::exists(f.c.dir));
  for (const Snapshot* s : {&f.golden, &f.a, &f.b}) EXPECT_TRUE(stdfs::exists(s->dir)) << s->id();
  EXPECT_TRUE(f.store.lookup_layer(layer_key(f.golden, "b", "fixture")).found());
}

TEST(LayerGc, ABaseWithALayerBeingBuiltIsKept) {
  Fixture f;
  // A runner building a layer over b pins b: gc cannot remove b (nor the golden under it).
  auto lock = f.store.lock_for_layer(layer_key(f.b, "new"));
  ASSERT_TRUE(lock.ok()) << lock.error().message;
  auto r = f.store.gc(cap(0));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(stdfs::exists(f.b.dir));
  EXPECT_TRUE(stdfs::exists(f.golden.dir));
  EXPECT_FALSE(stdfs::exists(f.c.dir));
  EXPECT_TRUE(std::any_of(r->kept.begin(), r->kept.end(), [&](auto& i) { return i.name == f.b.id(); }));
  EXPECT_FALSE(f.store.remove(f.b.id()).ok()) << "rm refuses it too";
}

TEST(LayerGc, RulesRemoveLayersBeforeTheirBasesAndKeepBasesOfKeptLayers) {
  Fixture f;
  // The golden is old but a, b, c are still used: the age rule cannot take it.
  GcOptions o;
  o.current_version = "0.1.0";
  set_mtime(f.golden.dir / layout::kLastUsedFile, 1'000'000'000, 0);  // 2001
  o.max_unused = std::chrono::hours(24);
  auto r = f.store.gc(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->removed.empty()) << r->removed[0].name << ": " << r->removed[0].why;

  // A new kiln version: everything goes, layers before the golden they were built on.
  o.current_version = "0.2.0";
  r = f.store.gc(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto names = removed_names(*r);
  ASSERT_EQ(names.size(), 4u);
  EXPECT_EQ(names.back(), f.golden.id());
  EXPECT_LT(std::find(names.begin(), names.end(), f.c.id()), std::find(names.begin(), names.end(), f.a.id()));
}

TEST(LayerGc, OrphanedLayersAndDeadFlatBuildsAreRemoved) {
  Fixture f;
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  auto stale = f.b.dir / fmt::format(".flat-{}-{}-abcdef", f.b.id(), dead);
  write_text(stale, "half a flat file");
  ASSERT_TRUE(f.store.remove(f.golden.id()).ok());  // rm is allowed; its layers become unusable
  GcOptions o;
  o.current_version = "0.1.0";
  auto r = f.store.gc(o);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(stdfs::exists(stale));
  for (const Snapshot* s : {&f.a, &f.b, &f.c}) EXPECT_FALSE(stdfs::exists(s->dir)) << s->id();
  bool said = false;
  for (auto& i : r->removed) said |= i.why.find("vanished") != std::string::npos;
  EXPECT_TRUE(said);
}
