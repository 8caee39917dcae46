// File digests remembered by file identity, the way ccache and Ninja avoid rework: kiln
// digests the guest kernel, the initramfs inputs and a payload's files on every run, and
// these rarely change. A file's identity — device, inode, size, mtime and ctime in ns —
// is taken with fstat on the descriptor that would be hashed; while it stays the same the
// remembered digest is returned without reading the file.
//
// Why identity is enough: any write through the filesystem changes ctime, which nobody
// can set back, and a replacement changes the inode. The one gap is the racy timestamp
// (Git's "racily clean" entries): a file rewritten within the same timestamp tick right
// after it was hashed keeps its identity. So a digest is remembered only for a file whose
// mtime and ctime are older than kRacyMargin at the moment hashing began; a younger file
// is hashed every time until it ages.
//
// Remembered twice: in memory for the process, and on disk under
// <cache root>/digests/, one small record per file path (so a rebuilt file overwrites its
// own record and the directory stays as large as the set of files kiln digests). Records
// are untrusted input: bounded, parsed strictly; a bad or stale one is ignored and
// rewritten. Writing one is best effort: a digest never fails because its memo cannot
// be saved.
#pragma once

#include "common/result.h"

#include <chrono>
#include <filesystem>
#include <string>

namespace kiln {

/// How much older than "now" a file's mtime and ctime must be for its digest to be
/// remembered: coarser than any filesystem timestamp tick (FAT and some network
/// filesystems have 1–2 s) plus the kernel's coarse clock lag.
inline constexpr std::chrono::seconds kRacyMargin{3};

/// digest_file(path), remembered by file identity in this process and under
/// fs::cache_root()/"digests".
Result<std::string> memo_digest_file(const std::filesystem::path& path);

/// The same with the memo directory and the current wall-clock time given: what
/// memo_digest_file() does, open to tests (a test cannot make a file's ctime old, but it
/// can say that now is later).
Result<std::string> memo_digest_file(const std::filesystem::path& path, const std::filesystem::path& memo_dir,
                                     std::chrono::system_clock::time_point now);

/// How many files memo_digest_file() has read and hashed in this process (memo misses):
/// what `--timings`-style diagnostics and the tests observe.
uint64_t memo_digest_files_hashed();

/// Forget what this process remembers in memory (the records on disk stay), so the next
/// call consults the disk memo: for tests, and for a long-lived process.
void memo_digest_forget_in_memory();

}  // namespace kiln
