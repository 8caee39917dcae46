// Content digests (XXH3-128) for cache keys and integrity checks.
// Not a security boundary: the store lives in the user's own cache directory;
// these digests detect corruption and change, not forgery.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>
#include <string_view>

namespace kiln {

/// Hex XXH3-128 of a byte string.
std::string digest_bytes(std::string_view bytes);

/// Hex XXH3-128 of a whole file, streamed.
Result<std::string> digest_file(const std::filesystem::path& path);

/// Hex XXH3-128 over the non-zero 4 KiB pages of a (possibly sparse) file and their
/// offsets: holes and all-zero pages hash alike, so the digest depends on the bytes
/// only, and a 256 MiB guest-RAM file with 30 MiB touched costs ~30 MiB of reads.
Result<std::string> digest_sparse_file(const std::filesystem::path& path);

}  // namespace kiln
