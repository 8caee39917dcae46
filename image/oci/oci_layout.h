// `oci:PATH[:tag]`: an OCI image layout directory (image-spec image-layout.md), as umoci
// and skopeo write it: `oci-layout`, `index.json` (whose entries' annotation
// org.opencontainers.image.ref.name is the tag) and `blobs/sha256/<hex>`.
#pragma once

#include "common/result.h"
#include "image/oci/blob_source.h"
#include "image/oci/manifest.h"

#include <filesystem>
#include <memory>

namespace kiln::image {

class OciLayoutSource : public BlobSource {
 public:
  /// Reads and checks `dir`/oci-layout and `dir`/index.json.
  static Result<std::unique_ptr<OciLayoutSource>> open(const std::filesystem::path& dir);

  /// `reference`: a tag (the entry whose ref.name annotation is it), "" (the layout's
  /// only entry), or "sha256:<hex>" (that blob). The bytes are checked against the
  /// digest and size index.json gives.
  Result<FetchedManifest> manifest(const std::string& reference) override;
  Result<void> blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                    const BlobProgress& progress) override;
  std::string describe() const override;

 private:
  OciLayoutSource(std::filesystem::path dir, ImageIndex index) : dir_(std::move(dir)), index_(std::move(index)) {}
  Result<const Descriptor*> find_tag(const std::string& tag) const;
  std::filesystem::path blob_path(const std::string& digest) const;

  std::filesystem::path dir_;
  ImageIndex index_;
};

}  // namespace kiln::image
