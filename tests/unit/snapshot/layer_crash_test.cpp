// A kiln killed in the middle of publish_layer leaves no half layer visible, and the
// next kiln builds the layer as if nothing had happened.
#include "layer_test_util.h"
#include "snapshot/layout.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

void sleep_us(long us) {
  struct timespec ts {us / 1000000, (us % 1000000) * 1000};
  while (::nanosleep(&ts, &ts) != 0) {
  }
}

// Everything the store shows must be complete: no entry unusable, and the layer either
// absent or restoring exactly `img`.
void expect_consistent(const Store& store, const LayerKey& key, const Image& img) {
  for (auto& e : store.list()) EXPECT_EQ(e.status, LookupStatus::found) << e.id << ": " << e.reason;
  auto r = store.lookup_layer(key);
  ASSERT_NE(r.status, LookupStatus::unusable) << r.reason;
  if (r.found()) {
    auto files = store.restore_files(*r.snapshot, true);
    ASSERT_TRUE(files.ok()) << files.error().message;
    EXPECT_TRUE(apply_overlays(*files) == img.bytes);
  }
}

}  // namespace

TEST(LayerCrash, KillDuringPublishLeavesNoHalfLayer) {
  TmpRoot tmp;
  Store store(tmp.path());
  Image base;
  for (uint64_t p = 0; p < 512; ++p) base.fill_page(p, 'g');
  Snapshot golden = publish_golden(store, sample_key(), base);
  Image img;  // every page differs from the golden: the diff writes all 16 MiB
  for (uint64_t p = 0; p < kMemBytes / kPage; ++p) img.fill_page(p, static_cast<char>('a' + p % 7));

  int killed_mid_publish = 0;
  for (int attempt = 0; attempt < 60 && killed_mid_publish < 3; ++attempt) {
    LayerKey key = layer_key(golden, "crash-" + std::to_string(attempt));
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(ready[0]);
      auto bake = store.begin_layer(key);
      if (!bake) ::_exit(2);
      write_text(bake->files().state, "state");
      write_image(bake->files().memory, img);
      if (::write(ready[1], "r", 1) != 1) ::_exit(3);  // publish_layer starts now
      auto published = store.publish_layer(std::move(bake).value(), key, golden, false);
      ::_exit(published.ok() ? 0 : 1);
    }
    ::close(ready[1]);
    char c = 0;
    ASSERT_EQ(::read(ready[0], &c, 1), 1);
    ::close(ready[0]);
    sleep_us(attempt * 1500L);  // 0, 1.5, 3 ms ... into publish_layer
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);

    // Did we catch it half-way: its bake directory left behind with diff output in it?
    for (auto& name : names_in(tmp.path())) {
      if (name.rfind(".tmp-" + key.id() + "-" + std::to_string(child) + "-", 0) != 0) continue;
      auto left = names_in(tmp / name);
      if (std::find(left.begin(), left.end(), "memory.diff") != left.end()) ++killed_mid_publish;
    }
    expect_consistent(store, key, img);
  }
  EXPECT_GE(killed_mid_publish, 1) << "no kill landed inside publish_layer; the test proved nothing";

  // gc clears the dead bakes; a later publish of the same layer succeeds.
  GcOptions o;
  o.current_version = sample_key().baked_by_version;
  ASSERT_TRUE(store.gc(o).ok());
  for (auto& name : names_in(tmp.path())) EXPECT_NE(name.rfind(".tmp-", 0), 0u) << name;
  LayerKey key = layer_key(golden, "crash-0");
  Snapshot layer = publish_layer(store, golden, key, img);
  auto found = store.lookup_layer(key);
  ASSERT_TRUE(found.found()) << found.reason;
  expect_consistent(store, key, img);
}
