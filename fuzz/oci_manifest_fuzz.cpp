// Fuzzes the OCI index, manifest and config parsers and the manifest classifier: every
// manifest and config comes from a registry or an image file, so all are untrusted.
// Whatever parses must satisfy what the puller relies on: sha256 digests, sizes within
// bounds, accepted layer types, counts within bounds.
#include "common/sha256.h"
#include "image/oci/image_config.h"
#include "image/oci/manifest.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void check(const kiln::image::Descriptor& d, uint64_t max) {
  if (!kiln::is_sha256_digest(d.digest) || d.size > max) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::image;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)classify_manifest({std::string(text), ""});
  if (auto index = parse_index(text)) {
    if (index->manifests.size() > kMaxIndexEntries) std::abort();
    for (const auto& d : index->manifests) check(d, kMaxManifestBytes);
    if (auto d = select_platform(*index); d && (!d->platform || d->platform->architecture != "amd64")) std::abort();
  }
  if (auto m = parse_manifest(text)) {
    check(m->config, kMaxConfigBytes);
    if (m->layers.size() > kMaxLayers) std::abort();
    for (const auto& l : m->layers) {
      check(l, kMaxLayerBytes);
      if (!check_layer_media_type(l.media_type)) std::abort();
    }
    if (auto c = parse_image_config(text)) (void)check_config_matches(*c, *m);
  }
  if (auto c = parse_image_config(text)) {
    for (const auto& id : c->diff_ids)
      if (!kiln::is_sha256_digest(id)) std::abort();
    for (const auto& e : c->run.env)
      if (e.find('=') == std::string::npos) std::abort();
  }
  return 0;
}
