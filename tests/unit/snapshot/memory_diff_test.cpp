// Diffing synthetic guest-RAM images against a golden, and flattening them back.
#include "snapshot/memory_diff.h"

#include "layer_test_util.h"
#include "snapshot/layout.h"

#include <gtest/gtest.h>

using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

// A golden with data in pages 0-9, 100, and the last page; the rest are holes.
Image golden_image() {
  Image img;
  for (uint64_t p = 0; p < 10; ++p) img.fill_page(p, static_cast<char>('a' + p));
  img.fill_page(100, 'x');
  img.fill_page(kMemBytes / kPage - 1, 'z');
  return img;
}

struct Fixture {
  TmpRoot tmp;
  Store store{tmp.path()};
  Image base = golden_image();
  Snapshot golden = publish_golden(store, sample_key(), base);

  // Diff `img` against the golden; returns the index and fills `pages`.
  DiffIndex diff(const Image& img, std::string* pages = nullptr, DiffStats* stats = nullptr) {
    write_image(tmp / "image.ram", img);
    std::filesystem::remove(tmp / "pages");
    auto chain = load_chain(store.root(), golden);
    EXPECT_TRUE(chain.ok()) << chain.error().message;
    auto view = MemoryView::open(*chain);
    EXPECT_TRUE(view.ok()) << view.error().message;
    auto index = write_memory_diff(tmp / "image.ram", *view, tmp / "pages", stats);
    EXPECT_TRUE(index.ok()) << index.error().message;
    if (pages) *pages = read_text(tmp / "pages");
    return index.ok() ? *index : DiffIndex{};
  }
};

}  // namespace

TEST(MemoryDiff, IdenticalImageGivesAnEmptyDiff) {
  Fixture f;
  std::string pages;
  DiffIndex d = f.diff(f.base, &pages);
  EXPECT_TRUE(d.extents.empty());
  EXPECT_EQ(d.pages_bytes, 0u);
  EXPECT_EQ(d.memory_size, kMemBytes);
  EXPECT_TRUE(pages.empty());
}

TEST(MemoryDiff, StoresChangedZeroedAndNewPagesOnly) {
  Fixture f;
  Image img = f.base;
  img.poke(3 * kPage + 17, '!');   // changed (one byte)
  img.fill_page(4, 'Q');           // changed, adjacent: one extent with page 3
  img.zero_page(100);              // was data, now zero: must be recorded
  img.fill_page(2000, 'n');        // new data in a hole of the golden
  img.fill_page(2001, 'm');
  DiffStats stats;
  std::string pages;
  DiffIndex d = f.diff(img, &pages, &stats);
  ASSERT_EQ(d.extents.size(), 3u);
  EXPECT_EQ(d.extents[0], (kiln::vmm::MemoryExtent{3 * kPage, 0, 2 * kPage}));
  EXPECT_EQ(d.extents[1], (kiln::vmm::MemoryExtent{100 * kPage, 2 * kPage, kPage}));
  EXPECT_EQ(d.extents[2], (kiln::vmm::MemoryExtent{2000 * kPage, 3 * kPage, 2 * kPage}));
  EXPECT_EQ(stats.stored_pages, 4u);
  EXPECT_EQ(stats.zeroed_pages, 1u);
  ASSERT_EQ(pages.size(), 5 * kPage);
  EXPECT_EQ(pages.substr(0, 2 * kPage), img.bytes.substr(3 * kPage, 2 * kPage));
  EXPECT_EQ(pages.substr(2 * kPage, kPage), std::string(kPage, '\0'));
  EXPECT_EQ(pages.substr(3 * kPage, 2 * kPage), img.bytes.substr(2000 * kPage, 2 * kPage));
  // Only ranges with data on either side are read, not the whole 16 MiB.
  EXPECT_LE(stats.scanned_bytes, 32 * kPage);
}

TEST(MemoryDiff, ZeroPagesAreHolesInThePagesFile) {
  Fixture f;
  Image img = f.base;
  for (uint64_t p = 0; p < 10; ++p) img.zero_page(p);  // all of the golden's first pages wiped
  DiffIndex d = f.diff(img);
  ASSERT_EQ(d.extents.size(), 1u);
  EXPECT_EQ(d.pages_bytes, 10 * kPage);
  struct stat st {};
  ASSERT_EQ(::stat((f.tmp / "pages").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(10 * kPage));
  EXPECT_EQ(st.st_blocks, 0) << "zero pages must not take disk space";
}

TEST(MemoryDiff, RefusesAnImageOfAnotherSize) {
  Fixture f;
  write_text(f.tmp / "short.ram", std::string(kPage, 'x'));
  auto chain = load_chain(f.store.root(), f.golden);
  ASSERT_TRUE(chain.ok());
  auto view = MemoryView::open(*chain);
  ASSERT_TRUE(view.ok());
  auto r = write_memory_diff(f.tmp / "short.ram", *view, f.tmp / "pages");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("did not save a complete image"), std::string::npos) << r.error().message;
}
