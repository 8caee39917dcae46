// Resolving an image reference to a ResolvedImage: reference -> source -> manifest (an
// index narrowed to linux/amd64) -> config -> layers into the blob store -> pin.
// Every byte is verified against its digest before it is used. When the source is asked
// is the PullPolicy's choice (always: a moved tag is reported in one line and the new image
// used); a pinned digest reference needs no source at all; an unreachable source with a
// pin falls back to the pin, with a note.
#pragma once

#include "common/result.h"
#include "image/oci/blob_source.h"
#include "image/oci/image.h"
#include "image/oci/reference.h"
#include "image/oci/registry_client.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace kiln::image {

/// Progress of one blob: `what` ("layer 2/5 sha256:ab12…"), bytes done of total.
using PullProgress = std::function<void(std::string_view what, uint64_t done, uint64_t total)>;

/// When a registry tag is looked up at its registry (`--pull`, as `docker run --pull`).
/// Local sources (oci:, docker-archive:) are read each time whatever the policy, unless never.
enum class PullPolicy {
  always,   ///< ask the registry what the tag names now (kiln bake, kiln images pull)
  missing,  ///< use the pin when the image is stored; ask only when it is not (kiln run:
            ///< no round trip per test, and every test of a suite sees the image its bake pinned)
  never,    ///< the pin and the store only; never contact a registry or read the source
};

struct PullOptions {
  RegistryOptions registry;
  PullProgress progress;  ///< may be empty
  PullPolicy policy = PullPolicy::always;
  /// One-line notes for the user (tag moved, source unreachable so the pin is used).
  /// Empty: log::info.
  std::function<void(const std::string&)> note;
  /// The image store (blobs and pins); empty: BlobStore::default_root() (<cache>/images).
  std::filesystem::path store_root;
};

/// Where a registry reference's manifests and blobs come from.
using RegistrySourceFactory = std::function<Result<std::unique_ptr<BlobSource>>(const Reference&)>;

/// Resolve `ref` (see parse_reference), pulling what is missing into the store.
/// Registry references go through make_registry_source(options.registry).
Result<ResolvedImage> resolve_image(const std::string& ref, const PullOptions& options);

/// The same with the registry source supplied (tests; oci: and docker-archive:
/// references never call it).
Result<ResolvedImage> resolve_image_with(const std::string& ref, const PullOptions& options,
                                         const RegistrySourceFactory& registry);

}  // namespace kiln::image
