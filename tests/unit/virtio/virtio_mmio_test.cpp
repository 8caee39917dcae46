// The virtio-mmio transport's registers, feature negotiation and failure semantics,
// with a real device (virtio-blk over a temp file) behind it.
#include "vmm/kvm/virtio/virtio_mmio.h"

#include "tests/unit/virtio/guest_driver.h"
#include "vmm/kvm/state_stream.h"
#include "vmm/kvm/virtio/virtio_blk.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <unistd.h>

#include <random>

namespace kiln::vmm::kvm {
namespace {

using testing::GuestRing;
constexpr uint64_t kVersion1 = 1ull << VIRTIO_F_VERSION_1;
constexpr uint64_t kHdr = 0x20000, kData = 0x30000, kStatus = 0x2f000;

class MmioTest : public ::testing::Test {
 protected:
  MmioTest() : mem(testing::make_memory()) {
    char tmpl[] = "/tmp/kiln-virtio-mmio-XXXXXX";
    UniqueFd fd(::mkstemp(tmpl));
    path = tmpl;
    EXPECT_EQ(::ftruncate(fd.get(), 64 * 512), 0);
    attach(std::move(fd));
  }
  ~MmioTest() override { ::unlink(path.c_str()); }
  void attach(UniqueFd fd) {
    auto dev = VirtioBlk::create(std::move(fd), false);
    EXPECT_TRUE(dev);
    mmio = std::make_unique<VirtioMmio>(mem, irq, std::move(dev).value());
    drv = std::make_unique<testing::MmioDriver>(*mmio);
  }
  void bring_up(GuestRing& r) {
    ASSERT_TRUE(drv->negotiate(kVersion1));
    drv->setup_queue(0, r);
    drv->driver_ok();
    ASSERT_EQ(drv->status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0u);
  }
  /// One read request; true if it completed with status OK.
  bool request_ok(GuestRing& r) {
    virtio_blk_outhdr h{VIRTIO_BLK_T_IN, 0, 1};
    EXPECT_TRUE(mem.write(kHdr, &h, sizeof h));
    const uint8_t poison = 0xee;
    EXPECT_TRUE(mem.write(kStatus, &poison, 1));
    r.add({{kHdr, 16}, {kData, 512, true}, {kStatus, 1, true}});
    drv->notify(0);
    uint8_t status = 0xff;
    EXPECT_TRUE(mem.read(kStatus, &status, 1));
    return r.pop_used().has_value() && status == VIRTIO_BLK_S_OK;
  }
  bool needs_reset() { return (drv->status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0; }

  GuestMemory mem;
  std::string path;
  testing::CountingIrq irq;
  std::unique_ptr<VirtioMmio> mmio;
  std::unique_ptr<testing::MmioDriver> drv;
};

TEST_F(MmioTest, IdentificationRegisters) {
  EXPECT_EQ(drv->read(VIRTIO_MMIO_MAGIC_VALUE), 0x74726976u);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_VERSION), 2u);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_DEVICE_ID), 2u);
  EXPECT_NE(drv->read(VIRTIO_MMIO_VENDOR_ID), 0u);
  drv->write(VIRTIO_MMIO_QUEUE_SEL, 0);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_QUEUE_NUM_MAX), 256u);
  drv->write(VIRTIO_MMIO_QUEUE_SEL, 1);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_QUEUE_NUM_MAX), 0u);  // no such queue
  const uint64_t f = drv->device_features();
  EXPECT_NE(f & kVersion1, 0u);
  EXPECT_NE(f & (1ull << 28), 0u);  // indirect descriptors
  drv->write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_DEVICE_FEATURES), 0u);
}

TEST_F(MmioTest, FeatureNegotiation) {
  EXPECT_FALSE(drv->negotiate(0));                        // a legacy driver: refused
  EXPECT_FALSE(drv->negotiate(kVersion1 | (1ull << 50))); // a bit the device never offered
  EXPECT_TRUE(drv->negotiate(kVersion1 | (1ull << VIRTIO_BLK_F_FLUSH)));
  // Features are frozen after FEATURES_OK.
  drv->write(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  drv->write(VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
  GuestRing r(mem, 0x1000, 32);
  drv->setup_queue(0, r);
  drv->driver_ok();
  EXPECT_FALSE(needs_reset());
  EXPECT_TRUE(request_ok(r));
}

TEST_F(MmioTest, DriverOkWithoutFeaturesOkNeedsReset) {
  drv->write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  drv->write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
  EXPECT_TRUE(needs_reset());
  EXPECT_EQ(drv->status() & VIRTIO_CONFIG_S_DRIVER_OK, 0u);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_INTERRUPT_STATUS) & 2u, 2u);  // config-change interrupt
  EXPECT_GT(irq.pulses, 0);
}

