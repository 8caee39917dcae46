// memory.index: encoding round trip and every rejection of hostile bytes.
#include "snapshot/diff_index.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace kiln::snapshot;
using kiln::vmm::MemoryExtent;

namespace {

DiffIndex sample() {
  DiffIndex d;
  d.memory_size = 64 * kPageSize;
  append_extent(d, 0, kPageSize);
  append_extent(d, kPageSize, 2 * kPageSize);  // touches: merged
  append_extent(d, 10 * kPageSize, kPageSize);
  append_extent(d, 63 * kPageSize, kPageSize);
  return d;
}

void put_u64(std::string& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
}

void expect_rejected(const std::string& bytes, const std::string& needle) {
  auto r = parse_diff_index(bytes);
  ASSERT_FALSE(r.ok()) << "accepted, expected: " << needle;
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

// encode_diff_index writes whatever it is given, with a valid checksum: the way to
// reach the checks behind the checksum.
void expect_rejected(const DiffIndex& d, const std::string& needle) { expect_rejected(encode_diff_index(d), needle); }

constexpr size_t kFirstExtent = 40;

}  // namespace

TEST(DiffIndex, AppendCoalescesAndKeepsThePagesFileDense) {
  DiffIndex d = sample();
  ASSERT_EQ(d.extents.size(), 3u);
  EXPECT_EQ(d.extents[0], (MemoryExtent{0, 0, 3 * kPageSize}));
  EXPECT_EQ(d.extents[1], (MemoryExtent{10 * kPageSize, 3 * kPageSize, kPageSize}));
  EXPECT_EQ(d.extents[2], (MemoryExtent{63 * kPageSize, 4 * kPageSize, kPageSize}));
  EXPECT_EQ(d.pages_bytes, 5 * kPageSize);
}

TEST(DiffIndex, RoundTrips) {
  DiffIndex d = sample();
  auto bytes = encode_diff_index(d);
  EXPECT_EQ(bytes.size(), 40u + 3 * 24 + 16);
  EXPECT_EQ(bytes.substr(0, 8), "KILNDIFF");
  auto back = parse_diff_index(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, d);

  DiffIndex empty;
  empty.memory_size = kPageSize;
  auto e = parse_diff_index(encode_diff_index(empty));
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_TRUE(e->extents.empty());
}

TEST(DiffIndex, RejectsDamagedFiles) {
  std::string good = encode_diff_index(sample());
  expect_rejected("", "too short");
  expect_rejected(good.substr(0, 50), "too short");
  expect_rejected("XILNDIFF" + good.substr(8), "magic");
  std::string flipped = good;
  flipped[kFirstExtent + 3] ^= 1;
  expect_rejected(flipped, "checksum");
  expect_rejected(good.substr(0, good.size() - 1), "checksum");
  expect_rejected(std::string(kMaxDiffIndexBytes + 1, 'x'), "more than the");
  std::string v = good;
  put_u64(v, 8, 2);  // version 2, before the checksum is even looked at
  expect_rejected(v, "format 2");
}

TEST(DiffIndex, RejectsBrokenInvariants) {
  auto with = [](auto change) {
    DiffIndex d = sample();
    change(d);
    return d;
  };
  using D = DiffIndex&;
  expect_rejected(with([](D d) { d.memory_size = 0; }), "memory size 0");
  expect_rejected(with([](D d) { d.memory_size = 5000; }), "not a positive multiple");
  expect_rejected(with([](D d) { d.pages_bytes = 123; }), "pages size 123");
  expect_rejected(with([](D d) { d.pages_bytes = 8 * kPageSize; }), "extents hold");
  expect_rejected(with([](D d) { d.extents[0].length = 0; }), "empty or not page-aligned");
  expect_rejected(with([](D d) { d.extents[0].length = 100; }), "empty or not page-aligned");
  expect_rejected(with([](D d) { d.extents[1].guest_offset = 12345; }), "empty or not page-aligned");
  expect_rejected(with([](D d) { d.extents[1].guest_offset = 2 * kPageSize; }), "overlaps");
  expect_rejected(with([](D d) { d.extents[1].guest_offset = 3 * kPageSize; }), "touches");
  expect_rejected(with([](D d) { d.extents[1].guest_offset = 64 * kPageSize; }), "ends past guest memory");
  expect_rejected(with([](D d) { d.extents[2].length = ~0ull & ~(kPageSize - 1); }), "ends past guest memory");
  expect_rejected(with([](D d) { d.extents[1].file_offset = 4 * kPageSize; }), "not dense");
  expect_rejected(with([](D d) { d.extents[0].file_offset = kPageSize; }), "not dense");
}
