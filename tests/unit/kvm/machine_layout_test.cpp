// Where a Machine puts its virtio devices: the console first, then one slot per
// disk, each with the next MMIO window and interrupt line — the same for boot and
// restore, and what the ACPI table and the state file's device list describe.
#include "vmm/kvm/kvm_vm.h"
#include "vmm/kvm/machine.h"

#include <gtest/gtest.h>

namespace kiln::vmm::kvm {
namespace {

TEST(MachineLayout, EachDiskTakesTheNextSlotAndInterrupt) {
  auto devices = Machine::acpi_devices(2);
  ASSERT_EQ(devices.size(), 3u);
  for (uint32_t i = 0; i < devices.size(); ++i) {
    EXPECT_EQ(devices[i].base, layout::kVirtioMmioBase + i * layout::kVirtioMmioSize);
    EXPECT_EQ(devices[i].size, layout::kVirtioMmioSize);
    EXPECT_EQ(devices[i].gsi, layout::kVirtioFirstIrq + i);
  }
  EXPECT_EQ(Machine::acpi_devices().size(), 1u) << "without disks: the agent's console only";
}

TEST(MachineLayout, StateSectionsNameEveryDevice) {
  EXPECT_EQ(Machine::device_sections(), (std::vector<std::string>{"dev.serial", "dev.i8042", "dev.virtio0"}));
  EXPECT_EQ(Machine::device_sections(kMaxDisks).back(), "dev.virtio" + std::to_string(kMaxDisks));
}

}  // namespace
}  // namespace kiln::vmm::kvm
