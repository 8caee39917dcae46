// The split-ring walker against well-formed and hostile rings.
#include "vmm/kvm/virtio/virtqueue.h"

#include "tests/unit/virtio/guest_driver.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

using testing::Buf;
using testing::GuestRing;
using testing::kIndirect;
using testing::kNext;
using testing::kWrite;

constexpr uint64_t kRam = 1 << 20;
constexpr uint16_t kSize = 16;
constexpr uint64_t kData = 0x10000;

class VirtqueueTest : public ::testing::Test {
 protected:
  VirtqueueTest() : mem(testing::make_memory(kRam)), ring(mem, 0x1000, kSize), q(mem, 256, "test queue", 64 * 1024) {
    VirtqueueState& s = q.state();
    s.size = kSize;
    s.desc_gpa = ring.desc();
    s.avail_gpa = ring.avail();
    s.used_gpa = ring.used();
    EXPECT_TRUE(q.enable());
  }
  GuestMemory mem;
  GuestRing ring;
  Virtqueue q;
};

TEST_F(VirtqueueTest, PopsAChainAndReturnsItThroughTheUsedRing) {
  ASSERT_TRUE(mem.write(kData, "hello", 5));
  const uint16_t head = ring.add({{kData, 5}, {kData + 0x100, 3, false}, {kData + 0x200, 64, true}});
  auto chain = q.pop();
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->head, head);
  EXPECT_EQ(chain->readable.size(), 2u);
  EXPECT_EQ(chain->readable_bytes, 8u);
  EXPECT_EQ(chain->writable_bytes, 64u);
  uint8_t got[5] = {};
  EXPECT_EQ(read_from_chain(mem, *chain, 0, got), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(got), 5), "hello");
  const uint8_t out[3] = {'x', 'y', 'z'};
  EXPECT_EQ(write_to_chain(mem, *chain, 62, out), 2u);  // clipped at the chain's end
  EXPECT_FALSE(q.pop());

  q.push_used(chain->head, 7);
  auto used = ring.pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->id, head);
  EXPECT_EQ(used->len, 7u);
  EXPECT_TRUE(q.take_interrupt());
  EXPECT_FALSE(q.take_interrupt());  // once per batch
}

TEST_F(VirtqueueTest, DriverCanSuppressInterrupts) {
  ring.set_avail_flags(1);  // VIRTQ_AVAIL_F_NO_INTERRUPT
  ring.add({{kData, 8, true}});
  auto chain = q.pop();
  ASSERT_TRUE(chain);
  q.push_used(chain->head, 0);
  EXPECT_FALSE(q.take_interrupt());
}

TEST_F(VirtqueueTest, UndoPopGivesTheSameChainAgain) {
  ring.add({{kData, 8, true}});
  auto a = q.pop();
  ASSERT_TRUE(a);
  q.undo_pop();
  auto b = q.pop();
  ASSERT_TRUE(b);
  EXPECT_EQ(a->head, b->head);
}

TEST(VirtqueueEnable, RejectsBadRingPlacementAndSizes) {
  GuestMemory mem = testing::make_memory(kRam);
  auto try_enable = [&](uint16_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    Virtqueue q(mem, 256, "q");
    q.state() = VirtqueueState{size, false, desc, avail, used};
    const bool ok = q.enable().ok();
    EXPECT_EQ(q.ready(), ok);
    return ok;
  };
  EXPECT_TRUE(try_enable(16, 0x1000, 0x2000, 0x3000));
  EXPECT_FALSE(try_enable(0, 0x1000, 0x2000, 0x3000));
  EXPECT_FALSE(try_enable(12, 0x1000, 0x2000, 0x3000));   // not a power of two
  EXPECT_FALSE(try_enable(512, 0x1000, 0x2000, 0x3000));  // above QueueNumMax
  EXPECT_FALSE(try_enable(16, 0x1008, 0x2000, 0x3000));   // misaligned table
  EXPECT_FALSE(try_enable(16, 0x1000, 0x2001, 0x3000));
  EXPECT_FALSE(try_enable(16, 0x1000, 0x2000, 0x3002));
  EXPECT_FALSE(try_enable(16, kRam - 16, 0x2000, 0x3000));  // table runs past RAM
  EXPECT_FALSE(try_enable(16, 0x1000, 0x2000, kRam - 8));
  EXPECT_FALSE(try_enable(16, 0xfffffffffffff000ull, 0x2000, 0x3000));  // wraps around
}

// The bad chain was just published: popping drops it (logged, returned with length 0
// unless its head is unusable) and the next good chain still comes out.
void expect_dropped_then_recovers(Virtqueue& q, GuestRing& ring, uint16_t bad_head, bool head_returned = true) {
  const uint64_t errors = q.errors().total();
  const uint16_t good = ring.add({{kData, 16, true}});
  auto chain = q.pop();
  ASSERT_TRUE(chain) << "the queue stopped after a bad chain";
  EXPECT_EQ(chain->head, good);
  EXPECT_EQ(q.errors().total(), errors + 1);
  if (head_returned) {
    auto used = ring.pop_used();
    ASSERT_TRUE(used);
    EXPECT_EQ(used->id, bad_head);
    EXPECT_EQ(used->len, 0u);
  } else {
    EXPECT_FALSE(ring.pop_used());
  }
  EXPECT_FALSE(q.broken());
}

TEST_F(VirtqueueTest, BufferOutsideRamIsDropped) {
  ring.set_desc(10, kRam - 4, 8, 0, 0);
  ring.publish(10);
  expect_dropped_then_recovers(q, ring, 10);
  ring.set_desc(11, ~0ull - 2, 8, 0, 0);  // address + length overflows
  ring.publish(11);
  expect_dropped_then_recovers(q, ring, 11);
}

