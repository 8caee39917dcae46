// Golden-base selection: which existing snapshot a freshly baked one may be stored
// as a diff against, so that every VM restored from it shares the base's RAM pages.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace kiln::snapshot {

/// The memory file of the best base for the snapshot in `fresh_dir`, or nullopt.
///
/// A base is another directory directly under `snapshots_dir` whose
/// `memory_file_name` has exactly the size of the fresh one and whose metadata.json
/// has the same `image`, `memory_mib` and `baked_by_version`. Anything less is not a
/// base: a diff against an incompatible base restores a corrupt guest. Among bases the
/// newest memory file (mtime at nanosecond resolution) wins; ties go to the smallest
/// directory name, so the choice is deterministic.
///
/// `fresh_dir` itself is never chosen (compared by device and inode, so symlinks,
/// `..` and relative paths cannot disguise it). Names starting with '.' are skipped:
/// they are bakes in progress or snapshots being deleted. Every file read is untrusted:
/// unreadable, oversized or garbage metadata, missing files and non-regular files
/// just disqualify that candidate. Never throws.
///
/// The rule checks compatibility, not integrity: verify the chosen base (e.g.
/// Store::lookup with VerifyLevel::full) before writing a diff against it.
std::optional<std::filesystem::path> find_golden_base(const std::filesystem::path& snapshots_dir,
                                                      const std::filesystem::path& fresh_dir,
                                                      const std::string& memory_file_name, const std::string& image,
                                                      uint32_t memory_mib, const std::string& baked_by_version);

}  // namespace kiln::snapshot
