// Registry credentials as `docker login` (and podman/skopeo with $REGISTRY_AUTH_FILE)
// store them: a JSON file whose "auths" map a registry to base64("user:password").
// Credential helpers ("credsStore", "credHelpers") and identity tokens are not used:
// a registry found only there gets no credentials (docs/images.md says so).
#pragma once

#include "common/result.h"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::image {

struct RegistryCredentials {
  std::string username;
  std::string password;
};

/// The file credentials are read from: $REGISTRY_AUTH_FILE if set, else
/// $DOCKER_CONFIG/config.json if set, else ~/.docker/config.json ("" if there is no HOME).
std::filesystem::path registry_auth_file();

/// The credentials for `registry` (host[:port] as the user wrote it; "docker.io",
/// "index.docker.io" and "registry-1.docker.io" all match docker's
/// "https://index.docker.io/v1/" key) in the JSON text of an auth file. Keys may carry a
/// scheme and a path ("https://host:5000/v2/"). nullopt: no entry for that registry.
/// `file` names the file in errors.
Result<std::optional<RegistryCredentials>> credentials_from_auth_json(std::string_view json,
                                                                      const std::string& registry,
                                                                      const std::filesystem::path& file);

/// credentials_from_auth_json() on registry_auth_file(); a missing file is no credentials,
/// an unreadable or malformed one an error naming it.
Result<std::optional<RegistryCredentials>> load_registry_credentials(const std::string& registry);

}  // namespace kiln::image
