// Where a Machine puts its virtio devices: the agent's console, then the share
// channel's console, then one slot per disk, each with the next MMIO window and
// interrupt line — the same for boot and restore, and what the ACPI table and the
// state file's device list describe.
#include "vmm/kvm/kvm_vm.h"
#include "vmm/kvm/machine.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

TEST(MachineLayout, EachDeviceTakesTheNextSlotAndInterrupt) {
  auto devices = Machine::acpi_devices(2);
  ASSERT_EQ(devices.size(), 4u) << "two consoles and two disks";
  for (uint32_t i = 0; i < devices.size(); ++i) {
    EXPECT_EQ(devices[i].base, layout::kVirtioMmioBase + i * layout::kVirtioMmioSize);
    EXPECT_EQ(devices[i].size, layout::kVirtioMmioSize);
    EXPECT_EQ(devices[i].gsi, layout::kVirtioFirstIrq + i);
  }
  EXPECT_EQ(Machine::acpi_devices().size(), 2u) << "without disks: the agent's and the share channel's consoles";
  // The last disk's interrupt must still be an IOAPIC pin (24 of them).
  EXPECT_LT(Machine::acpi_devices(kMaxDisks).back().gsi, 24u);
}

TEST(MachineLayout, StateSectionsNameEveryDevice) {
  EXPECT_EQ(Machine::device_sections(),
            (std::vector<std::string>{"dev.serial", "dev.i8042", "dev.virtio0", "dev.virtio1"}));
  EXPECT_EQ(Machine::device_sections(1).back(), "dev.virtio2") << "the first disk comes after both consoles";
  EXPECT_EQ(Machine::device_sections(kMaxDisks).back(), "dev.virtio" + std::to_string(kMaxDisks + 1));
}

}  // namespace
}  // namespace kiln::vmm::kvm
