// The CPU state Linux's 64-bit boot protocol expects at entry: long mode with
// paging on, a flat GDT with __BOOT_CS (0x10) and __BOOT_DS (0x18), identity
// page tables over the low 4 GiB, RSI = the zero page. Also the LAPIC's LINT
// pins (ExtINT / NMI) so the PIC reaches the CPU. (Boot MSRs: msr_list.h.)
#pragma once

#include "common/result.h"
#include "vmm/kvm/guest_memory.h"

#include <cstdint>

namespace kiln::vmm::kvm {

/// Write the GDT, IDT and page tables into low guest RAM (once per VM).
Result<void> write_boot_tables(GuestMemory& memory);

/// Program vCPU `fd` for the 64-bit entry at `entry` (the boot vCPU).
Result<void> setup_boot_vcpu(int vcpu_fd, uint64_t entry);

/// LAPIC LINT0 = ExtINT, LINT1 = NMI (every vCPU; KVM resets them masked).
Result<void> setup_lapic_lints(int vcpu_fd);

}  // namespace kiln::vmm::kvm
