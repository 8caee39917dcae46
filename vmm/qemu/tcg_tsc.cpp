#include "vmm/qemu/tcg_tsc.h"

#include "common/fs.h"
#include "common/log.h"
#include "vmm/per_boot_cache.h"

#include <time.h>
#include <x86intrin.h>

#include <charconv>
#include <cmath>
#include <string>

namespace kiln::vmm::qemu {
namespace {

constexpr const char* kCachePrefix = "tsc-khz-";
constexpr uint32_t kMinKhz = 100'000;     // 100 MHz
constexpr uint32_t kMaxKhz = 10'000'000;  // 10 GHz

bool sane(uint64_t khz) { return khz >= kMinKhz && khz <= kMaxKhz; }

/// Does the first "flags" line of /proc/cpuinfo list both features?
bool tsc_is_invariant() {
  auto info = fs::read_file("/proc/cpuinfo", 16 << 20);
  if (!info) return false;
  size_t at = info->find("\nflags");
  if (at == std::string::npos) return false;
  std::string flags = info->substr(at, info->find('\n', at + 1) - at) + " ";
  return flags.find(" constant_tsc ") != std::string::npos && flags.find(" nonstop_tsc ") != std::string::npos;
}

double monotonic_raw_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

/// One (clock, TSC) pair: the TSC read between two clock reads, the pair taken from the
/// narrowest of a few tries, so a preemption between the reads does not skew it.
struct Sample {
  double ns = 0;
  uint64_t tsc = 0;
};

Sample sample() {
  Sample best;
  double narrowest = 0;
  for (int i = 0; i < 5; ++i) {
    const double before = monotonic_raw_ns();
    const uint64_t tsc = __rdtsc();
    const double after = monotonic_raw_ns();
    if (i == 0 || after - before < narrowest) {
      narrowest = after - before;
      best = Sample{(before + after) / 2, tsc};
    }
  }
  return best;
}

/// TSC ticks over a 25 ms window of the host's raw monotonic clock.
uint64_t measure_khz() {
  const Sample s0 = sample();
  timespec pause{0, 25'000'000};
  ::nanosleep(&pause, nullptr);
  const Sample s1 = sample();
  if (s1.ns <= s0.ns || s1.tsc <= s0.tsc) return 0;
  return static_cast<uint64_t>(std::llround(static_cast<double>(s1.tsc - s0.tsc) / (s1.ns - s0.ns) * 1e6));
}

}  // namespace

uint32_t tsc_hint_khz(uint64_t measured_khz) {
  return static_cast<uint32_t>((measured_khz + 500) / 1000 * 1000);
}

std::optional<uint32_t> host_tsc_khz() {
  // Per boot: every kiln on this boot (and the pool daemon) must put the same value in the
  // engine identity, and a remeasurement could round to another MHz.
  if (auto text = read_per_boot(kCachePrefix, 64)) {
    uint64_t khz = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), khz);
    if (ec == std::errc() && sane(khz)) return tsc_hint_khz(khz);
  }
  if (!tsc_is_invariant()) {
    log::verbose("host TSC is not invariant: a TCG guest calibrates its TSC itself (boots may stall under load)");
    return std::nullopt;
  }
  const uint64_t khz = measure_khz();
  if (!sane(khz)) return std::nullopt;
  // Best effort: without the cache the next kiln measures again (25 ms).
  (void)write_per_boot(kCachePrefix, std::to_string(khz) + "\n");
  return tsc_hint_khz(khz);
}

}  // namespace kiln::vmm::qemu
