// Typed, checked reads of fields of untrusted JSON documents (manifests, configs, pins):
// a missing field or a wrong type is an error naming the field, never an exception.
#pragma once

#include "common/result.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::image::json_fields {

/// Parse `bytes` as one JSON object (what = "image manifest", for messages).
Result<nlohmann::json> parse_object(std::string_view bytes, uint64_t max_bytes, std::string_view what);

/// obj[key] as a string; `required` false: "" when absent (null counts as absent).
Result<std::string> string_field(const nlohmann::json& obj, std::string_view key, bool required);
/// obj[key] as a non-negative integer <= max.
Result<uint64_t> uint_field(const nlohmann::json& obj, std::string_view key, uint64_t max);
/// obj[key] as an array of strings (absent or null: empty), at most `max_items`.
Result<std::vector<std::string>> string_array_field(const nlohmann::json& obj, std::string_view key,
                                                    size_t max_items);

}  // namespace kiln::image::json_fields
