// Image indexes (OCI index, Docker manifest list) and image manifests (OCI, Docker v2
// schema 2), parsed from untrusted bytes: bounded sizes and counts, every digest checked
// for form, unknown and legacy (schema 1) media types refused with a message that says so.
#pragma once

#include "common/result.h"
#include "image/oci/blob_source.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

/// Largest manifest or index kiln reads (the distribution spec's registries take 4 MiB).
inline constexpr uint64_t kMaxManifestBytes = 4ull << 20;
/// Largest config blob (an image config with a long history is still well below this).
inline constexpr uint64_t kMaxConfigBytes = 8ull << 20;
/// Largest layer blob kiln fetches (compressed).
inline constexpr uint64_t kMaxLayerBytes = 64ull << 30;
/// Most entries in an index, and layers in a manifest.
inline constexpr size_t kMaxIndexEntries = 1024;
inline constexpr size_t kMaxLayers = 512;

struct Platform {
  std::string os, architecture, variant;
  /// "linux/arm64/v8", "linux/amd64".
  std::string str() const;
};

/// An OCI content descriptor, validated: sha256 digest, size within its kind's bound.
struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::optional<Platform> platform;                ///< index entries only
  std::map<std::string, std::string> annotations;  ///< index entries only (org.opencontainers.image.ref.name)
};

struct ImageIndex {
  std::vector<Descriptor> manifests;
};

struct ImageManifest {
  std::string media_type;  ///< kOciManifest or kDockerManifest
  Descriptor config;
  std::vector<Descriptor> layers;  ///< base first; media types checked (tar, tar+gzip, tar+zstd)
};

enum class ManifestKind { index, manifest };

/// What a fetched document is. The body's "mediaType" decides when present (it must
/// then agree with a manifest-type Content-Type); otherwise the Content-Type; otherwise
/// its shape ("manifests" -> index, "layers" -> manifest). Schema 1 and unknown types
/// are errors.
Result<ManifestKind> classify_manifest(const FetchedManifest& fetched);

Result<ImageIndex> parse_index(std::string_view bytes);
Result<ImageManifest> parse_manifest(std::string_view bytes);

/// The entry for `os`/`architecture` (variant ignored). None: an error naming the
/// platforms the index has.
Result<Descriptor> select_platform(const ImageIndex& index, std::string_view os = "linux",
                                   std::string_view architecture = "amd64");

/// Is `media_type` a layer kiln can unpack? Foreign / non-distributable layers and
/// anything else get an error saying which.
Result<void> check_layer_media_type(std::string_view media_type);

}  // namespace kiln::image
