// `kiln run`'s "resolve the guest (image)" phase: `--image REF` becomes a pulled,
// verified image (image/oci/pull) and its flattened read-only root disk, written once
// per image digest (image/rootfs), attached to the guest as its first disk with the
// agent told to make it the root. `--image default` (the default) is the busybox guest.
#pragma once

#include "common/result.h"
#include "image/oci/image.h"
#include "image/oci/pull.h"
#include "runner/guest.h"
#include "runner/progress.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace kiln::runner {

struct ImageOptions {
  std::string ref = "default";                   ///< --image
  std::vector<std::string> insecure_registries;  ///< --insecure-registry HOST[:PORT]: plain HTTP for that host only
  std::filesystem::path registry_ca;             ///< --registry-ca FILE: CA bundle for registries
  image::PullPolicy pull = image::PullPolicy::missing;  ///< --pull: when a tag is looked up at its registry
};

struct GuestImage {
  image::ResolvedImage image;
  std::filesystem::path disk;  ///< the read-only squashfs of the flattened layers
};

/// True for the busybox guest ("default" or "").
bool is_default_image(const std::string& ref);

/// Pull (or find pinned) `options.ref` and make sure its root disk exists. nullopt for
/// the default guest.
Result<std::optional<GuestImage>> resolve_guest_image(const ImageOptions& options, Progress& progress);

/// The kernel command line switch that makes the agent mount the first disk as the root.
inline constexpr const char* kImageCmdlineSwitch = "kiln.image=vda";

/// Make `guest` boot into `image`: the disk, the agent's switch on the command line,
/// and the snapshot key's image fields (the golden-base rule keys goldens by image).
void attach_image(const GuestImage& image, PreparedGuest& guest);

}  // namespace kiln::runner
