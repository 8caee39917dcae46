// Only built while image/oci/registry_client.cpp (branch oci-registry) is not in the tree:
// registry references then fail with this message. Delete this file once it lands.
#include "image/oci/registry_client.h"

namespace kiln::image {

Result<std::unique_ptr<BlobSource>> make_registry_source(const std::string& registry, const std::string& repository,
                                                         const RegistryOptions&) {
  return make_error("pulling {}/{} needs the registry client, which this kiln build does not have yet; use an "
                    "oci:DIR or docker-archive:FILE reference",
                    registry, repository);
}

}  // namespace kiln::image
