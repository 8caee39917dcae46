// A snapshot's files as one tar+zstd stream: the blob a remote cache stores for it.
//   metadata.json, then state.bin, then the memory: a golden's memory.ram as a sparse
//   entry (only its data extents are stored: zero pages are not sent), a layer's
//   memory.index and memory.diff (its pages only).
// Members carry no owner, time or mode of the machine that packed them, so the same
// snapshot always packs to the same bytes. Unpacking is the untrusted direction: member
// names, types, order, sizes and offsets are checked against the metadata that comes
// first, and files are created exclusively in an empty directory.
#pragma once

#include "common/result.h"
#include "snapshot/metadata.h"

#include <filesystem>

namespace kiln::remote {

/// Write the snapshot in `dir` (its metadata.json and the files it names) to the file `out`.
Result<void> pack_snapshot(const std::filesystem::path& dir, const snapshot::Metadata& meta,
                           const std::filesystem::path& out);

/// Unpack `archive` into the empty directory `dir`. Its metadata.json must be exactly
/// `metadata_json` (what the artifact's config promised). Returns the parsed metadata.
Result<snapshot::Metadata> unpack_snapshot(const std::filesystem::path& archive, std::string_view metadata_json,
                                           const std::filesystem::path& dir);

}  // namespace kiln::remote
