// How a snapshot is stored in an OCI registry: one image manifest per snapshot or layer,
// tagged `kiln-<snapshot id>` (the id is a hash of the snapshot's full key), with
//   config: application/vnd.kiln.snapshot.config.v1+json — the snapshot's id, kind and
//           parent, and its metadata.json verbatim (the full key), checked before any
//           big blob is fetched;
//   layers: one application/vnd.kiln.snapshot.files.v1.tar+zstd — remote/snapshot_archive.
// A plain image manifest (not the OCI artifact manifest, which the spec dropped and
// Debian's registry refuses) with `artifactType` set, so registries list it as an artifact.
// Everything parsed here comes from the network: bounded and checked field by field.
#pragma once

#include "common/result.h"
#include "image/oci/manifest.h"
#include "snapshot/metadata.h"

#include <optional>
#include <string>
#include <string_view>

namespace kiln::remote {

inline constexpr std::string_view kArtifactType = "application/vnd.kiln.snapshot.v1";
inline constexpr std::string_view kConfigMediaType = "application/vnd.kiln.snapshot.config.v1+json";
inline constexpr std::string_view kFilesMediaType = "application/vnd.kiln.snapshot.files.v1.tar+zstd";
/// Largest config kiln reads (metadata.json is at most 64 KiB).
inline constexpr uint64_t kMaxConfigBytes = 256 << 10;
/// Largest files blob kiln fetches (a 64 GiB guest's pages, compressed).
inline constexpr uint64_t kMaxFilesBytes = 64ull << 30;

/// The tag a snapshot is stored under: "kiln-<id>".
std::string tag_for(const std::string& id);
/// The id in a tag made by tag_for, or a bare id; nullopt for anything else.
std::optional<std::string> id_from_tag(std::string_view tag_or_id);

/// What the config records.
struct ArtifactConfig {
  std::string id;             ///< the snapshot's store id
  std::string metadata_json;  ///< its metadata.json, byte for byte
  snapshot::Metadata meta;    ///< parsed from metadata_json
};

/// The config for the snapshot `id` whose metadata.json is `metadata_json`.
std::string make_config(const std::string& id, std::string_view metadata_json);
/// Parse and check a config: its metadata parses and is for `id` (golden: key id; layer:
/// layer key id) and the kind it states is the metadata's.
Result<ArtifactConfig> parse_config(std::string_view bytes);

/// The manifest naming `config` and `files`.
std::string make_manifest(const image::Descriptor& config, const image::Descriptor& files, const std::string& id);
/// The config and files descriptors of a kiln snapshot manifest; anything else (another
/// media type, more or fewer layers, sizes over the bounds) is refused, naming `where`.
struct ArtifactManifest {
  image::Descriptor config;
  image::Descriptor files;
};
Result<ArtifactManifest> parse_artifact_manifest(std::string_view bytes, const std::string& where);

}  // namespace kiln::remote
