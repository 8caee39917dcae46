// OCI image layouts for the puller tests: real ones written by umoci, hand-made blobs
// and index entries for the bad cases, a docker-save archive written with libarchive from
// a layout's blobs, and a BlobSource wrapper that damages or counts fetches.
#pragma once

#include "common/sha256.h"
#include "common/subprocess.h"
#include "image/oci/blob_source.h"
#include "image/oci/oci_layout.h"
#include "image/oci/reference.h"
#include "tests/unit/image/image_test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::image::testing {

inline bool have_umoci() {
  auto r = run_captured({"umoci", "--version"});
  return r && r->exit_code == 0;
}

#define KILN_REQUIRE_UMOCI() \
  if (!::kiln::image::testing::have_umoci()) GTEST_SKIP() << "umoci not installed (apt-get install umoci)"

inline void umoci(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"umoci"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_captured(argv);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->exit_code, 0) << "umoci " << args[0] << ": " << r->err;
}

inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// Add a blob to a layout; returns its digest.
inline std::string add_blob(const std::filesystem::path& layout, const std::string& bytes) {
  std::string digest = sha256_digest(bytes);
  write(layout / "blobs" / "sha256" / digest.substr(7), bytes);
  return digest;
}

/// Add an index.json entry tagged `tag` pointing at `bytes` (stored as a blob).
inline void add_tagged(const std::filesystem::path& layout, const std::string& tag, const std::string& media_type,
                       const std::string& bytes) {
  auto index = nlohmann::json::parse(read_all(layout / "index.json"));
  index["manifests"].push_back({{"mediaType", media_type},
                                {"digest", add_blob(layout, bytes)},
                                {"size", bytes.size()},
                                {"annotations", {{"org.opencontainers.image.ref.name", tag}}}});
  write(layout / "index.json", index.dump());
}

/// The manifest JSON a layout's tag names.
inline nlohmann::json tagged_manifest(const std::filesystem::path& layout, const std::string& tag) {
  auto index = nlohmann::json::parse(read_all(layout / "index.json"));
  for (const auto& m : index["manifests"])
    if (m["annotations"]["org.opencontainers.image.ref.name"] == tag)
      return nlohmann::json::parse(
          read_all(layout / "blobs" / "sha256" / m["digest"].get<std::string>().substr(7)));
  return nullptr;
}

/// A layout with t1 = [layer a.txt] and t2 = [layer a.txt, layer b.txt] (sharing the
/// first layer), t1 with Env, WorkingDir and User set.
inline void make_two_image_layout(const std::filesystem::path& dir) {
  auto layout = (dir / "layout").string();
  umoci({"init", "--layout", layout});
  umoci({"new", "--image", layout + ":t1"});
  write(dir / "a.txt", "hello from layer a\n");
  umoci({"insert", "--image", layout + ":t1", (dir / "a.txt").string(), "/a.txt"});
  umoci({"config", "--image", layout + ":t1", "--config.env", "GREETING=hi", "--config.workingdir", "/srv",
         "--config.user", "1000:1000", "--config.cmd", "sh"});
  umoci({"tag", "--image", layout + ":t1", "t2"});
  write(dir / "b.txt", "hello from layer b\n");
  umoci({"insert", "--image", layout + ":t2", (dir / "b.txt").string(), "/b.txt"});
}

/// Uncompress a gzip blob (libarchive's raw format).
inline std::string gunzip(const std::string& gz) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  std::string out;
  archive_entry* e = nullptr;
  if (archive_read_open_memory(a, gz.data(), gz.size()) == ARCHIVE_OK && archive_read_next_header(a, &e) == ARCHIVE_OK) {
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  archive_read_free(a);
  return out;
}

/// Write a `docker save` tarball (legacy layout: <id>/layer.tar, <config hex>.json,
/// manifest.json) of `tag` of an OCI layout: layers uncompressed, as docker saves them.
/// `images` > 1 repeats the image entry in manifest.json under other tags.
inline void write_docker_archive(const std::filesystem::path& layout, const std::string& tag,
                                 const std::filesystem::path& out, int images = 1) {
  auto manifest = tagged_manifest(layout, tag);
  ASSERT_FALSE(manifest.is_null());
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  ASSERT_EQ(archive_write_open_filename(a, out.c_str()), ARCHIVE_OK);
  auto add = [&](const std::string& name, const std::string& data) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  };
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : manifest["layers"]) {
    std::string tar = gunzip(read_all(layout / "blobs" / "sha256" / l["digest"].get<std::string>().substr(7)));
    std::string id = sha256_digest(tar).substr(7);
    add(id + "/layer.tar", tar);
    layers.push_back(id + "/layer.tar");
  }
  std::string config = read_all(layout / "blobs" / "sha256" / manifest["config"]["digest"].get<std::string>().substr(7));
  std::string config_name = sha256_digest(config).substr(7) + ".json";
  add(config_name, config);
  nlohmann::json entries = nlohmann::json::array();
  for (int i = 0; i < images; ++i)
    entries.push_back({{"Config", config_name}, {"RepoTags", {"kiln-test/x:" + std::to_string(i + 1)}}, {"Layers", layers}});
  add("manifest.json", entries.dump());
  archive_write_close(a);
  archive_write_free(a);
}

/// What a FaultySource does and counts; outlives the sources made with it.
struct Faults {
  int manifest_calls = 0;
  int blob_calls = 0;
  /// Applied to the bytes of the next `damage_count` blob fetches (then left alone).
  std::function<void(std::string&)> damage;
  int damage_count = 0;
  /// The tag the registry reference's tag stands for in the layout ("t" -> "t1").
  std::function<std::string(const std::string&)> map_reference = [](const std::string& r) { return r; };
  /// Set: opening the source fails with this (the registry is unreachable).
  std::string unreachable;
};

/// A real source, with faults injected into blob fetches and every call counted: it
/// stands for a registry in the tests of the puller's registry path.
class FaultySource : public BlobSource {
 public:
  FaultySource(std::unique_ptr<BlobSource> inner, Faults& faults) : inner_(std::move(inner)), faults_(faults) {}

  Result<FetchedManifest> manifest(const std::string& reference) override {
    ++faults_.manifest_calls;
    return inner_->manifest(faults_.map_reference(reference));
  }
  Result<void> blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                    const BlobProgress& progress) override {
    ++faults_.blob_calls;
    KILN_TRY(inner_->blob(digest, size, dest, progress));
    if (faults_.damage && faults_.damage_count > 0) {
      --faults_.damage_count;
      std::string bytes = read_all(dest);
      faults_.damage(bytes);
      std::ofstream f(dest, std::ios::binary | std::ios::trunc);
      f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    return {};
  }
  std::string describe() const override { return "faulty " + inner_->describe(); }

 private:
  std::unique_ptr<BlobSource> inner_;
  Faults& faults_;
};

/// A registry factory serving `layout` through a FaultySource.
inline auto layout_registry(std::filesystem::path layout, Faults& faults) {
  return [layout, &faults](const Reference&) -> Result<std::unique_ptr<BlobSource>> {
    if (!faults.unreachable.empty()) return make_error("{}", faults.unreachable);
    KILN_ASSIGN_OR_RETURN(auto inner, OciLayoutSource::open(layout));
    return std::unique_ptr<BlobSource>(std::make_unique<FaultySource>(std::move(inner), faults));
  };
}

}  // namespace kiln::image::testing
