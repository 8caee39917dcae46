// The TSC frequency a TCG guest must be told.
//
// Under TCG the guest's TSC ticks at the host's TSC rate, and a microvm has no
// HPET or ACPI PM timer. Linux then calibrates the TSC against the PIT, which
// under an emulated CPU on a loaded host fails now and then ("tsc: Unable to
// calibrate against PIT"), and the boot hangs for good right after "Marking TSC
// unstable". Measured on this 2-core host under parallel builds: 3 hangs in 7
// boots without the hint, 0 in 6 with it. `tsc_early_khz=` skips the calibration.
#pragma once

#include <cstdint>
#include <optional>

namespace kiln::vmm::qemu {

/// The host's invariant TSC frequency in kHz, measured once per host boot (~25 ms
/// against CLOCK_MONOTONIC_RAW) and cached under cache_root()/host, as
/// tsc_hint_khz() rounds it. nullopt when the host TSC is not invariant
/// (constant_tsc + nonstop_tsc), so a hint would be wrong.
std::optional<uint32_t> host_tsc_khz();

/// A measured TSC rate as the guest is told it and the engine identity names it:
/// rounded to whole MHz. A measurement scatters by tens of kHz (load, preemption), so
/// the exact value would differ at every host boot and between two hosts of one
/// kind, and a snapshot (whose key holds the value) would never be shared between
/// them. Whole MHz are stable there and leave the guest's clock off by at most
/// 0.5 MHz (under 200 ppm at 2.5 GHz), about what calibrating against the PIT gives.
uint32_t tsc_hint_khz(uint64_t measured_khz);

}  // namespace kiln::vmm::qemu
