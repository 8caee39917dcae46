#include "image/oci/manifest.h"

#include "common/sha256.h"
#include "image/oci/json_fields.h"
#include "image/oci/media_types.h"

#include <algorithm>

namespace kiln::image {
namespace {

using nlohmann::json;
namespace jf = json_fields;

bool is_index_type(std::string_view t) { return t == media::kOciIndex || t == media::kDockerList; }
bool is_manifest_type(std::string_view t) { return t == media::kOciManifest || t == media::kDockerManifest; }
bool is_schema1_type(std::string_view t) { return t == media::kDockerSchema1 || t == media::kDockerSchema1Signed; }

// "application/json; charset=utf-8" -> "application/json"
std::string_view strip_parameters(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

Error schema1_error() {
  return make_error(
      "the image has a Docker schema 1 manifest, which kiln does not read (deprecated since 2017; "
      "re-push the image with a current docker or skopeo to get a schema 2 / OCI manifest)");
}

Result<Descriptor> parse_descriptor(const json& d, uint64_t max_size, std::string_view what) {
  if (!d.is_object()) return make_error("{} is not a JSON object", what);
  Descriptor out;
  auto fail = [&](const Error& e) { return with_context(std::string(what), e); };
  auto media_type = jf::string_field(d, "mediaType", true);
  if (!media_type) return fail(media_type.error());
  out.media_type = std::move(*media_type);
  auto digest = jf::string_field(d, "digest", true);
  if (!digest) return fail(digest.error());
  if (!is_sha256_digest(*digest))
    return make_error("{}: digest \"{}\" is not sha256:<64 lowercase hex digits>", what, digest->substr(0, 80));
  out.digest = std::move(*digest);
  auto size = jf::uint_field(d, "size", max_size);
  if (!size) return fail(size.error());
  out.size = *size;
  if (auto it = d.find("urls"); it != d.end() && !it->is_null() && !(it->is_array() && it->empty()))
    return make_error("{} {} has external URLs (a foreign layer); kiln only fetches from the image's source", what,
                      out.digest);
  return out;
}

Result<std::optional<Platform>> parse_platform(const json& entry) {
  auto it = entry.find("platform");
  if (it == entry.end() || it->is_null()) return std::optional<Platform>();
  if (!it->is_object()) return make_error("\"platform\" is not a JSON object");
  Platform p;
  KILN_ASSIGN_OR_RETURN(p.os, jf::string_field(*it, "os", true));
  KILN_ASSIGN_OR_RETURN(p.architecture, jf::string_field(*it, "architecture", true));
  KILN_ASSIGN_OR_RETURN(p.variant, jf::string_field(*it, "variant", false));
  return std::optional<Platform>(std::move(p));
}

Result<std::map<std::string, std::string>> parse_annotations(const json& entry) {
  std::map<std::string, std::string> out;
  auto it = entry.find("annotations");
  if (it == entry.end() || it->is_null()) return out;
  if (!it->is_object()) return make_error("\"annotations\" is not a JSON object");
  for (const auto& [k, v] : it->items())
    if (v.is_string()) out.emplace(k, v.get<std::string>());
  return out;
}

Result<void> check_schema_version(const json& doc, std::string_view what) {
  auto version = jf::uint_field(doc, "schemaVersion", 1000);
  if (!version) return with_context(std::string(what), version.error());
  if (*version == 1) return schema1_error();
  if (*version != 2) return make_error("{} has schemaVersion {}; kiln reads version 2", what, *version);
  return {};
}

}  // namespace

std::string Platform::str() const {
  return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

Result<void> check_layer_media_type(std::string_view t) {
  if (t == media::kOciLayerTar || t == media::kOciLayerGzip || t == media::kOciLayerZstd ||
      t == media::kDockerLayerGzip || t == media::kDockerLayerTar)
    return {};
  if (t == media::kDockerForeignLayer || t.substr(0, media::kOciNondistributablePrefix.size()) ==
                                             media::kOciNondistributablePrefix)
    return make_error(
        "layer media type {} is a foreign (non-distributable) layer, fetched from elsewhere than the "
        "image's source; kiln does not fetch those (Windows base layers are the usual case)",
        t);
  return make_error(
      "layer media type \"{}\" is not one kiln unpacks (it takes OCI tar, tar+gzip, tar+zstd and "
      "Docker rootfs.diff.tar[.gzip] layers)",
      t.substr(0, 200));
}

Result<ManifestKind> classify_manifest(const FetchedManifest& fetched) {
  std::string_view header = strip_parameters(fetched.media_type);
  if (is_schema1_type(header)) return schema1_error();
  KILN_ASSIGN_OR_RETURN(json doc, jf::parse_object(fetched.bytes, kMaxManifestBytes, "manifest"));
  if (auto v = doc.find("schemaVersion"); v != doc.end() && *v == 1) return schema1_error();
  KILN_ASSIGN_OR_RETURN(std::string body, jf::string_field(doc, "mediaType", false));
  std::string_view type = body.empty() ? header : std::string_view(body);
  if (!body.empty() && (is_index_type(header) || is_manifest_type(header)) && header != body)
    return make_error("the source said the manifest is {} but its body says {}", header, body.substr(0, 200));
  if (is_index_type(type)) return ManifestKind::index;
  if (is_manifest_type(type)) return ManifestKind::manifest;
  if (is_schema1_type(type)) return schema1_error();
  if (body.empty() && (type.empty() || type == "application/json" || type == "text/plain" ||
                       type == "application/octet-stream")) {
    if (doc.contains("manifests")) return ManifestKind::index;
    if (doc.contains("layers")) return ManifestKind::manifest;
  }
  return make_error(
      "manifest media type \"{}\" is not one kiln reads (it takes OCI image index/manifest and Docker "
      "manifest list/v2 schema 2)",
      std::string(type.substr(0, 200)));
}

Result<ImageIndex> parse_index(std::string_view bytes) {
  KILN_ASSIGN_OR_RETURN(json doc, jf::parse_object(bytes, kMaxManifestBytes, "image index"));
  KILN_TRY(check_schema_version(doc, "image index"));
  auto it = doc.find("manifests");
  if (it == doc.end() || !it->is_array()) return make_error("image index has no \"manifests\" array");
  if (it->size() > kMaxIndexEntries)
    return make_error("image index has {} entries; kiln reads at most {}", it->size(), kMaxIndexEntries);
  ImageIndex index;
  for (size_t i = 0; i < it->size(); ++i) {
    std::string what = fmt::format("image index entry {}", i);
    KILN_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor((*it)[i], kMaxManifestBytes, what));
    auto platform = parse_platform((*it)[i]);
    if (!platform) return with_context(what, platform.error());
    d.platform = std::move(*platform);
    auto annotations = parse_annotations((*it)[i]);
    if (!annotations) return with_context(what, annotations.error());
    d.annotations = std::move(*annotations);
    index.manifests.push_back(std::move(d));
  }
  return index;
}

Result<ImageManifest> parse_manifest(std::string_view bytes) {
  KILN_ASSIGN_OR_RETURN(json doc, jf::parse_object(bytes, kMaxManifestBytes, "image manifest"));
  KILN_TRY(check_schema_version(doc, "image manifest"));
  ImageManifest m;
  KILN_ASSIGN_OR_RETURN(m.media_type, jf::string_field(doc, "mediaType", false));
  if (m.media_type.empty()) m.media_type = std::string(media::kOciManifest);  // optional in OCI
  if (!is_manifest_type(m.media_type))
    return make_error("image manifest has media type \"{}\", not an OCI or Docker v2 image manifest",
                      m.media_type.substr(0, 200));
  auto config = doc.find("config");
  if (config == doc.end()) return make_error("image manifest has no \"config\"");
  KILN_ASSIGN_OR_RETURN(m.config, parse_descriptor(*config, kMaxConfigBytes, "image manifest config"));
  if (m.config.media_type != media::kOciConfig && m.config.media_type != media::kDockerConfig)
    return make_error(
        "the image's config has media type \"{}\", not an image config (this may be an artifact such as "
        "a Helm chart or a signature, not a container image)",
        m.config.media_type.substr(0, 200));
  auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array()) return make_error("image manifest has no \"layers\" array");
  if (layers->size() > kMaxLayers)
    return make_error("image manifest has {} layers; kiln reads at most {}", layers->size(), kMaxLayers);
  for (size_t i = 0; i < layers->size(); ++i) {
    std::string what = fmt::format("layer {}", i);
    KILN_ASSIGN_OR_RETURN(Descriptor d, parse_descriptor((*layers)[i], kMaxLayerBytes, what));
    auto type_ok = check_layer_media_type(d.media_type);
    if (!type_ok) return with_context(fmt::format("{} ({})", what, d.digest), type_ok.error());
    m.layers.push_back(std::move(d));
  }
  return m;
}

Result<Descriptor> select_platform(const ImageIndex& index, std::string_view os, std::string_view architecture) {
  std::vector<std::string> have;
  for (const auto& d : index.manifests) {
    if (!d.platform) {
      have.push_back("(no platform)");
      continue;
    }
    if (d.platform->os == os && d.platform->architecture == architecture) return d;
    have.push_back(d.platform->str());
  }
  std::sort(have.begin(), have.end());
  have.erase(std::unique(have.begin(), have.end()), have.end());
  if (have.empty()) return make_error("the image index is empty: it names no image for {}/{}", os, architecture);
  return make_error("the image has no {}/{} variant; it has: {}", os, architecture, fmt::join(have, ", "));
}

}  // namespace kiln::image
