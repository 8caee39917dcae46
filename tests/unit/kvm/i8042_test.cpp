#include "vmm/kvm/i8042.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

struct Ps2 {
  int resets = 0;
  I8042 dev{[this] { ++resets; }};
  uint8_t in(uint64_t off) {
    uint8_t v = 0xaa;
    dev.read(off, {&v, 1});
    return v;
  }
  void out(uint64_t off, uint8_t v) { dev.write(off, {&v, 1}); }
};

TEST(I8042, CommandByteReadsBackWhatWasWritten) {
  Ps2 p;
  EXPECT_EQ(p.in(4) & 0x01, 0);  // nothing to read
  p.out(4, 0x60);
  p.out(0, 0x47);
  p.out(4, 0x20);
  EXPECT_EQ(p.in(4) & 0x01, 1);  // output buffer full
  EXPECT_EQ(p.in(0), 0x47);
  EXPECT_EQ(p.in(4) & 0x01, 0);
}

TEST(I8042, SelfTestAndPortTestsPass) {
  Ps2 p;
  p.out(4, 0xaa);
  EXPECT_EQ(p.in(0), 0x55);
  p.out(4, 0xab);
  EXPECT_EQ(p.in(0), 0x00);
}

TEST(I8042, PulsingResetStopsTheMachine) {
  Ps2 p;
  p.out(4, 0xd1);  // a data write after this is the output port, not a reset
  p.out(0, 0xfe);
  EXPECT_EQ(p.resets, 0);
  p.out(4, 0xfe);
  EXPECT_EQ(p.resets, 1);
}

TEST(I8042, AFloodOfCommandsCannotGrowTheQueueWithoutBound) {
  Ps2 p;
  for (int i = 0; i < 100000; ++i) p.out(4, 0x20);
  int n = 0;
  while ((p.in(4) & 0x01) && n < 1000) {
    p.in(0);
    ++n;
  }
  EXPECT_LE(n, 16);
}

}  // namespace
}  // namespace kiln::vmm::kvm
