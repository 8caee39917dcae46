#include "snapshot/metadata.h"

#include "common/digest.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <ctime>
#include <limits>

namespace kiln::snapshot {
namespace {

using nlohmann::json;

// JSON type names for error messages ("got string").
const char* type_name(const json& v) {
  if (v.is_number_unsigned() || v.is_number_integer()) return "integer";
  return v.type_name();
}

Result<const json*> field(const json& obj, const char* name, const std::string& where) {
  auto it = obj.find(name);
  if (it == obj.end()) return make_error("{}: missing field '{}'", where, name);
  return &*it;
}

Result<std::string> get_string(const json& obj, const char* name, const std::string& where) {
  KILN_ASSIGN_OR_RETURN(const json* v, field(obj, name, where));
  if (!v->is_string()) return make_error("{}: field '{}' must be a string, got {}", where, name, type_name(*v));
  return v->get<std::string>();
}

// Unsigned integer in [0, max]. Floats ("512.0") and negative numbers are refused:
// a value that only round-trips approximately must not pass as a key field.
Result<uint64_t> get_uint(const json& obj, const char* name, uint64_t max, const std::string& where) {
  KILN_ASSIGN_OR_RETURN(const json* v, field(obj, name, where));
  bool ok = v->is_number_unsigned() ||
            (v->is_number_integer() && v->get<int64_t>() >= 0);
  if (!ok || v->get<uint64_t>() > max)
    return make_error("{}: field '{}' must be an integer from 0 to {}, got {}", where, name, max,
                      v->is_number() ? v->dump() : type_name(*v));
  return v->get<uint64_t>();
}

Result<int64_t> get_int64(const json& obj, const char* name, const std::string& where) {
  KILN_ASSIGN_OR_RETURN(const json* v, field(obj, name, where));
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()})
    return make_error("{}: field '{}' is out of range: {}", where, name, v->dump());
  if (!v->is_number_integer())
    return make_error("{}: field '{}' must be an integer, got {}", where, name, type_name(*v));
  return v->get<int64_t>();
}

// A name joined to the snapshot directory must stay in it: no separators, no dot names.
bool is_plain_name(const std::string& s) {
  return !s.empty() && s.size() <= 255 && s != "." && s != ".." &&
         s.find('/') == std::string::npos && s.find('\0') == std::string::npos;
}

bool is_hex(const std::string& s) { return is_lower_hex(s, 128); }

Result<FileInfo> parse_file_info(const json& files, const char* which, const std::string& container = "files") {
  std::string where = container + "." + which;
  KILN_ASSIGN_OR_RETURN(const json* f, field(files, which, container));
  if (!f->is_object()) return make_error("{} must be an object, got {}", where, type_name(*f));
  FileInfo info;
  KILN_ASSIGN_OR_RETURN(info.name, get_string(*f, "name", where));
  if (!is_plain_name(info.name)) return make_error("{}: name '{}' is not a plain file name", where, info.name);
  KILN_ASSIGN_OR_RETURN(info.size, get_uint(*f, "size", std::numeric_limits<int64_t>::max(), where));
  KILN_ASSIGN_OR_RETURN(info.digest, get_string(*f, "digest", where));
  if (!is_hex(info.digest)) return make_error("{}: digest '{}' is not a lowercase hex digest", where, info.digest);
  return info;
}

