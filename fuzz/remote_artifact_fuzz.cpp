// Fuzzes what a pull reads from a registry before anything enters the store
// (remote/artifact.h, remote/snapshot_archive.h): the manifest (first byte % 3 == 0),
// the config (1), and the files archive (2), unpacked into a fresh directory against a
// fixed metadata: every member checked for name, order, type, size and offsets.
#include "remote/artifact.h"
#include "remote/snapshot_archive.h"
#include "snapshot/key.h"
#include "snapshot/metadata.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string_view>

namespace {

// A golden of 64 KiB memory and a 16-byte state: the archive's members must fit it.
const std::string& metadata_json() {
  static const std::string json = [] {
    kiln::snapshot::Metadata m;
    m.key.image = "default";
    m.key.memory_mib = 1;
    m.key.vcpus = 1;
    m.key.engine = "fuzz";
    m.key.baked_by_version = "0";
    m.created = "1970-01-01T00:00:00Z";
    m.state = {"state.bin", 16, std::string(32, '0')};
    m.memory = {"memory.ram", 65536, std::string(32, '0')};
    return kiln::snapshot::to_json(m);
  }();
  return json;
}

const std::filesystem::path& work() {
  static const std::filesystem::path dir = [] {
    // One fixed directory, reused by every run (libFuzzer exits without destructors).
    auto d = std::filesystem::temp_directory_path() / "kiln-remote-artifact-fuzz";
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      auto m = kiln::remote::parse_artifact_manifest(bytes, "fuzz");
      if (m && (m->config.media_type != kiln::remote::kConfigMediaType ||
                m->files.media_type != kiln::remote::kFilesMediaType))
        std::abort();
      return 0;
    }
    case 1: {
      auto c = kiln::remote::parse_config(bytes);
      if (c && kiln::remote::make_config(c->id, c->metadata_json).empty()) std::abort();
      return 0;
    }
    default: {
      const auto archive = work() / "files.tar.zst";
      const auto dir = work() / "out";
      std::filesystem::remove_all(dir);
      std::filesystem::create_directories(dir);
      std::ofstream(archive, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      auto meta = kiln::remote::unpack_snapshot(archive, metadata_json(), dir);
      // Whatever unpacked stays inside `dir`, at the sizes the metadata gives.
      if (meta && std::filesystem::file_size(dir / "memory.ram") != 65536) std::abort();
      return 0;
    }
  }
}