TEST_F(VirtqueueTest, DescriptorLoopIsDroppedWithoutHanging) {
  ring.set_desc(12, kData, 4, kNext, 13);
  ring.set_desc(13, kData, 4, kNext, 12);
  ring.publish(12);
  expect_dropped_then_recovers(q, ring, 12);
  ring.set_desc(14, kData, 4, kNext, 14);  // self loop
  ring.publish(14);
  expect_dropped_then_recovers(q, ring, 14);
}

TEST_F(VirtqueueTest, NextIndexOutOfRangeIsDropped) {
  ring.set_desc(9, kData, 4, kNext, kSize);
  ring.publish(9);
  expect_dropped_then_recovers(q, ring, 9);
}

TEST_F(VirtqueueTest, HeadIndexOutOfRangeIsSkipped) {
  ring.publish(kSize + 3);
  expect_dropped_then_recovers(q, ring, 0, /*head_returned=*/false);
}

TEST_F(VirtqueueTest, ChainOverTheByteCapIsDropped) {
  ring.set_desc(8, kData, 40 * 1024, kNext, 9);
  ring.set_desc(9, kData, 40 * 1024, 0, 0);  // 80 KiB > the 64 KiB cap of this queue
  ring.publish(8);
  expect_dropped_then_recovers(q, ring, 8);
}

TEST_F(VirtqueueTest, ReadableAfterWritableIsDropped) {
  ring.set_desc(8, kData, 4, kWrite | kNext, 9);
  ring.set_desc(9, kData, 4, 0, 0);
  ring.publish(8);
  expect_dropped_then_recovers(q, ring, 8);
}

TEST_F(VirtqueueTest, AvailIndexJumpingAheadBreaksTheQueue) {
  ring.add({{kData, 4}});
  ring.set_avail_idx(kSize + 5);
  EXPECT_FALSE(q.pop());
  EXPECT_TRUE(q.broken());
  EXPECT_FALSE(q.pop());
  EXPECT_FALSE(q.has_available());
  q.reset();
  EXPECT_FALSE(q.broken());
}

class IndirectTest : public VirtqueueTest {
 protected:
  static constexpr uint64_t kTable = 0x20000;
  IndirectTest() { q.set_indirect_allowed(true); }
};

TEST_F(IndirectTest, IndirectTableIsWalked) {
  ring.write_desc(kTable, kData, 16, kNext, 1);
  ring.write_desc(kTable + 16, kData + 16, 8, kNext, 2);
  ring.write_desc(kTable + 32, kData + 0x100, 512, kWrite, 0);
  ring.set_desc(3, kTable, 48, kIndirect, 0);
  ring.publish(3);
  auto chain = q.pop();
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->head, 3);
  EXPECT_EQ(chain->readable_bytes, 24u);
  EXPECT_EQ(chain->writable_bytes, 512u);
}

TEST_F(IndirectTest, RejectedWithoutTheFeature) {
  q.set_indirect_allowed(false);
  ring.write_desc(kTable, kData, 16, 0, 0);
  ring.set_desc(3, kTable, 16, kIndirect, 0);
  ring.publish(3);
  expect_dropped_then_recovers(q, ring, 3);
}

TEST_F(IndirectTest, NestedIndirectIsDropped) {
  ring.write_desc(kTable, kTable, 16, kIndirect, 0);  // points at itself
  ring.set_desc(3, kTable, 16, kIndirect, 0);
  ring.publish(3);
  expect_dropped_then_recovers(q, ring, 3);
}

TEST_F(IndirectTest, IndirectWithNextIsDropped) {
  ring.write_desc(kTable, kData, 16, 0, 0);
  ring.set_desc(3, kTable, 16, kIndirect | kNext, 4);
  ring.set_desc(4, kData, 16, 0, 0);
  ring.publish(3);
  expect_dropped_then_recovers(q, ring, 3);
}

TEST_F(IndirectTest, BadTablesAreDropped) {
  ring.set_desc(3, kTable, 20, kIndirect, 0);  // not a multiple of 16
  ring.publish(3);
  expect_dropped_then_recovers(q, ring, 3);
  ring.set_desc(4, kRam - 16, 32, kIndirect, 0);  // past RAM
  ring.publish(4);
  expect_dropped_then_recovers(q, ring, 4);
  ring.set_desc(5, kTable, 16 * (Virtqueue::kMaxIndirectDescriptors + 1), kIndirect, 0);  // too long
  ring.publish(5);
  expect_dropped_then_recovers(q, ring, 5);
  ring.set_desc(6, kTable, 0, kIndirect, 0);  // empty
  ring.publish(6);
  expect_dropped_then_recovers(q, ring, 6);
}

TEST_F(IndirectTest, LoopInsideAnIndirectTableIsDropped) {
  ring.write_desc(kTable, kData, 16, kNext, 1);
  ring.write_desc(kTable + 16, kData, 16, kNext, 0);
  ring.set_desc(3, kTable, 32, kIndirect, 0);
  ring.publish(3);
  expect_dropped_then_recovers(q, ring, 3);
  ring.write_desc(kTable, kData, 16, kNext, 7);  // next beyond the table
  ring.set_desc(4, kTable, 32, kIndirect, 0);
  ring.publish(4);
  expect_dropped_then_recovers(q, ring, 4);
}

}  // namespace
}  // namespace kiln::vmm::kvm