// The `layer` object; `parent` (top level) is already parsed into `m.parent`.
Result<LayerInfo> parse_layer(const json& doc) {
  const std::string where = "layer";
  if (!doc.is_object()) return make_error("metadata: field 'layer' must be an object, got {}", type_name(doc));
  LayerInfo l;
  KILN_ASSIGN_OR_RETURN(l.kind, get_string(doc, "kind", where));
  if (l.kind != kLayerKindPayload && l.kind != kLayerKindFixture)
    return make_error("layer: kind '{}' is neither '{}' nor '{}'", l.kind, kLayerKindPayload, kLayerKindFixture);
  KILN_ASSIGN_OR_RETURN(l.content_digest, get_string(doc, "content_digest", where));
  KILN_ASSIGN_OR_RETURN(l.label, get_string(doc, "label", where));
  KILN_ASSIGN_OR_RETURN(uint64_t depth, get_uint(doc, "depth", kMaxLayerDepth, where));
  if (depth == 0) return make_error("layer: depth must be from 1 to {}, got 0", kMaxLayerDepth);
  l.depth = static_cast<uint32_t>(depth);
  KILN_ASSIGN_OR_RETURN(l.parent_digest, get_string(doc, "parent_digest", where));
  if (!is_hex(l.parent_digest))
    return make_error("layer: parent_digest '{}' is not a lowercase hex digest", l.parent_digest);
  KILN_ASSIGN_OR_RETURN(l.index, parse_file_info(doc, "index", where));
  KILN_ASSIGN_OR_RETURN(l.memory_size, get_uint(doc, "memory_size", std::numeric_limits<int64_t>::max(), where));
  return l;
}

json file_info_json(const FileInfo& f) {
  return json::object({{"name", f.name}, {"size", f.size}, {"digest", f.digest}});
}

Result<Metadata> parse_object(const json& doc) {
  const std::string top = "metadata";
  if (!doc.is_object()) return make_error("metadata must be a JSON object, got {}", type_name(doc));

  // The version decides how to read the rest, so check it before anything else.
  KILN_ASSIGN_OR_RETURN(const json* ver, field(doc, "format_version", top));
  if (!ver->is_number_integer())
    return make_error("metadata: field 'format_version' must be an integer, got {}", type_name(*ver));
  if (ver->is_number_unsigned() ? ver->get<uint64_t>() > uint64_t{kFormatVersion}
                                : ver->get<int64_t>() > kFormatVersion)
    return make_error("snapshot format {} is newer than this kiln understands (format {}); "
                      "upgrade kiln or remove the snapshot with `kiln snapshots rm`",
                      ver->dump(), kFormatVersion);
  if (ver->get<int64_t>() < kFormatVersion)
    return make_error("snapshot format {} is older than this kiln understands (format {}); "
                      "it has to be rebaked",
                      ver->dump(), kFormatVersion);

  Metadata m;
  m.format_version = kFormatVersion;
  SnapshotKey& k = m.key;
  constexpr uint64_t u32max = std::numeric_limits<uint32_t>::max();
  KILN_ASSIGN_OR_RETURN(k.image, get_string(doc, "image", top));
  KILN_ASSIGN_OR_RETURN(k.image_digest, get_string(doc, "image_digest", top));
  KILN_ASSIGN_OR_RETURN(k.kernel_digest, get_string(doc, "kernel_digest", top));
  KILN_ASSIGN_OR_RETURN(k.initramfs_digest, get_string(doc, "initramfs_digest", top));
  KILN_ASSIGN_OR_RETURN(uint64_t mem, get_uint(doc, "memory_mib", u32max, top));
  KILN_ASSIGN_OR_RETURN(uint64_t cpus, get_uint(doc, "vcpus", u32max, top));
  k.memory_mib = static_cast<uint32_t>(mem);
  k.vcpus = static_cast<uint32_t>(cpus);
  KILN_ASSIGN_OR_RETURN(k.engine, get_string(doc, "engine", top));
  KILN_ASSIGN_OR_RETURN(k.baked_by_version, get_string(doc, "baked_by_version", top));
  KILN_ASSIGN_OR_RETURN(k.cmdline, get_string(doc, "cmdline", top));
  KILN_ASSIGN_OR_RETURN(m.created, get_string(doc, "created", top));
  KILN_ASSIGN_OR_RETURN(m.created_ns, get_int64(doc, "created_ns", top));

  KILN_ASSIGN_OR_RETURN(const json* files, field(doc, "files", top));
  if (!files->is_object()) return make_error("metadata: field 'files' must be an object, got {}", type_name(*files));
  KILN_ASSIGN_OR_RETURN(m.state, parse_file_info(*files, "state"));
  KILN_ASSIGN_OR_RETURN(m.memory, parse_file_info(*files, "memory"));
  if (m.state.name == m.memory.name)
    return make_error("metadata: files.state and files.memory both name '{}'", m.state.name);

  // `parent` may be absent (written by no released kiln, but harmless) or null.
  if (auto it = doc.find("parent"); it != doc.end() && !it->is_null()) {
    if (!it->is_string()) return make_error("metadata: field 'parent' must be null or a string, got {}", type_name(*it));
    std::string parent = it->get<std::string>();
    if (!is_plain_name(parent)) return make_error("metadata: parent '{}' is not a snapshot id", parent);
    m.parent = std::move(parent);
  }
  if (auto it = doc.find("layer"); it != doc.end() && !it->is_null()) {
    KILN_ASSIGN_OR_RETURN(auto layer, parse_layer(*it));
    m.layer = std::move(layer);
  }
  if (m.parent.has_value() != m.layer.has_value())
    return make_error("metadata: 'parent' and 'layer' must be both set (a layer) or both null (a golden)");
  if (m.layer && (m.layer->index.name == m.state.name || m.layer->index.name == m.memory.name))
    return make_error("metadata: layer.index names '{}', which another file already uses", m.layer->index.name);
  return m;
}

}  // namespace

