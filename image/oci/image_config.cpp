#include "image/oci/image_config.h"

#include "common/sha256.h"
#include "image/oci/json_fields.h"

namespace kiln::image {
namespace {

using nlohmann::json;
namespace jf = json_fields;

constexpr size_t kMaxEnv = 4096;
constexpr size_t kMaxArgs = 4096;

Result<ImageRunConfig> parse_run_config(const json& doc) {
  ImageRunConfig run;
  auto it = doc.find("config");
  if (it == doc.end() || it->is_null()) return run;  // optional: an image without settings
  if (!it->is_object()) return make_error("\"config\" is not a JSON object");
  const json& c = *it;
  KILN_ASSIGN_OR_RETURN(run.env, jf::string_array_field(c, "Env", kMaxEnv));
  for (const auto& e : run.env)
    if (e.find('=') == std::string::npos || e.front() == '=')
      return make_error("Env entry \"{}\" is not KEY=VALUE", e.substr(0, 100));
  KILN_ASSIGN_OR_RETURN(run.working_dir, jf::string_field(c, "WorkingDir", false));
  KILN_ASSIGN_OR_RETURN(run.user, jf::string_field(c, "User", false));
  KILN_ASSIGN_OR_RETURN(run.entrypoint, jf::string_array_field(c, "Entrypoint", kMaxArgs));
  KILN_ASSIGN_OR_RETURN(run.cmd, jf::string_array_field(c, "Cmd", kMaxArgs));
  return run;
}

Result<std::vector<std::string>> parse_diff_ids(const json& doc) {
  auto rootfs = doc.find("rootfs");
  if (rootfs == doc.end() || !rootfs->is_object()) return make_error("\"rootfs\" is missing or not an object");
  KILN_ASSIGN_OR_RETURN(std::string type, jf::string_field(*rootfs, "type", true));
  if (type != "layers") return make_error("rootfs.type is \"{}\", not \"layers\"", type.substr(0, 100));
  KILN_ASSIGN_OR_RETURN(auto ids, jf::string_array_field(*rootfs, "diff_ids", kMaxLayers));
  for (const auto& id : ids)
    if (!is_sha256_digest(id))
      return make_error("rootfs.diff_ids entry \"{}\" is not sha256:<64 hex digits>", id.substr(0, 80));
  return ids;
}

}  // namespace

Result<ImageConfig> parse_image_config(std::string_view bytes) {
  auto doc = jf::parse_object(bytes, kMaxConfigBytes, "image config");
  if (!doc) return doc.take_error();
  ImageConfig out;
  auto fail = [](const Error& e) { return with_context("image config", e); };
  auto os = jf::string_field(*doc, "os", false);
  auto arch = jf::string_field(*doc, "architecture", false);
  if (!os) return fail(os.error());
  if (!arch) return fail(arch.error());
  out.os = std::move(*os);
  out.architecture = std::move(*arch);
  auto run = parse_run_config(*doc);
  if (!run) return fail(run.error());
  out.run = std::move(*run);
  auto ids = parse_diff_ids(*doc);
  if (!ids) return fail(ids.error());
  out.diff_ids = std::move(*ids);
  return out;
}

Result<void> check_config_matches(const ImageConfig& config, const ImageManifest& manifest) {
  if (config.diff_ids.size() != manifest.layers.size())
    return make_error("the image config lists {} layer(s) (rootfs.diff_ids) but the manifest has {}",
                      config.diff_ids.size(), manifest.layers.size());
  if ((!config.os.empty() && config.os != "linux") || (!config.architecture.empty() && config.architecture != "amd64"))
    return make_error("the image is for {}/{}; kiln runs linux/amd64 images", config.os, config.architecture);
  return {};
}

}  // namespace kiln::image
