// File I/O on sparse guest-RAM files: where the data is (SEEK_DATA/SEEK_HOLE), full
// reads and writes, sparse-aware copies. Internal to snapshot/ (diff, flatten), and the
// layers bench (what a flat file owns on disk).
#pragma once

#include "common/result.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

namespace kiln::snapshot::sparse {

/// A byte range [begin, end).
struct Range {
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

/// The data extents of `fd` (SEEK_DATA/SEEK_HOLE) within [0, size): outside them the
/// file reads as zeros. A filesystem without SEEK_DATA reports one extent, the whole file.
Result<std::vector<Range>> data_extents(int fd, uint64_t size, const std::filesystem::path& name);

/// Sort, then merge overlapping or touching ranges; each is widened to `align` first.
std::vector<Range> merge(std::vector<Range> ranges, uint64_t align);

/// pread exactly `len` bytes at `offset` (EINTR and short reads retried; EOF is an error).
Result<void> read_exact(int fd, char* out, size_t len, uint64_t offset, const std::filesystem::path& name);

/// pwrite exactly `len` bytes at `offset`.
Result<void> write_exact(int fd, const char* data, size_t len, uint64_t offset, const std::filesystem::path& name);

/// Copy [r.begin, r.end) of `in` to the same offsets of `out` in the kernel (copy_file_range;
/// plain read/write when the filesystem cannot).
Result<void> copy_range(int in, int out, Range r, const std::filesystem::path& name);

/// Make `out` (an empty file) a copy of all of `in` that shares its extents (FICLONE: a
/// reflink, on XFS and btrfs; a later write to either file copies only what it touches).
/// False, with `out` untouched, where the filesystem cannot (ext4, tmpfs, across mounts).
Result<bool> clone_file(int in, int out, const std::filesystem::path& name);

/// Make [out_offset, +len) of `out` share the extents of [in_offset, +len) of `in`
/// (FICLONERANGE; offsets and length multiples of the filesystem block). False, with
/// nothing changed, where the filesystem cannot.
Result<bool> clone_range(int in, uint64_t in_offset, int out, uint64_t out_offset, uint64_t len,
                         const std::filesystem::path& name);

/// Bytes of `fd`'s allocated extents that no other file shares (FIEMAP: extents without
/// FIEMAP_EXTENT_SHARED): what deleting it would free. A reflinked copy owns only what
/// was written to it since. A filesystem without FIEMAP reports its allocated bytes.
Result<uint64_t> owned_bytes(int fd, const std::filesystem::path& name);

/// Make [offset, +len) of `fd` read as zeros without allocating (punch a hole; write
/// zeros where the filesystem cannot punch).
Result<void> zero_range(int fd, uint64_t offset, uint64_t len, const std::filesystem::path& name);

/// True when all `len` bytes at `p` are zero.
bool all_zero(const char* p, size_t len);

}  // namespace kiln::snapshot::sparse
