#include "image/oci/json_fields.h"

namespace kiln::image::json_fields {

Result<nlohmann::json> parse_object(std::string_view bytes, uint64_t max_bytes, std::string_view what) {
  if (bytes.size() > max_bytes)
    return make_error("{} is {} bytes; kiln reads at most {}", what, bytes.size(), max_bytes);
  auto doc = nlohmann::json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error("{} is not valid JSON", what);
  if (!doc.is_object()) return make_error("{} is not a JSON object", what);
  return doc;
}

Result<std::string> string_field(const nlohmann::json& obj, std::string_view key, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return make_error("field \"{}\" is missing", key);
    return std::string();
  }
  if (!it->is_string()) return make_error("field \"{}\" is not a string", key);
  return it->get<std::string>();
}

Result<uint64_t> uint_field(const nlohmann::json& obj, std::string_view key, uint64_t max) {
  auto it = obj.find(key);
  if (it == obj.end()) return make_error("field \"{}\" is missing", key);
  if (!it->is_number_unsigned()) {
    if (it->is_number_integer()) return make_error("field \"{}\" is negative", key);
    return make_error("field \"{}\" is not a whole number", key);
  }
  uint64_t v = it->get<uint64_t>();
  if (v > max) return make_error("field \"{}\" is {}, more than the {} kiln accepts", key, v, max);
  return v;
}

Result<std::vector<std::string>> string_array_field(const nlohmann::json& obj, std::string_view key,
                                                    size_t max_items) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) return make_error("field \"{}\" is not an array", key);
  if (it->size() > max_items) return make_error("field \"{}\" has {} entries; at most {}", key, it->size(), max_items);
  for (const auto& v : *it) {
    if (!v.is_string()) return make_error("field \"{}\" has an entry that is not a string", key);
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace kiln::image::json_fields
