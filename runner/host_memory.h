// The host's memory as /proc/meminfo reports it: what `kiln resources` sizes ctest's
// slots by, and what bounds the pool daemon's ready VMs.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kiln::runner {

/// A /proc/meminfo field ("MemAvailable", "MemTotal") in MiB, or nullopt if unreadable.
std::optional<uint64_t> meminfo_mib(std::string_view field);

/// MemAvailable: the kernel's estimate of what can be allocated without swapping
/// (MemFree would ignore reclaimable page cache).
inline std::optional<uint64_t> mem_available_mib() { return meminfo_mib("MemAvailable"); }

}  // namespace kiln::runner
