// Host facts remembered until the host reboots (KVM verdict, TSC frequency).
//
// They live in cache_root()/host/<prefix><boot id>. Keyed by boot because a reboot
// may change them (a kernel update can fix nested KVM); keeping them cached saves
// every `kiln run` a probe.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>

namespace kiln::vmm {

/// /proc/sys/kernel/random/boot_id, reduced to [0-9a-f-]; "unknown" without /proc.
std::string host_boot_id();

/// The file holding fact `prefix` for this boot.
std::filesystem::path per_boot_file(const std::string& prefix);

/// Read fact `prefix` for this boot (at most `max_bytes`); nullopt if absent or unreadable.
std::optional<std::string> read_per_boot(const std::string& prefix, size_t max_bytes);

/// Store fact `prefix` for this boot atomically, and delete its files from earlier boots.
Result<void> write_per_boot(const std::string& prefix, const std::string& content);

}  // namespace kiln::vmm