TEST_F(MmioTest, ClearingStatusBitsNeedsReset) {
  ASSERT_TRUE(drv->negotiate(kVersion1));
  drv->write(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
  EXPECT_TRUE(needs_reset());
}

TEST_F(MmioTest, QueueOutsideRamNeedsResetAndResetRecovers) {
  ASSERT_TRUE(drv->negotiate(kVersion1));
  GuestRing bad(mem, mem.size() - 0x100, 32);
  drv->setup_queue(0, bad);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_QUEUE_READY), 0u);
  EXPECT_TRUE(needs_reset());
  GuestRing good(mem, 0x1000, 32);
  bring_up(good);  // negotiate() starts with a reset
  EXPECT_TRUE(request_ok(good));
}

TEST_F(MmioTest, QueueConfigIsFrozenWhileReady) {
  GuestRing r(mem, 0x1000, 32);
  bring_up(r);
  drv->write(VIRTIO_MMIO_QUEUE_SEL, 0);
  drv->write(VIRTIO_MMIO_QUEUE_NUM, 4);
  drv->write(VIRTIO_MMIO_QUEUE_DESC_LOW, 0xdead000);
  drv->write(VIRTIO_MMIO_QUEUE_USED_HIGH, 0xffffffff);
  EXPECT_TRUE(request_ok(r));
}

TEST_F(MmioTest, AvailIndexJumpNeedsResetAndStopsTheQueue) {
  GuestRing r(mem, 0x1000, 32);
  bring_up(r);
  EXPECT_TRUE(request_ok(r));
  r.set_avail_idx(1000);
  drv->notify(0);
  EXPECT_TRUE(needs_reset());
  EXPECT_FALSE(request_ok(r));  // ignored until reset
  GuestRing fresh(mem, 0x4000, 32);
  bring_up(fresh);
  EXPECT_TRUE(request_ok(fresh));
}

TEST_F(MmioTest, GarbageRegisterTrafficDoesNotBreakTheDevice) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t offset = rng() % 0x140;
    const size_t size = std::array<size_t, 4>{1, 2, 4, 8}[rng() % 4];
    uint8_t bytes[8];
    const uint64_t v = rng();
    std::memcpy(bytes, &v, 8);
    if (rng() % 2 != 0) {
      mmio->write(offset, {bytes, size});
    } else {
      mmio->read(offset, {bytes, size});
    }
  }
  GuestRing r(mem, 0x1000, 32);
  bring_up(r);
  EXPECT_TRUE(request_ok(r));
}

TEST_F(MmioTest, SaveLoadKeepsQueuePositions) {
  GuestRing r(mem, 0x1000, 32);
  bring_up(r);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(request_ok(r));
  drv->write(VIRTIO_MMIO_INTERRUPT_ACK, 1);
  StateWriter w;
  w.begin_section("dev.virtio-blk");
  mmio->save(w);
  w.end_section();
  const std::string file = w.finish();

  attach(UniqueFd(::open(path.c_str(), O_RDWR)));
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader);
  auto section = reader->section("dev.virtio-blk");
  ASSERT_TRUE(section);
  mmio->load(*section);
  ASSERT_TRUE(section->finish());
  EXPECT_NE(drv->status() & VIRTIO_CONFIG_S_DRIVER_OK, 0u);
  EXPECT_TRUE(request_ok(r));  // the ring continues where it was
  EXPECT_EQ(r.used_idx(), 4u);
}

TEST_F(MmioTest, NameDefaultsToTheDevicesAndCanBeOverridden) {
  EXPECT_EQ(mmio->name(), "virtio-blk");
  auto second = VirtioBlk::create(UniqueFd(::open(path.c_str(), O_RDONLY)), true);
  ASSERT_TRUE(second);
  EXPECT_EQ(VirtioMmio(mem, irq, std::move(second).value(), "virtio-blk.1").name(), "virtio-blk.1");
}

TEST(MmioCmdline, LinuxDeviceArgument) {
  EXPECT_EQ(virtio_mmio_cmdline(0xd0000000, 5), "virtio_mmio.device=4K@0xd0000000:5");
}

}  // namespace
}  // namespace kiln::vmm::kvm
