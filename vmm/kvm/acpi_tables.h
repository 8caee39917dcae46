// ACPI tables for a hardware-reduced PC: RSDP, XSDT, FADT (HW_REDUCED_ACPI),
// MADT (one LAPIC per vCPU, the IOAPIC) and a DSDT declaring the 16550A as
// "PNP0501" (so Linux maps its interrupt: a hardware-reduced platform has no ISA
// IRQs) and each virtio-mmio device as "LNRO0005" — how Linux finds virtio-mmio
// devices when its virtio_mmio module was built without command-line device
// support (Debian's is).
#pragma once

#include "common/result.h"
#include "vmm/kvm/guest_memory.h"

#include <cstdint>
#include <span>
#include <string>

namespace kiln::vmm::kvm {

struct AcpiMmioDevice {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t gsi = 0;
};

/// Where the tables go: the BIOS area Linux also scans for "RSD PTR ".
inline constexpr uint64_t kAcpiTablesStart = 0xe0000;
inline constexpr uint64_t kAcpiTablesEnd = 0x100000;

/// Pure: the DSDT's AML body (a Scope(\_SB) with COM1, then one Device per entry). For tests.
std::string dsdt_aml(std::span<const AcpiMmioDevice> devices);

/// Write all tables into guest RAM; returns the RSDP's guest-physical address.
Result<uint64_t> write_acpi_tables(GuestMemory& memory, uint32_t vcpus, std::span<const AcpiMmioDevice> devices);

}  // namespace kiln::vmm::kvm
