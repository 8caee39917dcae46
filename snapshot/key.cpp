#include "snapshot/key.h"

#include "common/digest.h"

#include <string_view>

namespace kiln::snapshot {
namespace {

// Each field is written as `name=<byte length>:<value>\n`. The length prefix makes
// the encoding unambiguous (no value can forge a field boundary, whatever bytes it
// holds), and naming every field means reordering or adding fields changes every id
// instead of silently colliding with an old one.
void put(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.push_back('=');
  out.append(std::to_string(value.size()));
  out.push_back(':');
  out.append(value);
  out.push_back('\n');
}

}  // namespace

std::string SnapshotKey::id() const {
  // Bump the tag whenever the serialization changes, so old ids can never be reused
  // for differently-derived keys.
  std::string canonical = "kiln-snapshot-key/1\n";
  put(canonical, "image", image);
  put(canonical, "image_digest", image_digest);
  put(canonical, "kernel_digest", kernel_digest);
  put(canonical, "initramfs_digest", initramfs_digest);
  put(canonical, "memory_mib", std::to_string(memory_mib));
  put(canonical, "vcpus", std::to_string(vcpus));
  put(canonical, "engine", engine);
  put(canonical, "baked_by_version", baked_by_version);
  put(canonical, "cmdline", cmdline);
  return digest_bytes(canonical);
}

}  // namespace kiln::snapshot
