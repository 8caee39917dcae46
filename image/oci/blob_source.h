// Where an image's manifests and blobs come from: a registry (image/oci/registry_client),
// an OCI image layout directory (oci:PATH), a `docker save` archive (docker-archive:FILE).
// The puller (image/oci/pull) walks index -> manifest -> config -> layers through this
// interface and verifies every byte against its digest, whatever the source.
#pragma once

#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace kiln::image {

/// A manifest or index as the source returned it.
struct FetchedManifest {
  std::string bytes;       ///< exactly as received (its SHA-256 is its digest)
  std::string media_type;  ///< Content-Type, or the descriptor's mediaType for files
};

/// Progress of one blob transfer: bytes done of total (0 = unknown).
using BlobProgress = std::function<void(uint64_t done, uint64_t total)>;

class BlobSource {
 public:
  virtual ~BlobSource() = default;
  /// The manifest or image index that `reference` names: a tag, or "sha256:<hex>".
  /// Accepts the OCI and Docker v2 manifest and index/list media types.
  virtual Result<FetchedManifest> manifest(const std::string& reference) = 0;
  /// Write blob `digest` (`size` bytes as the descriptor says) into `dest`, a file the
  /// caller created exclusively (may already hold a prefix of the blob from an earlier
  /// attempt: a source that can resume appends, others truncate). Returns once the
  /// bytes are written; the caller verifies the digest.
  virtual Result<void> blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                            const BlobProgress& progress) = 0;
  /// For messages: "registry 127.0.0.1:5000 repository kiln-test/pg", "OCI layout /x".
  virtual std::string describe() const = 0;
};

}  // namespace kiln::image
