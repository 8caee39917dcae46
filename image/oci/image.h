// An OCI image as kiln uses it: the pinned manifest digest, the parts of the image
// config a guest needs, and the layer blobs (verified, in the blob store) in order.
// Producers: image/oci/pull (registry, oci: layout, docker-archive:). Consumers:
// image/rootfs (the flattened read-only disk) and the runner (guest root, golden key).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::image {

/// One layer tarball as stored: a blob in the content-addressed store.
struct LayerBlob {
  std::string digest;              ///< "sha256:<hex>" of the blob as stored (compressed)
  std::string media_type;          ///< e.g. application/vnd.oci.image.layer.v1.tar+gzip
  uint64_t size = 0;               ///< bytes of the blob
  std::filesystem::path path;      ///< the verified blob file in the store (read-only)
};

/// What the guest takes from the image config (OCI image-spec config.config).
struct ImageRunConfig {
  std::vector<std::string> env;         ///< "KEY=VALUE"
  std::string working_dir;              ///< "" = /
  std::string user;                     ///< "" = root; "name", "uid", "name:group", "uid:gid"
  std::vector<std::string> entrypoint;  ///< ignored unless asked
  std::vector<std::string> cmd;
};

/// A resolved image: everything a run needs, nothing fetched later.
struct ResolvedImage {
  std::string reference;        ///< as the user wrote it ("debian:bookworm")
  std::string canonical;        ///< normalised ("docker.io/library/debian:bookworm", "oci:/abs/dir:tag")
  std::string manifest_digest;  ///< "sha256:<hex>" of the linux/amd64 image manifest: the image's identity
  std::string config_digest;    ///< "sha256:<hex>" of the config blob
  ImageRunConfig config;
  std::vector<LayerBlob> layers;  ///< bottom (base) first
};

}  // namespace kiln::image
