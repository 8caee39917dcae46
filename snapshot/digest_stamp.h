// "This big file was read in full and matched its digest": remembered per host boot and
// file identity, so a 256 MiB memory file is digested once, not on every restore.
// Internal to snapshot/ (root memory of layer chains, flat caches).
//
// Why not every restore: digesting a golden's memory.ram reads its ~130 MiB of touched
// pages (~100 ms hot, seconds cold), more than a whole restore is allowed to cost. What
// can change the file between two checks? A write through the filesystem changes its
// ctime (which nobody can set back); a replacement changes its inode; both are in the
// stamp. What ctime misses — bit rot, a disk swapped offline, a crash that tore a file
// written just before — is caught after the next boot, when the boot id differs and
// the file is digested again.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>

namespace kiln::snapshot {

/// Everything about a regular file that a write or a replacement changes — device,
/// inode, size, mtime and ctime in ns — as one string; nullopt when `file` is missing or
/// not a regular file (a symlink is not followed).
std::optional<std::string> file_identity(const std::filesystem::path& file);

/// The host's boot id (/proc/sys/kernel/random/boot_id), or "" if unreadable.
std::string host_boot_id();

/// What a stamp file says (both fields empty when it is missing or malformed).
struct DigestStamp {
  std::string digest;  ///< the file's digest (digest_sparse_file)
  std::string source;  ///< what the file was made from (flat cache: the layer's content digest)
};
DigestStamp read_digest_stamp(const std::filesystem::path& stamp);

/// Does `file` have `digest`? True without reading it when `stamp` records this digest
/// for the file's current identity in this boot; otherwise the file is digested now and,
/// on a match, the stamp rewritten. `force` always digests. nullopt = matches; else why not.
std::optional<std::string> check_digest_once(const std::filesystem::path& file, const std::string& digest,
                                             const std::filesystem::path& stamp, const std::string& source,
                                             bool force = false);

/// Record that `file`, just written by kiln, has `digest` and was made from `source`.
Result<void> write_digest_stamp(const std::filesystem::path& file, const std::string& digest,
                                const std::filesystem::path& stamp, const std::string& source);

}  // namespace kiln::snapshot
