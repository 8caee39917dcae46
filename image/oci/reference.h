// Image references as `kiln run --image REF` takes them: docker-style registry
// references (the distribution reference grammar, with Docker Hub's normalisation)
// and two local transports, `oci:PATH[:tag]` and `docker-archive:FILE`.
#pragma once

#include "common/result.h"

#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::image {

enum class ReferenceKind {
  registry,        ///< [registry/]repository[:tag][@sha256:hex]
  oci_layout,      ///< oci:PATH[:tag] — an OCI image layout directory (umoci, skopeo)
  docker_archive,  ///< docker-archive:FILE — a `docker save` tarball
};

/// A parsed, validated, normalised reference.
struct Reference {
  ReferenceKind kind = ReferenceKind::registry;
  std::string registry;        ///< registry: "docker.io", "127.0.0.1:5000"; else ""
  std::string repository;      ///< registry: "library/debian", "kiln-test/pg"; else ""
  std::string tag;             ///< "latest" when neither tag nor digest was given; "" with a digest only
                               ///< oci_layout: the ref.name to select ("" = the layout's only image)
  std::string digest;          ///< registry: "sha256:<hex>" when pinned by the user; else ""
  std::filesystem::path path;  ///< oci_layout / docker_archive: absolute, lexically normal

  /// One normal form per image name: "docker.io/library/debian:bookworm",
  /// "127.0.0.1:5000/x/y@sha256:…", "oci:/abs/dir:tag", "docker-archive:/abs/file.tar".
  std::string canonical() const;
  /// What to ask the source's manifest() for: the digest if pinned, else the tag.
  std::string manifest_reference() const;
};

/// Parse `text`. Errors say which part is wrong and what the grammar allows.
Result<Reference> parse_reference(std::string_view text);

}  // namespace kiln::image
