// `docker-archive:FILE`: a `docker save` tarball (optionally compressed: libarchive reads
// any filter). Its manifest.json names the config file and the layer tarballs of each
// image (legacy `<id>/layer.tar` or Docker 25's `blobs/sha256/<hex>`; symlinked duplicate
// layers are followed inside the archive). The archive has no registry manifest, so this
// source synthesises one, so the puller treats it like any other:
//
//   a Docker v2 schema 2 manifest (application/vnd.docker.distribution.manifest.v2+json)
//   whose config descriptor is the config file (mediaType
//   application/vnd.docker.container.image.v1+json, digest = SHA-256 of its bytes) and
//   whose layers are the layer files in manifest.json order (digest = SHA-256 of the file
//   as stored in the archive; media type from its first bytes: gzip ->
//   ...rootfs.diff.tar.gzip, zstd -> application/vnd.oci.image.layer.v1.tar+zstd, else
//   ...rootfs.diff.tar), serialised as compact JSON with sorted keys.
//
// Its digest (the image's manifest digest in kiln) is the SHA-256 of those bytes: the same
// config and layer files give the same digest, whatever the archive's order, compression
// or timestamps. It differs from a registry's digest for the same image (a registry
// stores compressed layers). Opening hashes every file of the archive once; each blob
// fetch then reads the archive up to that file.
#pragma once

#include "common/result.h"
#include "image/oci/blob_source.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace kiln::image {

class DockerArchiveSource : public BlobSource {
 public:
  /// Read and index `file`; it must hold exactly one image (else an error naming them).
  static Result<std::unique_ptr<DockerArchiveSource>> open(const std::filesystem::path& file);

  /// "" or the synthesised manifest's digest: the manifest. Anything else: not found.
  Result<FetchedManifest> manifest(const std::string& reference) override;
  Result<void> blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                    const BlobProgress& progress) override;
  std::string describe() const override;

  /// The synthesised manifest (for tests and `kiln images list`).
  const std::string& manifest_bytes() const { return manifest_; }

 private:
  explicit DockerArchiveSource(std::filesystem::path file) : file_(std::move(file)) {}

  std::filesystem::path file_;
  std::string manifest_;
  std::string config_digest_, config_bytes_;
  std::map<std::string, std::string> layer_entries_;  ///< digest -> entry name in the archive
};

}  // namespace kiln::image
