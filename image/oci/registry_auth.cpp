#include "image/oci/registry_auth.h"

#include "common/fs.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace kiln::image {

namespace {

constexpr uint64_t kMaxAuthFileBytes = 4 << 20;

/// Strict base64 (RFC 4648, padding optional); nullopt on any other character.
std::optional<std::string> decode_base64(std::string_view in) {
  std::array<int, 256> value{};
  value.fill(-1);
  const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64; ++i) value[static_cast<unsigned char>(alphabet[i])] = i;
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : in) {
    int v = value[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

/// "https://Host:5000/v2/" -> "host:5000": the host[:port] an auths key names.
std::string key_host(std::string_view key) {
  if (auto scheme = key.find("://"); scheme != std::string_view::npos) key.remove_prefix(scheme + 3);
  if (auto slash = key.find('/'); slash != std::string_view::npos) key = key.substr(0, slash);
  std::string host(key);
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return host;
}

bool is_docker_hub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

bool key_matches(std::string_view key, const std::string& registry) {
  std::string host = key_host(key);
  std::string wanted = key_host(registry);
  return host == wanted || (is_docker_hub(host) && is_docker_hub(wanted));
}

Result<RegistryCredentials> entry_credentials(const nlohmann::json& entry, std::string_view key,
                                              const std::filesystem::path& file) {
  if (!entry.is_object()) {
    return make_error("{}: auths[\"{}\"] is not a JSON object; fix or remove that entry (docker login rewrites it)",
                      file.string(), key);
  }
  if (auto auth = entry.find("auth"); auth != entry.end() && auth->is_string() && !auth->get<std::string>().empty()) {
    std::optional<std::string> decoded = decode_base64(auth->get<std::string>());
    size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return make_error("{}: auths[\"{}\"].auth is not base64 of \"user:password\"; log in again (docker login {})",
                        file.string(), key, key_host(key));
    }
    return RegistryCredentials{decoded->substr(0, colon), decoded->substr(colon + 1)};
  }
  auto user = entry.find("username");
  auto pass = entry.find("password");
  if (user != entry.end() && pass != entry.end() && user->is_string() && pass->is_string()) {
    return RegistryCredentials{user->get<std::string>(), pass->get<std::string>()};
  }
  return make_error(
      "{}: auths[\"{}\"] has no \"auth\" (base64 user:password); kiln does not use credential helpers or "
      "identity tokens: log in with a plain auth file (docker login, or podman login --authfile)",
      file.string(), key);
}

}  // namespace

std::filesystem::path registry_auth_file() {
  if (const char* f = std::getenv("REGISTRY_AUTH_FILE"); f && *f) return f;
  if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) return std::filesystem::path(d) / "config.json";
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".docker/config.json";
  return {};
}

Result<std::optional<RegistryCredentials>> credentials_from_auth_json(std::string_view json,
                                                                      const std::string& registry,
                                                                      const std::filesystem::path& file) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return make_error("{} is not valid JSON; fix it or point $REGISTRY_AUTH_FILE at a valid auth file",
                      file.string());
  }
  if (!doc.is_object()) return make_error("{}: expected a JSON object with \"auths\"", file.string());
  auto auths = doc.find("auths");
  if (auths == doc.end() || auths->is_null()) return std::optional<RegistryCredentials>{};
  if (!auths->is_object()) return make_error("{}: \"auths\" is not a JSON object", file.string());
  // An exact key wins over a normalised match ("https://host/v2/" and "host" both present).
  for (const auto& [key, entry] : auths->items()) {
    if (key == registry) {
      KILN_ASSIGN_OR_RETURN(RegistryCredentials c, entry_credentials(entry, key, file));
      return std::optional<RegistryCredentials>{std::move(c)};
    }
  }
  for (const auto& [key, entry] : auths->items()) {
    if (key_matches(key, registry)) {
      KILN_ASSIGN_OR_RETURN(RegistryCredentials c, entry_credentials(entry, key, file));
      return std::optional<RegistryCredentials>{std::move(c)};
    }
  }
  return std::optional<RegistryCredentials>{};
}

Result<std::optional<RegistryCredentials>> load_registry_credentials(const std::string& registry) {
  std::filesystem::path file = registry_auth_file();
  if (file.empty()) return std::optional<RegistryCredentials>{};
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) {
    if (std::getenv("REGISTRY_AUTH_FILE") && *std::getenv("REGISTRY_AUTH_FILE")) {
      return make_error("$REGISTRY_AUTH_FILE names {}, which does not exist; fix the variable or unset it",
                        file.string());
    }
    return std::optional<RegistryCredentials>{};
  }
  auto text = fs::read_file(file, kMaxAuthFileBytes);
  if (!text) return with_context("reading registry credentials", text.error());
  return credentials_from_auth_json(*text, registry, file);
}

}  // namespace kiln::image
