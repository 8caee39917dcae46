#include "image/oci/pins.h"

#include "common/fs.h"
#include "common/sha256.h"
#include "image/oci/json_fields.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kiln::image {
namespace {

using nlohmann::json;
namespace jf = json_fields;

constexpr int kPinVersion = 1;
constexpr uint64_t kMaxPinBytes = 1 << 20;
constexpr size_t kMaxFileName = 200;
constexpr size_t kMaxPinLayers = 512;

json blob_json(const PinnedBlob& b) { return {{"digest", b.digest}, {"size", b.size}, {"media_type", b.media_type}}; }

Result<PinnedBlob> parse_blob(const json& j, std::string_view what) {
  if (!j.is_object()) return make_error("{} is not an object", what);
  PinnedBlob b;
  KILN_ASSIGN_OR_RETURN(b.digest, jf::string_field(j, "digest", true));
  if (!is_sha256_digest(b.digest)) return make_error("{} has an invalid digest", what);
  KILN_ASSIGN_OR_RETURN(b.size, jf::uint_field(j, "size", UINT64_MAX));
  KILN_ASSIGN_OR_RETURN(b.media_type, jf::string_field(j, "media_type", false));
  return b;
}

Result<Pin> parse_pin_doc(const json& doc) {
  KILN_ASSIGN_OR_RETURN(uint64_t version, jf::uint_field(doc, "version", 1000));
  if (version != kPinVersion) return make_error("pin version {} (this kiln writes {})", version, kPinVersion);
  Pin p;
  KILN_ASSIGN_OR_RETURN(p.canonical, jf::string_field(doc, "reference", true));
  KILN_ASSIGN_OR_RETURN(p.top_digest, jf::string_field(doc, "top_digest", true));
  KILN_ASSIGN_OR_RETURN(p.manifest_digest, jf::string_field(doc, "manifest_digest", true));
  if (!is_sha256_digest(p.top_digest) || !is_sha256_digest(p.manifest_digest))
    return make_error("pin has an invalid digest");
  KILN_ASSIGN_OR_RETURN(p.manifest_size, jf::uint_field(doc, "manifest_size", UINT64_MAX));
  auto config = doc.find("config");
  if (config == doc.end()) return make_error("field \"config\" is missing");
  KILN_ASSIGN_OR_RETURN(p.config, parse_blob(*config, "config"));
  auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array() || layers->size() > kMaxPinLayers)
    return make_error("field \"layers\" is missing or not a list of at most {}", kMaxPinLayers);
  for (const auto& l : *layers) {
    KILN_ASSIGN_OR_RETURN(auto b, parse_blob(l, "layer"));
    p.layers.push_back(std::move(b));
  }
  auto pulled = doc.find("pulled_at");
  if (pulled == doc.end() || !pulled->is_number_integer()) return make_error("field \"pulled_at\" is missing");
  p.pulled_at = pulled->get<int64_t>();
  KILN_ASSIGN_OR_RETURN(p.source, jf::string_field(doc, "source", false));
  KILN_ASSIGN_OR_RETURN(p.replaced_by, jf::string_field(doc, "replaced_by", false));
  return p;
}

}  // namespace

std::vector<PinnedBlob> Pin::blobs() const {
  std::vector<PinnedBlob> out{{manifest_digest, manifest_size, ""}, config};
  out.insert(out.end(), layers.begin(), layers.end());
  return out;
}

std::string pin_to_json(const Pin& p) {
  json layers = json::array();
  for (const auto& l : p.layers) layers.push_back(blob_json(l));
  json doc = {{"version", kPinVersion},       {"reference", p.canonical},
              {"top_digest", p.top_digest},   {"manifest_digest", p.manifest_digest},
              {"manifest_size", p.manifest_size}, {"config", blob_json(p.config)},
              {"layers", layers},             {"pulled_at", p.pulled_at},
              {"source", p.source}};
  if (!p.replaced_by.empty()) doc["replaced_by"] = p.replaced_by;
  return doc.dump(2) + "\n";
}

Result<Pin> parse_pin(std::string_view text) {
  KILN_ASSIGN_OR_RETURN(json doc, jf::parse_object(text, kMaxPinBytes, "image pin"));
  auto pin = parse_pin_doc(doc);
  if (!pin) return with_context("image pin", pin.error());
  return pin;
}

PinStore::PinStore(std::filesystem::path root) : dir_(std::move(root) / "refs") {}

std::string PinStore::file_name(const std::string& canonical) {
  std::string out;
  for (unsigned char c : canonical) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  if (out.size() > kMaxFileName) {
    std::string hash = sha256_digest(canonical).substr(7, 32);
    out = out.substr(0, kMaxFileName - hash.size() - 1) + "~" + hash;
  }
  if (out.front() == '.') out = "%2E" + out.substr(1);  // never a hidden file, never "." or ".."
  return out + ".json";
}

Result<std::optional<Pin>> PinStore::read(const std::string& canonical) const {
  auto path = dir_ / file_name(canonical);
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) return std::optional<Pin>();
  auto text = fs::read_file(path, kMaxPinBytes);
  auto pin = text ? parse_pin(*text) : Result<Pin>(text.take_error());
  if (pin && pin->canonical != canonical) pin = make_error("image pin is for {}, not {}", pin->canonical, canonical);
  if (!pin) {
    Error e = with_context(path.string(), pin.error());
    e.kind = ErrorKind::corrupt;
    return e;
  }
  return std::optional<Pin>(std::move(*pin));
}

Result<void> PinStore::write(const Pin& pin) const {
  KILN_TRY(fs::make_dirs(dir_));
  return fs::write_file_atomic(dir_ / file_name(pin.canonical), pin_to_json(pin));
}

Result<bool> PinStore::remove(const std::string& canonical) const {
  auto path = dir_ / file_name(canonical);
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return make_error("cannot remove {}: {}", path.string(), std::strerror(errno));
}

std::vector<PinStore::Listed> PinStore::list() const {
  std::vector<Listed> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.' || e.path().extension() != ".json") continue;
    Listed item{e.path(), std::nullopt, ""};
    auto text = fs::read_file(e.path(), kMaxPinBytes);
    auto pin = text ? parse_pin(*text) : Result<Pin>(text.take_error());
    if (pin) item.pin = std::move(*pin);
    else item.error = pin.error().message;
    out.push_back(std::move(item));
  }
  std::sort(out.begin(), out.end(), [](const Listed& a, const Listed& b) { return a.file < b.file; });
  return out;
}

}  // namespace kiln::image
