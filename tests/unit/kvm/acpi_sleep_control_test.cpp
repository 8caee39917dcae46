#include "vmm/kvm/acpi_sleep_control.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

struct Sleep {
  int power_offs = 0;
  AcpiSleepControl dev{[this] { ++power_offs; }};
  void out(uint64_t offset, uint8_t v) { dev.write(offset, {&v, 1}); }
};

TEST(AcpiSleepControl, SleepEnableWithTheS5TypePowersOff) {
  Sleep s;
  s.out(0, 0x34);  // what Linux's acpi_hw_extended_sleep() writes for S5: SLP_EN | 5 << 2
  EXPECT_EQ(s.power_offs, 1);
}

TEST(AcpiSleepControl, OtherSleepStatesWritesAndWidthsAreIgnored) {
  Sleep s;
  s.out(0, 0x14);  // S5 type without SLP_EN
  s.out(0, 0x2c);  // SLP_EN with S3
  s.out(1, 0x34);  // the status register
  uint8_t wide[2] = {0x34, 0};
  s.dev.write(0, wide);
  EXPECT_EQ(s.power_offs, 0);
  uint8_t status = 0xff;
  s.dev.read(1, {&status, 1});
  EXPECT_EQ(status, 0);
}

}  // namespace
}  // namespace kiln::vmm::kvm
