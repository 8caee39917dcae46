// The content-addressed blob store: `<root>/blobs/sha256/<hex>`, one read-only file per
// blob, shared by every image (two images with the same base layer store it once).
// A blob enters only through a fresh exclusive temp file in the same directory, and only
// after its size and SHA-256 match the descriptor: nothing half-written or unverified is
// ever at a blob's path. Default root: `<cache>/images`.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

class BlobStore {
 public:
  /// `<fs::cache_root()>/images`.
  static std::filesystem::path default_root();

  explicit BlobStore(std::filesystem::path root);
  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path blob_dir() const { return root_ / "blobs" / "sha256"; }

  /// Where blob `digest` (a valid sha256 digest) lives.
  std::filesystem::path path_of(std::string_view digest) const;

  /// Present as a regular file of exactly `size` bytes (not re-hashed: it was verified
  /// before it was renamed into place; `verify` re-hashes).
  bool has(std::string_view digest, uint64_t size) const;

  /// Writes the blob's bytes into `dest` (an exclusive temp file, possibly holding a
  /// prefix from an interrupted attempt).
  using Fetch = std::function<Result<void>(const std::filesystem::path& dest)>;

  /// The blob's path, fetching it if it is not present. A fetch that fails or whose
  /// bytes do not match (size, then digest) is tried once more (after a mismatch from
  /// an empty file); then a clear error, and no temp file stays. `what` names the
  /// blob in messages ("layer 2 of docker.io/library/debian:bookworm").
  Result<std::filesystem::path> ensure(const std::string& digest, uint64_t size, const Fetch& fetch,
                                       std::string_view what) const;

  /// Store bytes already in memory (a manifest), after checking they hash to `digest`.
  Result<std::filesystem::path> put(const std::string& digest, std::string_view bytes) const;

  /// Read a small blob (config, manifest), bounded, and check its digest again.
  Result<std::string> read_verified(const std::string& digest, uint64_t max_bytes) const;

  /// Re-hash a present blob: ok, or an error of kind `corrupt` saying what is wrong.
  Result<void> verify(const std::string& digest) const;

  /// Digests of the blobs present.
  std::vector<std::string> list() const;
  /// Bytes of a present blob (0 if absent).
  uint64_t size_of(std::string_view digest) const;
  /// Remove a blob (absent: ok). Returns the bytes freed.
  Result<uint64_t> remove(const std::string& digest) const;
  /// Temp files left by a kiln that was killed mid-fetch, older than `min_age`.
  std::vector<std::filesystem::path> leftovers(std::chrono::seconds min_age) const;

  /// flock on `<root>/lock`: pulls hold it shared, rm and gc exclusive, so a blob a
  /// pull has just found present is not removed under it. Created if needed.
  Result<UniqueFd> lock(bool exclusive) const;

 private:
  std::filesystem::path root_;
};

}  // namespace kiln::image
