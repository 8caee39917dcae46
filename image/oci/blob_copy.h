// Copying a blob from a local image file into the store's temp file: shared by the
// OCI layout and docker archive sources.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "image/oci/blob_source.h"

#include <cstdint>
#include <filesystem>
#include <functional>

namespace kiln::image {

/// Open `dest` (the store's exclusive temp file) for writing from its start, never
/// through a symlink: local sources cannot resume, so they rewrite the whole blob.
Result<UniqueFd> open_blob_dest(const std::filesystem::path& dest);

/// Reads up to `n` bytes into `buf`: > 0 bytes read, 0 at the end, an error.
using ReadChunk = std::function<Result<size_t>(char* buf, size_t n)>;

/// Copy from `read` into `fd` until the end or until `size` + 1 bytes (one more than the
/// descriptor says, so a longer blob is noticed without copying all of it).
Result<void> copy_blob(const ReadChunk& read, int fd, uint64_t size, const BlobProgress& progress);

}  // namespace kiln::image