std::optional<LayerKey> Metadata::layer_key() const {
  if (!parent || !layer) return std::nullopt;
  return LayerKey{*parent, layer->kind, layer->content_digest, layer->label};
}

std::string to_json(const Metadata& meta) {
  // ordered_json keeps the keys in this human-friendly order in the file.
  nlohmann::ordered_json j;
  j["format_version"] = meta.format_version;
  j["image"] = meta.key.image;
  j["image_digest"] = meta.key.image_digest;
  j["kernel_digest"] = meta.key.kernel_digest;
  j["initramfs_digest"] = meta.key.initramfs_digest;
  j["memory_mib"] = meta.key.memory_mib;
  j["vcpus"] = meta.key.vcpus;
  j["engine"] = meta.key.engine;
  j["baked_by_version"] = meta.key.baked_by_version;
  j["cmdline"] = meta.key.cmdline;
  j["created"] = meta.created;
  j["created_ns"] = meta.created_ns;
  j["files"] = nlohmann::ordered_json::object(
      {{"state", file_info_json(meta.state)}, {"memory", file_info_json(meta.memory)}});
  j["parent"] = meta.parent ? nlohmann::ordered_json(*meta.parent) : nlohmann::ordered_json(nullptr);
  if (meta.layer) {
    const LayerInfo& l = *meta.layer;
    j["layer"] = nlohmann::ordered_json::object({{"kind", l.kind},
                                                 {"content_digest", l.content_digest},
                                                 {"label", l.label},
                                                 {"depth", l.depth},
                                                 {"parent_digest", l.parent_digest},
                                                 {"index", file_info_json(l.index)},
                                                 {"memory_size", l.memory_size}});
  } else {
    j["layer"] = nullptr;
  }
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

Result<Metadata> parse_metadata(std::string_view text) {
  if (text.size() > kMaxMetadataBytes)
    return make_error("metadata is {} bytes, more than the {} kiln accepts; it is not a kiln snapshot's",
                      text.size(), kMaxMetadataBytes);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...";
    // the bracketed id means nothing to a user.
    std::string what = e.what();
    if (auto pos = what.find("] "); pos != std::string::npos) what.erase(0, pos + 2);
    return make_error("metadata is not valid JSON ({})", what);
  }
  try {
    return parse_object(doc);
  } catch (const json::exception& e) {
    // Every access above is type-checked first; this is a backstop so a missed case
    // is a clear error rather than a crash.
    return make_error("metadata is malformed ({})", e.what());
  }
}

std::string rfc3339_utc(int64_t unix_ns) {
  // Floor division so instants before 1970 still format correctly.
  int64_t secs = unix_ns / 1'000'000'000;
  if (unix_ns % 1'000'000'000 < 0) --secs;
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  if (::gmtime_r(&t, &tm) == nullptr) return "1970-01-01T00:00:00Z";
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return n ? std::string(buf, n) : std::string("1970-01-01T00:00:00Z");
}

}  // namespace kiln::snapshot
