// Content digests (XXH3-128) for cache keys and integrity checks.
// Not a security boundary: the store lives in the user's own cache directory;
// these digests detect corruption and change, not forgery.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

struct XXH3_state_s;  // xxhash.h stays private to common/

namespace kiln {

/// Hex XXH3-128 of a byte string.
std::string digest_bytes(std::string_view bytes);

/// Are `s` 1..`max_size` lower-case hex digits (what digests and the ids made of them
/// are)? The one check for ids and digests read from disk or the network.
bool is_lower_hex(std::string_view s, size_t max_size);

/// digest_bytes() of everything passed to update(), in order, without holding it: bytes
/// streamed somewhere (to the guest) are digested exactly as they went.
class DigestStream {
 public:
  DigestStream();
  void update(std::string_view bytes);
  /// The digest so far; update() may continue after it.
  std::string hex() const;

 private:
  struct Free {
    void operator()(XXH3_state_s* state) const;
  };
  std::unique_ptr<XXH3_state_s, Free> state_;
};

/// Hex XXH3-128 of a whole file, streamed.
Result<std::string> digest_file(const std::filesystem::path& path);

/// digest_file() of the first `size` bytes of an open file (its size when fstat'd), so a
/// caller can take the file's identity and its digest from one descriptor. `name` is
/// for messages only.
Result<std::string> digest_open_file(int fd, uint64_t size, const std::filesystem::path& name);

/// Hex XXH3-128 over the non-zero 4 KiB pages of a (possibly sparse) file and their
/// offsets: holes and all-zero pages hash alike, so the digest depends on the bytes
/// only, and a 256 MiB guest-RAM file with 30 MiB touched costs ~30 MiB of reads.
Result<std::string> digest_sparse_file(const std::filesystem::path& path);

}  // namespace kiln
