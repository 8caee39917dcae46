#include "vmm/kvm/acpi_tables.h"
#include "vmm/kvm/acpi_sleep_control.h"
#include "vmm/kvm/boot_cpu.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace kiln::vmm::kvm {
namespace {

uint8_t sum(const std::string& s) {
  uint8_t v = 0;
  for (char c : s) v = static_cast<uint8_t>(v + static_cast<uint8_t>(c));
  return v;
}

std::string read(const GuestMemory& m, uint64_t at, size_t n) {
  std::string s(n, '\0');
  EXPECT_TRUE(m.read(at, s.data(), n));
  return s;
}

template <class T>
T field(const std::string& s, size_t at) {
  T v{};
  std::memcpy(&v, s.data() + at, sizeof v);
  return v;
}

TEST(AcpiTables, EveryTableIsReachableFromTheRsdpAndChecksummed) {
  auto mem = GuestMemory::anonymous(16 << 20);
  ASSERT_TRUE(mem);
  AcpiMmioDevice dev{0xd0000000, 0x1000, 5};
  auto rsdp_at = write_acpi_tables(*mem, 2, {&dev, 1});
  ASSERT_TRUE(rsdp_at) << rsdp_at.error().message;
  std::string rsdp = read(*mem, *rsdp_at, 36);
  EXPECT_EQ(rsdp.substr(0, 8), "RSD PTR ");
  EXPECT_EQ(sum(rsdp.substr(0, 20)), 0);
  EXPECT_EQ(sum(rsdp), 0);

  auto table = [&](uint64_t at) {
    std::string header = read(*mem, at, 36);
    return read(*mem, at, field<uint32_t>(header, 4));
  };
  std::string xsdt = table(field<uint64_t>(rsdp, 24));
  EXPECT_EQ(xsdt.substr(0, 4), "XSDT");
  EXPECT_EQ(sum(xsdt), 0);
  ASSERT_EQ(xsdt.size(), 36u + 16);
  std::string fadt = table(field<uint64_t>(xsdt, 36));
  std::string madt = table(field<uint64_t>(xsdt, 44));
  EXPECT_EQ(fadt.substr(0, 4), "FACP");
  EXPECT_EQ(sum(fadt), 0);
  EXPECT_NE(field<uint32_t>(fadt, 112) & (1u << 20), 0u);  // hardware-reduced
  EXPECT_EQ(madt.substr(0, 4), "APIC");
  EXPECT_EQ(sum(madt), 0);
  EXPECT_EQ(madt.size(), 44u + 2 * 8 + 12);  // two LAPICs, one IOAPIC
  std::string dsdt = table(field<uint64_t>(fadt, 140));
  EXPECT_EQ(dsdt.substr(0, 4), "DSDT");
  EXPECT_EQ(sum(dsdt), 0);
  EXPECT_NE(dsdt.find("LNRO0005"), std::string::npos);
  // Power-off: _S5 = {5, 0} and the sleep control/status registers in the FADT.
  EXPECT_NE(dsdt.find(std::string("\x08\\_S5_\x12\x05\x02\x0a\x05\x00", 12)), std::string::npos);
  EXPECT_EQ(fadt[244], 1);  // system I/O
  EXPECT_EQ(field<uint64_t>(fadt, 248), AcpiSleepControl::kPort);
  EXPECT_EQ(field<uint64_t>(fadt, 260), AcpiSleepControl::kPort + 1);
}

TEST(AcpiTables, DsdtDeclaresEachDeviceWithItsWindowAndInterrupt) {
  AcpiMmioDevice devs[] = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}};
  std::string aml = dsdt_aml(devs);
  EXPECT_EQ(aml[0], '\x10');  // ScopeOp
  size_t first = aml.find("V000");
  size_t second = aml.find("V001");
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  // Memory32Fixed carries the base; the extended interrupt descriptor the GSI.
  const char base1[] = {'\x86', '\x09', '\x00', '\x01', '\x00', '\x10', '\x00', '\xd0'};
  EXPECT_NE(aml.find(std::string(base1, sizeof base1)), std::string::npos);
  const char irq1[] = {'\x89', '\x06', '\x00', '\x03', '\x01', '\x06', '\x00', '\x00', '\x00'};
  EXPECT_NE(aml.find(std::string(irq1, sizeof irq1)), std::string::npos);
  // The scope's PkgLength covers the whole body (2-byte encoding here).
  const uint8_t lead = static_cast<uint8_t>(aml[1]);
  ASSERT_EQ(lead >> 6, 1);
  const size_t len = (lead & 0x0f) | (size_t{static_cast<uint8_t>(aml[2])} << 4);
  EXPECT_EQ(len, aml.size() - 1);
}

// A hardware-reduced platform has no legacy PIC, so Linux maps no ISA IRQs: without this
// Device the 8250 driver's built-in ttyS0 (irq 4) cannot request its interrupt and every
// write to /dev/console fails with EIO; only the kernel's polled printk reaches the log.
TEST(AcpiTables, DsdtDeclaresTheSerialPortSoLinuxMapsItsInterrupt) {
  std::string aml = dsdt_aml({});
  size_t com1 = aml.find("COM1");
  ASSERT_NE(com1, std::string::npos);
  EXPECT_EQ(aml.substr(com1 - 3, 2), std::string("\x5b\x82", 2));  // DeviceOp, 1-byte PkgLength
  const size_t end = com1 - 1 + static_cast<uint8_t>(aml[com1 - 1]);
  std::string device = aml.substr(com1, end - com1);
  EXPECT_NE(device.find(std::string("\x08_HID\x0dPNP0501\x00", 14)), std::string::npos);
  // IO(Decode16, 0x3f8, 0x3f8, 1, 8), then Interrupt(Consumer, Edge, ActiveHigh, Exclusive) {4}, end tag.
  const char resources[] = {'\x47', '\x01', '\xf8', '\x03', '\xf8', '\x03', '\x01', '\x08', '\x89', '\x06',
                            '\x00', '\x03', '\x01', '\x04', '\x00', '\x00', '\x00', '\x79', '\x00'};
  EXPECT_NE(device.find(std::string("\x08_CRS\x11\x16\x0a\x13", 9) + std::string(resources, sizeof resources)),
            std::string::npos);
}

TEST(BootTables, IdentityMapCoversTheLowFourGiB) {
  auto mem = GuestMemory::anonymous(16 << 20);
  ASSERT_TRUE(mem);
  ASSERT_TRUE(write_boot_tables(*mem));
  uint64_t pml4 = 0, pdpte3 = 0, pde = 0;
  ASSERT_TRUE(mem->read(0x9000, &pml4, 8));
  EXPECT_EQ(pml4 & ~0xfffull, 0xa000u);
  ASSERT_TRUE(mem->read(0xa000 + 3 * 8, &pdpte3, 8));
  EXPECT_EQ(pdpte3 & 1, 1u);
  uint64_t pd3 = pdpte3 & ~0xfffull;
  ASSERT_TRUE(mem->read(pd3 + 511 * 8, &pde, 8));
  EXPECT_EQ(pde & ~0xfffull, (4ull << 30) - (2ull << 20));  // last 2 MiB below 4 GiB
  EXPECT_EQ(pde & 0x83, 0x83u);                             // present, writable, 2 MiB page
}

}  // namespace
}  // namespace kiln::vmm::kvm
