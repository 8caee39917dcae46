#include "vmm/kvm/acpi_tables.h"

#include "vmm/kvm/acpi_sleep_control.h"
#include "vmm/kvm/serial_8250.h"

#include <cstring>

namespace kiln::vmm::kvm {
namespace {

constexpr uint64_t kIoApicAddress = 0xfec00000;
constexpr uint64_t kLocalApicAddress = 0xfee00000;
constexpr uint32_t kFadtHwReduced = 1u << 20;
constexpr uint16_t kBootArch8042 = 1u << 1, kBootArchNoVga = 1u << 2, kBootArchNoCmosRtc = 1u << 5;

void put(std::string& s, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_at(std::string& s, size_t at, uint64_t v, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint8_t checksum(const std::string& s) {
  uint8_t sum = 0;
  for (char c : s) sum = static_cast<uint8_t>(sum + static_cast<uint8_t>(c));
  return static_cast<uint8_t>(-sum);
}

/// The 36-byte System Description Table header; length and checksum fixed by finish().
std::string sdt_header(const char* signature, uint8_t revision) {
  std::string s(signature, 4);
  put(s, 0, 4);  // length
  s.push_back(static_cast<char>(revision));
  s.push_back(0);  // checksum
  s.append("KILN  ", 6);
  s.append("KILNVMM ", 8);
  put(s, 1, 4);  // OEM revision
  s.append("KILN", 4);
  put(s, 1, 4);  // creator revision
  return s;
}

std::string finish(std::string table) {
  put_at(table, 4, table.size(), 4);
  table[9] = 0;
  table[9] = static_cast<char>(checksum(table));
  return table;
}

/// AML PkgLength for a body of `body` bytes (the encoding counts its own bytes).
std::string pkg_length(size_t body) {
  std::string out;
  if (body + 1 < 0x40) {
    out.push_back(static_cast<char>(body + 1));
    return out;
  }
  for (size_t extra = 1; extra <= 3; ++extra) {
    size_t total = body + 1 + extra;
    if (total < (size_t{1} << (4 + 8 * extra))) {
      out.push_back(static_cast<char>((extra << 6) | (total & 0x0f)));
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<char>((total >> (4 + 8 * i)) & 0xff));
      return out;
    }
  }
  return out;  // unreachable for tables this small
}

std::string aml_name(const std::string& name, const std::string& value) { return "\x08" + name + value; }
std::string aml_string(const char* s) { return std::string("\x0d") + s + std::string(1, '\0'); }
std::string aml_dword(uint32_t v) {
  std::string s("\x0c");
  put(s, v, 4);
  return s;
}

/// Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {gsi}: an extended interrupt descriptor.
std::string interrupt_resource(uint32_t gsi) {
  std::string res("\x89\x06\x00\x03\x01", 5);  // length 6; consumer | edge; one interrupt
  put(res, gsi, 4);
  return res;
}

/// A _CRS Buffer: the resource descriptors, then the end tag (checksum 0 = "not checked").
std::string resource_buffer(const std::string& descriptors) {
  std::string res = descriptors + std::string("\x79\x00", 2);
  std::string body = "\x0a" + std::string(1, static_cast<char>(res.size())) + res;
  return "\x11" + pkg_length(body.size()) + body;
}

/// Device(name) { _HID, _UID, _CRS }.
std::string device_aml(const std::string& name, const char* hid, uint32_t uid, const std::string& crs) {
  std::string body =
      name + aml_name("_HID", aml_string(hid)) + aml_name("_UID", aml_dword(uid)) + aml_name("_CRS", crs);
  return std::string("\x5b\x82") + pkg_length(body.size()) + body;
}

std::string virtio_mmio_aml(size_t index, const AcpiMmioDevice& d) {
  std::string memory("\x86\x09\x00\x01", 4);  // Memory32Fixed(ReadWrite, base, size)
  put(memory, d.base, 4);
  put(memory, d.size, 4);
  const char hex[] = "0123456789ABCDEF";
  std::string name = "V";
  name += hex[(index >> 8) & 0xf];
  name += hex[(index >> 4) & 0xf];
  name += hex[index & 0xf];
  return device_aml(name, "LNRO0005", static_cast<uint32_t>(index),
                    resource_buffer(memory + interrupt_resource(d.gsi)));
}

/// COM1 as "PNP0501" (a 16550A) with its ports and GSI. A hardware-reduced platform has no
/// legacy PIC, so Linux maps no ISA IRQs: the 8250 driver's built-in "ttyS0 at 0x3f8, irq 4"
/// cannot request IRQ 4, and opening ttyS0 fails (writes to /dev/console get EIO). Declared
/// here, the port is taken over by 8250_pnp with the IRQ Linux mapped for this GSI.
std::string serial_aml() {
  std::string io("\x47\x01", 2);  // IO(Decode16, min, max, alignment 1, length)
  put(io, Serial8250::kPort, 2);
  put(io, Serial8250::kPort, 2);
  io.push_back(1);
  io.push_back(static_cast<char>(Serial8250::kPorts));
  return device_aml("COM1", "PNP0501", 0, resource_buffer(io + interrupt_resource(Serial8250::kIrq)));
}

/// Name(\_S5, Package() {5, 0}): the sleep type Linux writes to power off.
std::string s5_aml() {
  std::string body = "\x02\x0a";  // two elements; BytePrefix
  body.push_back(static_cast<char>(AcpiSleepControl::kS5SleepType));
  body.push_back(0);  // ZeroOp (SLP_TYPb, unused on hardware-reduced platforms)
  return aml_name("\\_S5_", "\x12" + pkg_length(body.size()) + body);
}

/// A Generic Address Structure for one byte-wide I/O port.
void put_io_port_gas(std::string& table, size_t at, uint64_t port) {
  table[at] = 1;      // system I/O space
  table[at + 1] = 8;  // register bit width
  table[at + 2] = 0;  // bit offset
  table[at + 3] = 1;  // byte access
  put_at(table, at + 4, port, 8);
}

}  // namespace

std::string dsdt_aml(std::span<const AcpiMmioDevice> devices) {
  std::string body = "\\_SB_" + serial_aml();
  for (size_t i = 0; i < devices.size(); ++i) body += virtio_mmio_aml(i, devices[i]);
  return "\x10" + pkg_length(body.size()) + body;
}

Result<uint64_t> write_acpi_tables(GuestMemory& memory, uint32_t vcpus, std::span<const AcpiMmioDevice> devices) {
  std::string dsdt = finish(sdt_header("DSDT", 2) + s5_aml() + dsdt_aml(devices));

  std::string madt = sdt_header("APIC", 4);
  put(madt, kLocalApicAddress, 4);
  put(madt, 1, 4);  // PCAT_COMPAT: there are 8259s too
  for (uint32_t i = 0; i < vcpus; ++i) {
    madt.push_back(0);  // processor local APIC, 8 bytes
    madt.push_back(8);
    madt.push_back(static_cast<char>(i));  // ACPI processor uid
    madt.push_back(static_cast<char>(i));  // APIC id
    put(madt, 1, 4);                       // enabled
  }
  madt += "\x01\x0c";  // IOAPIC
  madt.push_back(0);   // id
  madt.push_back(0);
  put(madt, kIoApicAddress, 4);
  put(madt, 0, 4);  // GSI base
  madt = finish(madt);

  // Layout: RSDP, then XSDT, FADT, MADT, DSDT, each 16-byte aligned.
  auto align = [](uint64_t v) { return (v + 15) & ~uint64_t{15}; };
  const uint64_t rsdp_at = kAcpiTablesStart;
  const uint64_t xsdt_at = rsdp_at + 48;
  const uint64_t xsdt_len = 36 + 2 * 8;
  const uint64_t fadt_at = align(xsdt_at + xsdt_len);
  const uint64_t fadt_len = 276;
  const uint64_t madt_at = align(fadt_at + fadt_len);
  const uint64_t dsdt_at = align(madt_at + madt.size());
  if (dsdt_at + dsdt.size() > kAcpiTablesEnd) return make_error("ACPI tables do not fit below 1 MiB");

  std::string fadt = sdt_header("FACP", 6);
  fadt.resize(fadt_len, '\0');
  put_at(fadt, 40, dsdt_at, 4);  // DSDT
  put_at(fadt, 109, kBootArch8042 | kBootArchNoVga | kBootArchNoCmosRtc, 2);
  put_at(fadt, 112, kFadtHwReduced, 4);
  fadt[131] = 1;                  // FADT minor version (6.1)
  put_at(fadt, 140, dsdt_at, 8);  // X_DSDT
  // Hardware-reduced power-off (with _S5 in the DSDT): acpi_sleep_control.h.
  put_io_port_gas(fadt, 244, AcpiSleepControl::kPort);      // SLEEP_CONTROL_REG
  put_io_port_gas(fadt, 256, AcpiSleepControl::kPort + 1);  // SLEEP_STATUS_REG
  fadt = finish(fadt);

  std::string xsdt = sdt_header("XSDT", 1);
  put(xsdt, fadt_at, 8);
  put(xsdt, madt_at, 8);
  xsdt = finish(xsdt);

  std::string rsdp("RSD PTR ", 8);
  rsdp.push_back(0);  // checksum over the first 20 bytes
  rsdp.append("KILN  ", 6);
  rsdp.push_back(2);  // revision: ACPI 2.0+
  put(rsdp, 0, 4);    // no RSDT
  put(rsdp, 36, 4);
  put(rsdp, xsdt_at, 8);
  rsdp.push_back(0);  // extended checksum
  rsdp.append(3, '\0');
  rsdp[8] = static_cast<char>(checksum(rsdp.substr(0, 20)));
  rsdp[32] = static_cast<char>(checksum(rsdp));

  for (const auto& [at, table] : {std::pair{rsdp_at, &rsdp}, std::pair{xsdt_at, &xsdt}, std::pair{fadt_at, &fadt},
                                  std::pair{madt_at, &madt}, std::pair{dsdt_at, &dsdt}})
    if (!memory.write(at, table->data(), table->size())) return make_error("guest RAM too small for ACPI tables");
  return rsdp_at;
}

}  // namespace kiln::vmm::kvm
