// The image config blob (OCI image-spec config.json / Docker image JSON): the run
// settings a guest takes, the platform, and rootfs.diff_ids (one per layer).
#pragma once

#include "common/result.h"
#include "image/oci/image.h"
#include "image/oci/manifest.h"

#include <string>
#include <string_view>
#include <vector>

namespace kiln::image {

struct ImageConfig {
  std::string os, architecture;
  ImageRunConfig run;
  std::vector<std::string> diff_ids;  ///< digests of the uncompressed layers, base first
};

/// Parse a config blob (untrusted, at most kMaxConfigBytes).
Result<ImageConfig> parse_image_config(std::string_view bytes);

/// The config belongs to `manifest`: one diff_id per layer, and an os/architecture
/// (when given) of linux/amd64.
Result<void> check_config_matches(const ImageConfig& config, const ImageManifest& manifest);

}  // namespace kiln::image
