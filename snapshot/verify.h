// Checking that a snapshot directory is complete, intact and for the right key.
// Internal to snapshot/ (Store::lookup and Store::list use it).
#pragma once

#include "snapshot/key.h"
#include "snapshot/layer_key.h"
#include "snapshot/store.h"

#include <filesystem>
#include <optional>
#include <string>

namespace kiln::snapshot {

/// Verify the snapshot directory `dir`, whose name is `id`. With `want`, its metadata
/// must describe exactly that key; without, its key's id must equal `id`.
/// Never fails: a missing directory is `missing`, everything else wrong is `unusable`
/// with a one-line reason that names the file and the problem.
LookupResult verify_snapshot(const std::filesystem::path& dir, const std::string& id, const SnapshotKey* want,
                             VerifyLevel level);

/// Verify the layer directory `<root>/<id>` and, recursively, the chain below it (see
/// Store::lookup_layer). With `want`, its metadata must be for that key.
LookupResult verify_layer(const std::filesystem::path& root, const std::string& id, const LayerKey* want,
                          VerifyLevel level);

/// verify_layer for layer `id` whose own files are in `dir` (not yet at <root>/<id>); its
/// chain is looked up under `root`.
LookupResult verify_layer_at(const std::filesystem::path& dir, const std::filesystem::path& root,
                             const std::string& id, VerifyLevel level);

/// verify_snapshot or verify_layer, whichever `<root>/<id>`'s metadata says it is.
LookupResult verify_any(const std::filesystem::path& root, const std::string& id, VerifyLevel level);

/// Read and parse `<dir>/metadata.json` (a regular file, size-capped).
Result<Metadata> read_metadata(const std::filesystem::path& dir);

/// Shared by the verifiers: an `unusable` result with `reason`.
LookupResult unusable(std::string reason);

/// "file is missing / not a regular file / has the wrong size" for one recorded file, or nullopt.
std::optional<std::string> check_file(const std::filesystem::path& dir, const FileInfo& info);

/// Digest one recorded file (`sparse`: digest_sparse_file) and compare, or nullopt.
std::optional<std::string> check_digest(const std::filesystem::path& dir, const FileInfo& info, bool sparse);

}  // namespace kiln::snapshot
