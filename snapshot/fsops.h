// Filesystem operations the store needs beyond common/fs.h: durability (fsync),
// sparse-aware disk usage, and moving directories aside atomically before deleting.
// Internal to snapshot/.
#pragma once

#include "common/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::snapshot::fsops {

/// fsync a file or directory by path (read-only open is enough on Linux).
Result<void> fsync_path(const std::filesystem::path& path);

/// Bytes allocated on disk (st_blocks * 512) under `path`, without following
/// symlinks: a 256 MiB sparse RAM file with 30 MiB touched counts 30 MiB.
/// Best effort: entries that vanish or cannot be read count as 0.
uint64_t disk_usage(const std::filesystem::path& path);

/// Is a process with this pid alive (or alive but not ours to signal)?
bool pid_alive(pid_t pid);

/// The pid in a `<prefix><id>-<pid>-<random>` name, or nullopt if the name is not of that form.
std::optional<pid_t> owner_pid(std::string_view name, std::string_view prefix);

/// A fresh, empty `<root>/.trash-<id>-<pid>-<random>` directory (fs::make_temp_dir):
/// gc deletes it once <pid> is gone.
Result<std::filesystem::path> make_trash_dir(const std::filesystem::path& root, const std::string& id);

/// Atomically rename `dir` to a fresh `<root>/.trash-<id>-<pid>-<random>` and return the
/// new path: from that instant no reader sees the snapshot, and a crash before the
/// slow recursive delete leaves only trash for gc.
Result<std::filesystem::path> move_to_trash(const std::filesystem::path& root, const std::filesystem::path& dir,
                                            const std::string& id);

/// rm -rf, ignoring errors (another process may be deleting the same tree).
void remove_tree(const std::filesystem::path& path);

/// lstat mtime at full resolution, or nullopt if the path does not exist.
std::optional<std::chrono::system_clock::time_point> mtime(const std::filesystem::path& path);

}  // namespace kiln::snapshot::fsops
