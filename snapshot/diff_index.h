// memory.index: which guest pages a layer's memory.diff holds. A small binary file,
// parsed as hostile input (fuzz/diff_index_fuzz.cpp). Byte layout: docs/snapshot-format.md.
#pragma once

#include "common/result.h"
#include "vmm/engine.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::snapshot {

/// Granularity of diffs: x86 base pages, the unit the kvm engine maps overlays in.
inline constexpr uint64_t kPageSize = 4096;

/// The index format this kiln writes and reads.
inline constexpr uint32_t kDiffIndexVersion = 1;

/// An index larger than this is refused unread (it would describe ~2.8 M extents;
/// a real layer has a few thousand).
inline constexpr uint64_t kMaxDiffIndexBytes = 64ull << 20;

/// The parsed index. Invariants (enforced by parse_diff_index, assumed by encode):
/// extents sorted by guest_offset, non-overlapping and not touching (coalesced), all
/// page-aligned and non-empty, inside [0, memory_size); the pages file is dense: the
/// first extent's file_offset is 0 and each next one starts where the previous ended,
/// so pages_bytes is the sum of the lengths and the size of memory.diff.
struct DiffIndex {
  uint64_t memory_size = 0;  ///< guest RAM bytes the diff applies to
  uint64_t pages_bytes = 0;  ///< size of memory.diff
  std::vector<vmm::MemoryExtent> extents;
  bool operator==(const DiffIndex&) const = default;
};

/// Serialize (little-endian, with magic, version and an XXH3-128 checksum).
std::string encode_diff_index(const DiffIndex& index);

/// Parse and validate every field and invariant above. Never throws, never reads out of
/// bounds; the error says what is wrong ("memory.index: extent 3 overlaps extent 2").
Result<DiffIndex> parse_diff_index(std::string_view bytes);

/// Append [guest_offset, +length) stored at the end of the pages file, merging it into
/// the last extent when they touch. `length` must be page-aligned and > 0, and
/// `guest_offset` at or after the end of the last extent.
void append_extent(DiffIndex& index, uint64_t guest_offset, uint64_t length);

}  // namespace kiln::snapshot
