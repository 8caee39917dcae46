#include "image/oci/docker_archive.h"

#include "common/sha256.h"
#include "image/oci/blob_copy.h"
#include "image/oci/json_fields.h"
#include "image/oci/manifest.h"
#include "image/oci/media_types.h"

#include <archive.h>
#include <archive_entry.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace kiln::image {
namespace {

using nlohmann::json;

constexpr uint64_t kMaxArchiveManifestBytes = 1 << 20;
constexpr size_t kMaxEntries = 1 << 20;
constexpr int kMaxLinkHops = 8;

/// One regular file of the archive, hashed.
struct FileEntry {
  std::string digest;
  uint64_t size = 0;
  std::string head;  ///< first bytes, for the compression sniff
};

struct ArchiveIndex {
  std::map<std::string, FileEntry> files;
  std::map<std::string, std::string> links;  ///< symlink name -> target as written
  std::string manifest_json;
};

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveCloser>;

Result<ArchivePtr> open_archive(const std::filesystem::path& file) {
  ArchivePtr a(archive_read_new());
  if (!a) return make_error("cannot allocate an archive reader");
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_all(a.get());
  if (archive_read_open_filename(a.get(), file.c_str(), 1 << 16) != ARCHIVE_OK)
    return make_error("cannot open {} as a docker save archive: {}", file.string(), archive_error_string(a.get()));
  return a;
}

std::string entry_name(archive_entry* e) {
  const char* p = archive_entry_pathname(e);
  std::string name = p ? p : "";
  while (name.rfind("./", 0) == 0) name.erase(0, 2);
  return name;
}

// Visit every entry; `visit` returns true to stop.
Result<void> for_each_entry(const std::filesystem::path& file,
                            const std::function<Result<bool>(archive*, archive_entry*, const std::string&)>& visit) {
  KILN_ASSIGN_OR_RETURN(ArchivePtr a, open_archive(file));
  archive_entry* e = nullptr;
  for (size_t n = 0;; ++n) {
    int rc = archive_read_next_header(a.get(), &e);
    if (rc == ARCHIVE_EOF) return {};
    if (rc < ARCHIVE_WARN)
      return make_error("{} is not a readable tar archive: {}", file.string(), archive_error_string(a.get()));
    if (n >= kMaxEntries) return make_error("{} has more than {} entries", file.string(), kMaxEntries);
    KILN_ASSIGN_OR_RETURN(bool stop, visit(a.get(), e, entry_name(e)));
    if (stop) return {};
  }
}

Result<size_t> read_data(archive* a, char* buf, size_t n, const std::filesystem::path& file) {
  la_ssize_t r = archive_read_data(a, buf, n);
  if (r < 0) return make_error("cannot read {}: {}", file.string(), archive_error_string(a));
  return static_cast<size_t>(r);
}

Result<ArchiveIndex> index_archive(const std::filesystem::path& file) {
  ArchiveIndex index;
  std::string buffer(1 << 20, '\0');
  KILN_TRY(for_each_entry(file, [&](archive* a, archive_entry* e, const std::string& name) -> Result<bool> {
    if (archive_entry_filetype(e) == AE_IFLNK) {
      const char* target = archive_entry_symlink(e);
      index.links[name] = target ? target : "";
      return false;
    }
    if (archive_entry_filetype(e) != AE_IFREG) return false;
    FileEntry f;
    Sha256Stream hash;
    bool keep = name == "manifest.json";
    for (;;) {
      KILN_ASSIGN_OR_RETURN(size_t n, read_data(a, buffer.data(), buffer.size(), file));
      if (n == 0) break;
      std::string_view chunk(buffer.data(), n);
      hash.update(chunk);
      if (f.head.size() < 8) f.head += chunk.substr(0, 8 - f.head.size());
      if (keep && index.manifest_json.size() + n > kMaxArchiveManifestBytes)
        return make_error("{}: manifest.json is larger than {} bytes", file.string(), kMaxArchiveManifestBytes);
      if (keep) index.manifest_json.append(chunk);
      f.size += n;
    }
    f.digest = hash.digest();
    index.files[name] = std::move(f);
    return false;
  }));
  return index;
}

// A name from manifest.json to a regular file of the archive, following symlinks
// (docker save links duplicate layers) within the archive only.
Result<std::string> resolve_entry(const ArchiveIndex& index, std::string name, const std::filesystem::path& file) {
  for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
    if (index.files.count(name)) return name;
    auto link = index.links.find(name);
    if (link == index.links.end())
      return make_error("{}: manifest.json names {}, which the archive does not contain", file.string(), name);
    std::filesystem::path target(link->second);
    if (target.is_absolute()) return make_error("{}: {} is a symlink out of the archive", file.string(), name);
    name = (std::filesystem::path(name).parent_path() / target).lexically_normal().string();
    if (name.rfind("..", 0) == 0) return make_error("{}: {} is a symlink out of the archive", file.string(), name);
  }
  return make_error("{}: too many symlinks from {}", file.string(), name);
}

std::string_view layer_media_type(const std::string& head) {
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f && static_cast<unsigned char>(head[1]) == 0x8b)
    return media::kDockerLayerGzip;
  if (head.size() >= 4 && head.compare(0, 4, "\x28\xb5\x2f\xfd") == 0) return media::kOciLayerZstd;
  return media::kDockerLayerTar;
}

