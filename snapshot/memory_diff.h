// Diffing a complete guest-RAM image against a base (a golden's memory or a chain of
// layers over it): the pages a layer has to store. Internal to snapshot/.
#pragma once

#include "common/result.h"
#include "snapshot/diff_index.h"
#include "snapshot/layer_chain.h"

#include <filesystem>

namespace kiln::snapshot {

struct DiffStats {
  uint64_t scanned_bytes = 0;  ///< bytes of guest RAM compared (where either side has data)
  uint64_t stored_pages = 0;   ///< pages written to memory.diff
  uint64_t zeroed_pages = 0;   ///< pages recorded as zero (non-zero in the base): holes in memory.diff
};

/// Write to `pages_path` (created) every 4 KiB page of `image` that differs from `base`
/// and return the index of them. A page that is zero in `image` but not in `base` is
/// recorded too (as a hole in the pages file, so it costs no disk); a page zero on both
/// sides, or equal, is not. Only ranges where either side has data are read, each once,
/// in 1 MiB blocks compared with memcmp before page by page.
Result<DiffIndex> write_memory_diff(const std::filesystem::path& image, const MemoryView& base,
                                    const std::filesystem::path& pages_path, DiffStats* stats = nullptr);

/// Write the complete content of `chain` into `out_fd`, a new empty file open for writing
/// (fs::TempFile; `out_name` names it in errors): the root's content (cloned where the
/// filesystem has reflinks, else its data extents copied in the kernel, holes staying
/// holes), then each layer's pages on top, zero pages punched back to holes.
Result<void> write_flat_image(const LayerChain& chain, int out_fd, const std::filesystem::path& out_name);

/// write_flat_image where the root can be cloned (XFS, btrfs): the file then shares the
/// golden's extents and owns only the chain's pages, so a layer's flat file costs about
/// its diff on disk. False, with nothing written, where the filesystem has no reflinks.
Result<bool> write_shared_flat_image(const LayerChain& chain, int out_fd, const std::filesystem::path& out_name);

}  // namespace kiln::snapshot
