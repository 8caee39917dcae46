#include "vmm/kvm/io_bus.h"
#include "vmm/kvm/state_stream.h"

#include <gtest/gtest.h>

#include <vector>

namespace kiln::vmm::kvm {
namespace {

// Records accesses; reads return the low byte of the offset in every byte.
class RecordingDevice final : public BusDevice {
 public:
  std::string name() const override { return "recorder"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    reads.push_back(offset);
    for (auto& b : data) b = static_cast<uint8_t>(offset);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    writes.push_back(offset);
    last_write.assign(data.begin(), data.end());
  }
  void save(StateWriter&) const override {}
  void load(SectionReader&) override {}
  std::vector<uint64_t> reads, writes;
  std::vector<uint8_t> last_write;
};

TEST(IoBus, DispatchesByRangeWithDeviceRelativeOffsets) {
  IoBus bus("mmio");
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x1000, 0x100, a));
  ASSERT_TRUE(bus.add(0x2000, 0x10, b));
  uint8_t buf[4];
  bus.read(0x1010, buf);
  EXPECT_EQ(buf[0], 0x10);
  const uint8_t value[2] = {7, 8};
  bus.write(0x200f - 1, value);
  ASSERT_EQ(a->reads, std::vector<uint64_t>{0x10});
  ASSERT_EQ(b->writes, std::vector<uint64_t>{0xe});
  EXPECT_EQ(b->last_write, (std::vector<uint8_t>{7, 8}));
  EXPECT_EQ(bus.unclaimed_accesses(), 0u);
}

TEST(IoBus, UnclaimedReadsFloatHighAndWritesAreDropped) {
  IoBus bus("pio");
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x3f8, 8, a));
  uint8_t buf[4] = {1, 2, 3, 4};
  bus.read(0x80, buf);
  for (uint8_t v : buf) EXPECT_EQ(v, 0xff);
  bus.write(0xcf8, buf);
  EXPECT_EQ(bus.unclaimed_accesses(), 2u);
  EXPECT_TRUE(a->reads.empty());
  EXPECT_TRUE(a->writes.empty());
}

TEST(IoBus, AccessStraddlingARangeEndBelongsToNobody) {
  IoBus bus("mmio");
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x1000, 0x10, a));
  uint8_t buf[4];
  bus.read(0x100e, buf);  // 0x100e..0x1011 crosses the end
  EXPECT_TRUE(a->reads.empty());
  EXPECT_EQ(buf[3], 0xff);
  bus.read(0xfff, buf);  // starts before the range
  EXPECT_TRUE(a->reads.empty());
  bus.read(UINT64_MAX - 1, buf);  // wraps around the address space
  EXPECT_EQ(bus.unclaimed_accesses(), 3u);
}

TEST(IoBus, RejectsOverlappingEmptyAndWrappingRanges) {
  IoBus bus("mmio");
  auto a = std::make_shared<RecordingDevice>();
  ASSERT_TRUE(bus.add(0x1000, 0x100, a));
  EXPECT_FALSE(bus.add(0x10ff, 1, a));
  EXPECT_FALSE(bus.add(0xf00, 0x101, a));
  EXPECT_FALSE(bus.add(0x5000, 0, a));
  EXPECT_FALSE(bus.add(UINT64_MAX, 2, a));
  EXPECT_TRUE(bus.add(0x1100, 0x100, a));  // adjacent is fine
}

}  // namespace
}  // namespace kiln::vmm::kvm
