#include "vmm/kvm/boot_cpu.h"

#include "vmm/kvm/bzimage.h"

#include "vmm/kvm/linux_kvm.h"
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace kiln::vmm::kvm {
namespace {

constexpr uint64_t kGdt = 0x500;
constexpr uint64_t kIdt = 0x520;
constexpr uint64_t kPml4 = 0x9000;
constexpr uint64_t kPdpt = 0xa000;
constexpr uint64_t kPd = 0xb000;        // 4 pages: 4 GiB of 2 MiB pages
constexpr uint64_t kMappedGiB = 4;

constexpr uint16_t kBootCs = 0x10;
constexpr uint16_t kBootDs = 0x18;
constexpr uint16_t kBootTss = 0x20;

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

constexpr uint64_t kPtePresentRw = 0x3;
constexpr uint64_t kPteHuge = 0x80;

// LAPIC register offsets and delivery modes.
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kDeliveryExtInt = 7u << 8;
constexpr uint32_t kDeliveryNmi = 4u << 8;

uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000) << 32) | ((uint64_t{flags} & 0xf0ff) << 40) |
         ((uint64_t{limit} & 0x000f0000) << 32) | ((uint64_t{base} & 0x00ffffff) << 16) | (uint64_t{limit} & 0xffff);
}

kvm_segment segment_from(uint64_t entry, uint16_t selector) {
  kvm_segment s{};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = (entry >> 55) & 1;
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = selector;
  s.type = (entry >> 40) & 0xf;
  s.s = (entry >> 44) & 1;
  s.dpl = (entry >> 45) & 3;
  s.present = (entry >> 47) & 1;
  s.avl = (entry >> 52) & 1;
  s.l = (entry >> 53) & 1;
  s.db = (entry >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

const uint64_t kGdtEntries[] = {
    0,                                 // null
    0,                                 // unused: __BOOT_CS is 0x10
    gdt_entry(0xa09b, 0, 0xfffff),     // 0x10 code, 64-bit
    gdt_entry(0xc093, 0, 0xfffff),     // 0x18 data
    gdt_entry(0x808b, 0, 0xfffff),     // 0x20 TSS (busy): VMX insists on a usable TR
};

}  // namespace

Result<void> write_boot_tables(GuestMemory& memory) {
  if (!memory.write(kGdt, kGdtEntries, sizeof kGdtEntries)) return make_error("guest RAM too small for the GDT");
  const uint64_t idt = 0;
  if (!memory.write(kIdt, &idt, sizeof idt)) return make_error("guest RAM too small for the IDT");
  const uint64_t pml4 = kPdpt | kPtePresentRw;
  if (!memory.write(kPml4, &pml4, sizeof pml4)) return make_error("guest RAM too small for page tables");
  for (uint64_t g = 0; g < kMappedGiB; ++g) {
    const uint64_t pdpte = (kPd + g * kPageSize) | kPtePresentRw;
    if (!memory.write(kPdpt + g * 8, &pdpte, sizeof pdpte)) return make_error("guest RAM too small for page tables");
    std::vector<uint64_t> pd(512);
    for (uint64_t i = 0; i < 512; ++i) pd[i] = ((g << 30) + (i << 21)) | kPtePresentRw | kPteHuge;
    if (!memory.write(kPd + g * kPageSize, pd.data(), pd.size() * 8))
      return make_error("guest RAM too small for page tables");
  }
  return {};
}

Result<void> setup_boot_vcpu(int fd, uint64_t entry) {
  kvm_sregs sregs{};
  if (::ioctl(fd, KVM_GET_SREGS, &sregs) < 0) return errno_error("KVM_GET_SREGS");
  sregs.gdt.base = kGdt;
  sregs.gdt.limit = sizeof kGdtEntries - 1;
  sregs.idt.base = kIdt;
  sregs.idt.limit = 7;
  sregs.cs = segment_from(kGdtEntries[2], kBootCs);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment_from(kGdtEntries[3], kBootDs);
  sregs.tr = segment_from(kGdtEntries[4], kBootTss);
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
  sregs.cr3 = kPml4;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
  if (::ioctl(fd, KVM_SET_SREGS, &sregs) < 0) return errno_error("KVM_SET_SREGS");

  kvm_regs regs{};
  regs.rflags = 2;  // bit 1 is reserved-one; interrupts off
  regs.rip = entry;
  regs.rsi = boot_layout::kZeroPage;
  regs.rsp = regs.rbp = boot_layout::kBootStackTop;
  if (::ioctl(fd, KVM_SET_REGS, &regs) < 0) return errno_error("KVM_SET_REGS");

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  if (::ioctl(fd, KVM_SET_FPU, &fpu) < 0) return errno_error("KVM_SET_FPU");
  return {};
}

Result<void> setup_lapic_lints(int fd) {
  kvm_lapic_state lapic{};
  if (::ioctl(fd, KVM_GET_LAPIC, &lapic) < 0) return errno_error("KVM_GET_LAPIC");
  auto set = [&lapic](size_t offset, uint32_t mode) {
    uint32_t v = 0;
    std::memcpy(&v, lapic.regs + offset, 4);
    v = (v & ~0x700u & ~(1u << 16)) | mode;  // delivery mode, unmasked
    std::memcpy(lapic.regs + offset, &v, 4);
  };
  set(kApicLvtLint0, kDeliveryExtInt);
  set(kApicLvtLint1, kDeliveryNmi);
  if (::ioctl(fd, KVM_SET_LAPIC, &lapic) < 0) return errno_error("KVM_SET_LAPIC");
  return {};
}

}  // namespace kiln::vmm::kvm
