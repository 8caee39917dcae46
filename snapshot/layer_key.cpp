#include "snapshot/layer_key.h"

#include "common/digest.h"

namespace kiln::snapshot {

std::string LayerKey::id() const {
  // Same length-prefixed encoding as SnapshotKey::id(), under its own tag, so a layer
  // id can never equal a golden's id. `label` is deliberately left out: renaming what
  // the listing shows must not rebuild the layer.
  std::string canonical = "kiln-layer-key/1\n";
  auto put = [&canonical](const char* name, const std::string& value) {
    canonical.append(name).append("=").append(std::to_string(value.size())).append(":").append(value).append("\n");
  };
  put("parent_id", parent_id);
  put("kind", kind);
  put("content_digest", content_digest);
  return digest_bytes(canonical);
}

}  // namespace kiln::snapshot
