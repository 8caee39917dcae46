// Copy a guest-RAM file keeping its holes: only the data extents are copied.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>

namespace kiln::vmm::qemu {

struct SparseCopyStats {
  uint64_t size = 0;         ///< apparent size of both files
  uint64_t data_bytes = 0;   ///< bytes inside data extents, i.e. copied
};

/// Create `to` (replacing it) with the same size and contents as `from`, copying only
/// `from`'s data extents (SEEK_DATA/SEEK_HOLE) with copy_file_range — which shares
/// blocks where the filesystem can (reflink) — and leaving its holes as holes.
/// Not fsynced (publishing flushes). Falls back to read/write where copy_file_range is not supported.
Result<SparseCopyStats> copy_sparse_file(const std::filesystem::path& from, const std::filesystem::path& to);

}  // namespace kiln::vmm::qemu
