#include "vmm/kvm/vm_state.h"

#include "vmm/kvm/state_stream.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace kiln::vmm::kvm {
namespace {

/// An fd that is not KVM: every KVM ioctl on it fails with ENOTTY.
struct NotKvm {
  int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  ~NotKvm() { ::close(fd); }
};

VmState sample() {
  VmState s;
  s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
  s.pic_master.chip.pic.irr = 0x11;
  s.pic_master.chip.pic.imr = 0xfb;
  s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
  s.pic_slave.chip.pic.irq_base = 0x28;
  s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
  s.ioapic.chip.ioapic.base_address = 0xfec00000;
  s.ioapic.chip.ioapic.redirtbl[4].bits = 0x10025;
  s.pit.channels[0].count = 0x4a9;
  s.pit.channels[0].mode = 2;
  s.pit.flags = KVM_PIT_FLAGS_SPEAKER_DATA_ON;
  s.clock.clock = 123456789;
  s.clock.flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME;
  s.clock.realtime = 1700000000000000000ull;
  s.clock.host_tsc = 987654321;
  return s;
}

std::string file_with(const VmState& s) {
  StateWriter w;
  save_vm_section(w, s);
  return w.finish();
}

template <class T>
bool same(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

TEST(VmStateSection, RoundTrips) {
  const VmState s = sample();
  const std::string file = file_with(s);
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader.ok()) << reader.error().message;
  auto back = load_vm_section(*reader);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(same(back->pic_master, s.pic_master));
  EXPECT_TRUE(same(back->pic_slave, s.pic_slave));
  EXPECT_TRUE(same(back->ioapic, s.ioapic));
  EXPECT_TRUE(same(back->pit, s.pit));
  EXPECT_EQ(back->clock.clock, s.clock.clock);
  EXPECT_EQ(back->clock.flags, s.clock.flags);
  EXPECT_EQ(back->clock.realtime, s.clock.realtime);
  EXPECT_EQ(back->clock.host_tsc, s.clock.host_tsc);
}

Error load_error(const VmState& s) {
  const std::string file = file_with(s);
  auto reader = StateReader::parse(file);
  if (!reader.ok()) return reader.error();
  auto back = load_vm_section(*reader);
  if (back.ok()) return Error{"<loaded>"};
  return back.error();
}

TEST(VmStateSection, RejectsSwappedChips) {
  VmState s = sample();
  std::swap(s.pic_master, s.pic_slave);
  EXPECT_NE(load_error(s).message.find("chip id"), std::string::npos) << load_error(s).message;
}

TEST(VmStateSection, RejectsUnknownPitModeAndFlags) {
  VmState s = sample();
  s.pit.channels[1].mode = 9;
  EXPECT_NE(load_error(s).message.find("mode 9"), std::string::npos);
  s = sample();
  s.pit.flags = 0x80;
  EXPECT_NE(load_error(s).message.find("PIT flags"), std::string::npos);
}

TEST(VmStateSection, RejectsUnknownClockFlags) {
  VmState s = sample();
  s.clock.flags = 1u << 9;
  EXPECT_NE(load_error(s).message.find("clock flags"), std::string::npos);
}

TEST(VmStateSection, RejectsTruncatedAndMissingSections) {
  StateWriter w;
  w.begin_section("vm");
  w.pod(sample().pic_master);
  w.end_section();
  const std::string file = w.finish();
  auto reader = StateReader::parse(file);
  ASSERT_TRUE(reader.ok());
  auto back = load_vm_section(*reader);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.error().message.find("vm"), std::string::npos);

  StateWriter empty;
  empty.begin_section("vcpu.0");
  empty.end_section();
  const std::string other = empty.finish();
  auto r2 = StateReader::parse(other);
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(load_vm_section(*r2).ok());
}

TEST(VmStateIoctls, FailCleanlyOnANonKvmFd) {
  EXPECT_FALSE(save_vm(NotKvm().fd).ok());
  EXPECT_FALSE(restore_vm(NotKvm().fd, sample()).ok());
}

}  // namespace
}  // namespace kiln::vmm::kvm
