// Checking that a snapshot directory is complete, intact and for the right key.
// Internal to snapshot/ (Store::lookup and Store::list use it).
#pragma once

#include "snapshot/key.h"
#include "snapshot/store.h"

#include <filesystem>
#include <string>

namespace kiln::snapshot {

/// Verify the snapshot directory `dir`, whose name is `id`. With `want`, its metadata
/// must describe exactly that key; without, its key's id must equal `id`.
/// Never fails: a missing directory is `missing`, everything else wrong is `unusable`
/// with a one-line reason that names the file and the problem.
LookupResult verify_snapshot(const std::filesystem::path& dir, const std::string& id, const SnapshotKey* want,
                             VerifyLevel level);

}  // namespace kiln::snapshot
