// Walking the store directory: what list, rm and gc share. Internal to snapshot/.
#pragma once

#include "common/result.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace kiln::snapshot::scan {

bool starts_with(const std::string& s, std::string_view prefix);

/// A directory, not a symlink to one.
bool is_real_dir(const std::filesystem::path& p);

/// Names under `dir`, sorted, read in full before anything is renamed: renaming entries
/// while readdir() walks the same directory may skip or repeat some.
std::vector<std::string> entry_names(const std::filesystem::path& dir, std::error_code& ec);

/// Snapshot and layer directories: every directory whose name does not start with '.'.
std::vector<std::string> snapshot_names(const std::filesystem::path& root);

/// When the snapshot was last restored; before its first restore, when it was published.
std::chrono::system_clock::time_point last_used(const std::filesystem::path& dir);

/// Move `dir` out of sight, then delete it. Returns the bytes it used.
Result<uint64_t> discard(const std::filesystem::path& root, const std::filesystem::path& dir, const std::string& name);

/// Why gc should remove the leftover `name` (a .tmp-/.trash- entry, or a layer's .flat-
/// temp file), or "" to keep it (its owner is alive).
std::string leftover_reason(const std::string& name);

}  // namespace kiln::snapshot::scan
