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

/// TSC ticks over a 25 ms window of the host's raw monotonic clock.
uint64_t measure_khz() {
  const double t0 = monotonic_raw_ns();
  const uint64_t c0 = __rdtsc();
  timespec pause{0, 25'000'000};
  ::nanosleep(&pause, nullptr);
  const double t1 = monotonic_raw_ns();
  const uint64_t c1 = __rdtsc();
  if (t1 <= t0 || c1 <= c0) return 0;
  return static_cast<uint64_t>(std::llround(static_cast<double>(c1 - c0) / (t1 - t0) * 1e6));
}

}  // namespace

std::optional<uint32_t> host_tsc_khz() {
  // Per boot: the value only has to agree between a bake and the restores on this host.
  if (auto text = read_per_boot(kCachePrefix, 64)) {
    uint64_t khz = 0;
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), khz);
    if (ec == std::errc() && sane(khz)) return static_cast<uint32_t>(khz);
  }
  if (!tsc_is_invariant()) {
    log::verbose("host TSC is not invariant: a TCG guest calibrates its TSC itself (boots may stall under load)");
    return std::nullopt;
  }
  const uint64_t khz = measure_khz();
  if (!sane(khz)) return std::nullopt;
  // Best effort: without the cache the next kiln measures again (25 ms).
  (void)write_per_boot(kCachePrefix, std::to_string(khz) + "\n");
  return static_cast<uint32_t>(khz);
}

}  // namespace kiln::vmm::qemu
