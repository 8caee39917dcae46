// virtio-blk against a real temporary image file, as Linux's virtio_blk issues requests:
// header | data | status, in separate descriptors or packed together, direct or indirect.
#include "vmm/kvm/virtio/virtio_blk.h"

#include "tests/unit/virtio/guest_driver.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/virtio_blk.h>
#include <stdlib.h>
#include <unistd.h>

namespace kiln::vmm::kvm {
namespace {

using testing::Buf;
using testing::GuestRing;

constexpr uint64_t kSectors = 64;
constexpr uint64_t kHdr = 0x20000, kData = 0x30000, kStatus = 0x2f000;

class TempImage {
 public:
  explicit TempImage(uint64_t bytes) {
    char tmpl[] = "/tmp/kiln-virtio-blk-XXXXXX";
    fd_ = UniqueFd(::mkstemp(tmpl));
    path_ = tmpl;
    EXPECT_TRUE(fd_.valid());
    std::string content(bytes, '\0');
    for (uint64_t i = 0; i < bytes; ++i) content[i] = static_cast<char>('a' + (i / 512) % 26);
    EXPECT_EQ(::pwrite(fd_.get(), content.data(), content.size(), 0), static_cast<ssize_t>(bytes));
  }
  ~TempImage() { ::unlink(path_.c_str()); }
  UniqueFd open(bool read_only) const { return UniqueFd(::open(path_.c_str(), read_only ? O_RDONLY : O_RDWR)); }
  std::string read(uint64_t off, size_t len) const {
    std::string s(len, '\0');
    EXPECT_EQ(::pread(fd_.get(), s.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
    return s;
  }

 private:
  UniqueFd fd_;
  std::string path_;
};

class BlkTest : public ::testing::Test {
 protected:
  explicit BlkTest(bool read_only = false) : mem(testing::make_memory()), image(kSectors * 512 + 100) {
    auto dev = VirtioBlk::create(image.open(read_only), read_only, "kiln-test-disk");
    EXPECT_TRUE(dev) << dev.error().message;
    blk = dev->get();
    mmio = std::make_unique<VirtioMmio>(mem, irq, std::move(dev).value());
    drv = std::make_unique<testing::MmioDriver>(*mmio);
    EXPECT_TRUE(drv->negotiate((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BLK_F_FLUSH) |
                               (1ull << 28) | (read_only ? 1ull << VIRTIO_BLK_F_RO : 0)));
    drv->setup_queue(0, ring);
    drv->driver_ok();
  }
  void header(uint32_t type, uint64_t sector) {
    virtio_blk_outhdr h{type, 0, sector};
    ASSERT_TRUE(mem.write(kHdr, &h, sizeof h));
  }
  /// Post a request, notify, return (status byte, used length).
  std::pair<uint8_t, uint32_t> run(const std::vector<Buf>& bufs, uint64_t status_at = kStatus) {
    const uint8_t poison = 0xee;
    EXPECT_TRUE(mem.write(status_at, &poison, 1));
    ring.add(bufs);
    drv->notify(0);
    auto used = ring.pop_used();
    EXPECT_TRUE(used);
    uint8_t status = 0;
    EXPECT_TRUE(mem.read(status_at, &status, 1));
    return {status, used ? used->len : 0};
  }
  std::pair<uint8_t, uint32_t> simple(uint32_t type, uint64_t sector, uint32_t len, bool data_writable) {
    header(type, sector);
    std::vector<Buf> bufs{{kHdr, 16}};
    if (len > 0) bufs.push_back({kData, len, data_writable});
    bufs.push_back({kStatus, 1, true});
    return run(bufs);
  }

  GuestMemory mem;
  TempImage image;
  testing::CountingIrq irq;
  GuestRing ring{mem, 0x1000, 64};
  VirtioBlk* blk = nullptr;
  std::unique_ptr<VirtioMmio> mmio;
  std::unique_ptr<testing::MmioDriver> drv;
};

TEST_F(BlkTest, CapacityAndFeatures) {
  EXPECT_EQ(drv->read(VIRTIO_MMIO_DEVICE_ID), 2u);
  EXPECT_EQ(drv->config<uint64_t>(0), kSectors);  // the trailing partial sector is not exposed
  EXPECT_EQ(drv->config<uint32_t>(12), 254u);     // seg_max
  const uint64_t f = drv->device_features();
  EXPECT_NE(f & (1ull << VIRTIO_BLK_F_FLUSH), 0u);
  EXPECT_EQ(f & (1ull << VIRTIO_BLK_F_RO), 0u);
}

TEST_F(BlkTest, ReadsSectors) {
  auto [status, len] = simple(VIRTIO_BLK_T_IN, 3, 1024, true);
  EXPECT_EQ(status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(len, 1025u);
  EXPECT_EQ(testing::read_string(mem, kData, 1024), image.read(3 * 512, 1024));
  EXPECT_GT(irq.pulses, 0);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_INTERRUPT_STATUS), 1u);
  drv->write(VIRTIO_MMIO_INTERRUPT_ACK, 1);
  EXPECT_EQ(drv->read(VIRTIO_MMIO_INTERRUPT_STATUS), 0u);
}

TEST_F(BlkTest, WritesSectorsAndFlushes) {
  const std::string data(1024, 'Z');
  ASSERT_TRUE(mem.write(kData, data.data(), data.size()));
  auto [status, len] = simple(VIRTIO_BLK_T_OUT, kSectors - 2, 1024, false);
  EXPECT_EQ(status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(len, 1u);
  EXPECT_EQ(image.read((kSectors - 2) * 512, 1024), data);
  EXPECT_EQ(simple(VIRTIO_BLK_T_FLUSH, 0, 0, false).first, VIRTIO_BLK_S_OK);
}

TEST_F(BlkTest, OutOfRangeIsAnIoError) {
  EXPECT_EQ(simple(VIRTIO_BLK_T_IN, kSectors, 512, true).first, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(simple(VIRTIO_BLK_T_IN, kSectors - 1, 1024, true).first, VIRTIO_BLK_S_IOERR);  // straddles the end
  EXPECT_EQ(simple(VIRTIO_BLK_T_OUT, ~0ull / 512, 512, false).first, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(simple(VIRTIO_BLK_T_OUT, ~0ull, 512, false).first, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(simple(VIRTIO_BLK_T_IN, 0, 100, true).first, VIRTIO_BLK_S_IOERR);  // not whole sectors
  EXPECT_EQ(image.read(0, 512), std::string(512, 'a'));
}

TEST_F(BlkTest, GetIdAndUnsupported) {
  auto [status, len] = simple(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES, true);
  EXPECT_EQ(status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(len, VIRTIO_BLK_ID_BYTES + 1u);
  EXPECT_EQ(testing::read_string(mem, kData, 14), "kiln-test-disk");
  EXPECT_EQ(simple(VIRTIO_BLK_T_DISCARD, 0, 16, false).first, VIRTIO_BLK_S_UNSUPP);
}

TEST_F(BlkTest, AnyDescriptorLayout) {
  // The header split over two descriptors, the data over two, the status byte packed
  // at the end of the last data descriptor: the device must not assume framing.
  header(VIRTIO_BLK_T_IN, 5);
  auto [status, len] = run({{kHdr, 10}, {kHdr + 10, 6}, {kData, 300, true}, {kData + 300, 213, true}},
                           kData + 512);
  EXPECT_EQ(status, VIRTIO_BLK_S_OK);
  EXPECT_EQ(len, 513u);
  EXPECT_EQ(testing::read_string(mem, kData, 512), image.read(5 * 512, 512));
}

TEST_F(BlkTest, IndirectRequest) {
  header(VIRTIO_BLK_T_IN, 7);
  constexpr uint64_t table = 0x28000;
  ring.write_desc(table, kHdr, 16, testing::kNext, 1);
  ring.write_desc(table + 16, kData, 512, testing::kNext | testing::kWrite, 2);
  ring.write_desc(table + 32, kStatus, 1, testing::kWrite, 0);
  ring.set_desc(40, table, 48, testing::kIndirect, 0);
  ring.publish(40);
  drv->notify(0);
  auto used = ring.pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->id, 40u);
  EXPECT_EQ(testing::read_string(mem, kData, 512), image.read(7 * 512, 512));
}

TEST_F(BlkTest, MalformedRequestsGetAnErrorNotACrash) {
  // No status byte at all: dropped with length 0.
  header(VIRTIO_BLK_T_IN, 0);
  ring.add({{kHdr, 16}});
  drv->notify(0);
  auto used = ring.pop_used();
  ASSERT_TRUE(used);
  EXPECT_EQ(used->len, 0u);
  // A short header: IOERR in the status byte.
  EXPECT_EQ(run({{kHdr, 8}, {kStatus, 1, true}}).first, VIRTIO_BLK_S_IOERR);
  // Still serving good requests.
  EXPECT_EQ(simple(VIRTIO_BLK_T_IN, 1, 512, true).first, VIRTIO_BLK_S_OK);
}

class ReadOnlyBlkTest : public BlkTest {
 protected:
  ReadOnlyBlkTest() : BlkTest(true) {}
};

TEST_F(ReadOnlyBlkTest, RefusesWrites) {
  EXPECT_NE(drv->device_features() & (1ull << VIRTIO_BLK_F_RO), 0u);
  ASSERT_TRUE(mem.write(kData, std::string(512, 'Q').data(), 512));
  EXPECT_EQ(simple(VIRTIO_BLK_T_OUT, 0, 512, false).first, VIRTIO_BLK_S_IOERR);
  EXPECT_EQ(image.read(0, 512), std::string(512, 'a'));
  EXPECT_EQ(simple(VIRTIO_BLK_T_IN, 0, 512, true).first, VIRTIO_BLK_S_OK);
}

TEST(BlkCreate, RejectsNonFiles) {
  auto dev = VirtioBlk::create(UniqueFd(::open("/tmp", O_RDONLY | O_DIRECTORY)), true);
  EXPECT_FALSE(dev);
}

}  // namespace
}  // namespace kiln::vmm::kvm
