#include "remote/artifact.h"

#include "common/digest.h"
#include "common/sha256.h"
#include "image/oci/json_fields.h"
#include "image/oci/media_types.h"

#include <nlohmann/json.hpp>

namespace kiln::remote {
namespace {

namespace jf = image::json_fields;

constexpr std::string_view kTagPrefix = "kiln-";

bool is_hex_id(std::string_view s) { return is_lower_hex(s, 64); }

std::string kind_of(const snapshot::Metadata& meta) { return meta.layer ? meta.layer->kind : "golden"; }

std::string id_of(const snapshot::Metadata& meta) { return meta.layer ? meta.layer_key()->id() : meta.key.id(); }

nlohmann::json descriptor_json(const image::Descriptor& d) {
  return {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
}

Result<image::Descriptor> descriptor_at(const nlohmann::json& doc, std::string_view key, std::string_view media_type,
                                        uint64_t max_size, const std::string& where) {
  const nlohmann::json* obj = nullptr;
  if (key == "layers") {
    if (!doc.contains("layers") || !doc["layers"].is_array() || doc["layers"].size() != 1)
      return make_error("{} is not a kiln snapshot: it must have exactly one layer", where);
    obj = &doc["layers"][0];
  } else {
    if (!doc.contains(key) || !doc[key].is_object()) return make_error("{} has no {}", where, key);
    obj = &doc[key];
  }
  if (!obj->is_object()) return make_error("{}: its {} is not an object", where, key);
  image::Descriptor d;
  KILN_ASSIGN_OR_RETURN(d.media_type, jf::string_field(*obj, "mediaType", true));
  KILN_ASSIGN_OR_RETURN(d.digest, jf::string_field(*obj, "digest", true));
  KILN_ASSIGN_OR_RETURN(d.size, jf::uint_field(*obj, "size", max_size));
  if (d.media_type != media_type)
    return make_error("{} is not a kiln snapshot: its {} has media type '{}', not {}", where, key,
                      d.media_type.substr(0, 100), media_type);
  if (!is_sha256_digest(d.digest)) return make_error("{}: its {} digest is not a sha256 digest", where, key);
  return d;
}

}  // namespace

std::string tag_for(const std::string& id) { return std::string(kTagPrefix) + id; }

std::optional<std::string> id_from_tag(std::string_view s) {
  if (s.substr(0, kTagPrefix.size()) == kTagPrefix) s.remove_prefix(kTagPrefix.size());
  if (!is_hex_id(s)) return std::nullopt;
  return std::string(s);
}

std::string make_config(const std::string& id, std::string_view metadata_json) {
  auto meta = snapshot::parse_metadata(metadata_json);
  nlohmann::json doc = {{"kiln_artifact", 1}, {"id", id}, {"metadata", std::string(metadata_json)}};
  if (meta) {
    doc["kind"] = kind_of(*meta);
    if (meta->parent) doc["parent"] = *meta->parent;
  }
  return doc.dump(2) + "\n";
}

Result<ArtifactConfig> parse_config(std::string_view bytes) {
  KILN_ASSIGN_OR_RETURN(auto doc, jf::parse_object(bytes, kMaxConfigBytes, "kiln snapshot config"));
  KILN_ASSIGN_OR_RETURN(uint64_t version, jf::uint_field(doc, "kiln_artifact", 1000));
  if (version != 1)
    return make_error("the snapshot's config is format {}, this kiln reads format 1: it was pushed by another kiln "
                      "version",
                      version);
  ArtifactConfig c;
  KILN_ASSIGN_OR_RETURN(c.id, jf::string_field(doc, "id", true));
  KILN_ASSIGN_OR_RETURN(c.metadata_json, jf::string_field(doc, "metadata", true));
  KILN_ASSIGN_OR_RETURN(std::string kind, jf::string_field(doc, "kind", true));
  KILN_ASSIGN_OR_RETURN(std::string parent, jf::string_field(doc, "parent", false));
  if (!is_hex_id(c.id)) return make_error("the snapshot's config names no valid id");
  auto meta = snapshot::parse_metadata(c.metadata_json);
  if (!meta) return with_context("the snapshot's config holds unreadable metadata", meta.error());
  c.meta = std::move(*meta);
  if (id_of(c.meta) != c.id)
    return make_error("the snapshot's config says id {} but its metadata is for snapshot {}", c.id.substr(0, 64),
                      id_of(c.meta));
  if (kind != kind_of(c.meta) || parent != c.meta.parent.value_or(""))
    return make_error("the snapshot's config says kind '{}' over '{}', its metadata a {} over '{}'", kind.substr(0, 20),
                      parent.substr(0, 64), kind_of(c.meta), c.meta.parent.value_or(""));
  return c;
}

std::string make_manifest(const image::Descriptor& config, const image::Descriptor& files, const std::string& id) {
  nlohmann::json doc = {{"schemaVersion", 2},
                        {"mediaType", image::media::kOciManifest},
                        {"artifactType", kArtifactType},
                        {"config", descriptor_json(config)},
                        {"layers", nlohmann::json::array({descriptor_json(files)})},
                        {"annotations", {{"dev.kiln.snapshot.id", id}}}};
  return doc.dump();
}

Result<ArtifactManifest> parse_artifact_manifest(std::string_view bytes, const std::string& where) {
  KILN_ASSIGN_OR_RETURN(auto doc, jf::parse_object(bytes, image::kMaxManifestBytes, where));
  KILN_ASSIGN_OR_RETURN(std::string media_type, jf::string_field(doc, "mediaType", false));
  if (!media_type.empty() && media_type != image::media::kOciManifest)
    return make_error("{} is a {}, not a kiln snapshot", where, media_type.substr(0, 100));
  ArtifactManifest m;
  KILN_ASSIGN_OR_RETURN(m.config, descriptor_at(doc, "config", kConfigMediaType, kMaxConfigBytes, where));
  KILN_ASSIGN_OR_RETURN(m.files, descriptor_at(doc, "layers", kFilesMediaType, kMaxFilesBytes, where));
  return m;
}

}  // namespace kiln::remote
