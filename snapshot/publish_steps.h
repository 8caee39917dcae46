// Steps shared by Store::publish (goldens) and Store::publish_layer. Internal to snapshot/.
#pragma once

#include "common/result.h"
#include "snapshot/metadata.h"

#include <cstdint>
#include <filesystem>
#include <string>

namespace kiln::snapshot {

/// Unix time now, in nanoseconds.
int64_t now_unix_ns();

/// Stat and digest one file written into a bake directory (`sparse`: digest_sparse_file).
/// Fails if the file changes while it is digested (a VM still running).
Result<FileInfo> describe(const std::filesystem::path& path, bool sparse);

/// Move the finished bake directory `tmp` to `target`, atomically for every reader:
/// they see the old directory or the new one, never a mix and never a half-written one.
Result<void> put_in_place(const std::filesystem::path& root, const std::filesystem::path& tmp,
                          const std::filesystem::path& target, const std::string& id);

}  // namespace kiln::snapshot