Result<std::string> read_entry(const std::filesystem::path& file, const std::string& wanted, uint64_t max) {
  std::string out;
  bool found = false;
  KILN_TRY(for_each_entry(file, [&](archive* a, archive_entry*, const std::string& name) -> Result<bool> {
    if (name != wanted) return false;
    found = true;
    char buf[65536];
    for (;;) {
      KILN_ASSIGN_OR_RETURN(size_t n, read_data(a, buf, sizeof buf, file));
      if (n == 0) return true;
      if (out.size() + n > max) return make_error("{}: {} is larger than {} bytes", file.string(), wanted, max);
      out.append(buf, n);
    }
  }));
  if (!found) return make_error("{}: {} vanished from the archive while kiln read it", file.string(), wanted);
  return out;
}

struct ImageEntry {
  std::string config;
  std::vector<std::string> layers;
};

Result<ImageEntry> parse_archive_manifest(const std::string& text, const std::filesystem::path& file) {
  if (text.empty()) return make_error("{} has no manifest.json: not a `docker save` archive", file.string());
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_array())
    return make_error("{}: manifest.json is not a JSON array", file.string());
  if (doc.size() != 1) {
    std::vector<std::string> tags;
    for (const auto& img : doc)
      if (img.is_object())
        if (auto t = json_fields::string_array_field(img, "RepoTags", 64); t) tags.insert(tags.end(), t->begin(), t->end());
    return make_error("{} holds {} images ({}); kiln takes an archive of one image (docker save IMAGE)",
                      file.string(), doc.size(), tags.empty() ? "untagged" : fmt::format("{}", fmt::join(tags, ", ")));
  }
  const json& img = doc[0];
  if (!img.is_object()) return make_error("{}: manifest.json entry is not an object", file.string());
  ImageEntry out;
  auto config = json_fields::string_field(img, "Config", true);
  auto layers = json_fields::string_array_field(img, "Layers", kMaxLayers);
  if (!config) return with_context(file.string() + ": manifest.json", config.error());
  if (!layers) return with_context(file.string() + ": manifest.json", layers.error());
  out.config = *config;
  out.layers = *layers;
  return out;
}

}  // namespace

Result<std::unique_ptr<DockerArchiveSource>> DockerArchiveSource::open(const std::filesystem::path& file) {
  KILN_ASSIGN_OR_RETURN(ArchiveIndex index, index_archive(file));
  KILN_ASSIGN_OR_RETURN(ImageEntry image, parse_archive_manifest(index.manifest_json, file));
  std::unique_ptr<DockerArchiveSource> src(new DockerArchiveSource(file));
  KILN_ASSIGN_OR_RETURN(std::string config_name, resolve_entry(index, image.config, file));
  KILN_ASSIGN_OR_RETURN(src->config_bytes_, read_entry(file, config_name, kMaxConfigBytes));
  src->config_digest_ = sha256_digest(src->config_bytes_);
  json layers = json::array();
  for (const auto& layer : image.layers) {
    KILN_ASSIGN_OR_RETURN(std::string name, resolve_entry(index, layer, file));
    const FileEntry& f = index.files.at(name);
    layers.push_back({{"mediaType", layer_media_type(f.head)}, {"digest", f.digest}, {"size", f.size}});
    src->layer_entries_.emplace(f.digest, name);
  }
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", media::kDockerManifest},
                   {"config",
                    {{"mediaType", media::kDockerConfig},
                     {"digest", src->config_digest_},
                     {"size", src->config_bytes_.size()}}},
                   {"layers", layers}};
  src->manifest_ = manifest.dump();
  return src;
}

std::string DockerArchiveSource::describe() const { return "docker archive " + file_.string(); }

Result<FetchedManifest> DockerArchiveSource::manifest(const std::string& reference) {
  if (!reference.empty() && reference != sha256_digest(manifest_)) {
    Error e = make_error("{} has no manifest {} (it holds one image, {})", describe(), reference,
                         sha256_digest(manifest_));
    e.kind = ErrorKind::not_found;
    return e;
  }
  return FetchedManifest{manifest_, std::string(media::kDockerManifest)};
}

Result<void> DockerArchiveSource::blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                                       const BlobProgress& progress) {
  KILN_ASSIGN_OR_RETURN(UniqueFd out, open_blob_dest(dest));
  if (digest == config_digest_) {
    size_t off = 0;
    return copy_blob(
        [&](char* buf, size_t n) -> Result<size_t> {
          size_t k = std::min(n, config_bytes_.size() - off);
          std::copy_n(config_bytes_.data() + off, k, buf);
          off += k;
          return k;
        },
        out.get(), size, progress);
  }
  auto it = layer_entries_.find(digest);
  if (it == layer_entries_.end()) {
    Error e = make_error("{} has no blob {}", describe(), digest);
    e.kind = ErrorKind::not_found;
    return e;
  }
  bool found = false;
  KILN_TRY(for_each_entry(file_, [&](archive* a, archive_entry*, const std::string& name) -> Result<bool> {
    if (name != it->second) return false;
    found = true;
    auto copied = copy_blob([&](char* buf, size_t n) { return read_data(a, buf, n, file_); }, out.get(), size, progress);
    if (!copied) return copied.take_error();
    return true;
  }));
  if (!found) return make_error("{}: {} vanished from the archive", describe(), it->second);
  return {};
}

}  // namespace kiln::image
