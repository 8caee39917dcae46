#include "image/oci/oci_layout.h"

#include "common/fs.h"
#include "common/sha256.h"
#include "image/oci/blob_copy.h"
#include "image/oci/json_fields.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::image {
namespace {

constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";

Result<void> check_layout_file(const std::filesystem::path& dir) {
  auto text = fs::read_file(dir / "oci-layout", 4096);
  if (!text)
    return make_error("{} is not an OCI image layout (no readable oci-layout file: {})", dir.string(),
                      text.error().message);
  auto doc = json_fields::parse_object(*text, 4096, "oci-layout");
  if (!doc) return with_context(dir.string(), doc.error());
  auto version = json_fields::string_field(*doc, "imageLayoutVersion", true);
  if (!version) return with_context((dir / "oci-layout").string(), version.error());
  if (*version != "1.0.0")
    return make_error("{}: imageLayoutVersion {} (kiln reads 1.0.0)", (dir / "oci-layout").string(), *version);
  return {};
}

}  // namespace

Result<std::unique_ptr<OciLayoutSource>> OciLayoutSource::open(const std::filesystem::path& dir) {
  KILN_TRY(check_layout_file(dir));
  auto text = fs::read_file(dir / "index.json", kMaxManifestBytes);
  if (!text) return text.take_error();
  auto index = parse_index(*text);
  if (!index) return with_context((dir / "index.json").string(), index.error());
  return std::unique_ptr<OciLayoutSource>(new OciLayoutSource(dir, std::move(*index)));
}

std::string OciLayoutSource::describe() const { return "OCI layout " + dir_.string(); }

std::filesystem::path OciLayoutSource::blob_path(const std::string& digest) const {
  return dir_ / "blobs" / "sha256" / digest.substr(7);
}

Result<const Descriptor*> OciLayoutSource::find_tag(const std::string& tag) const {
  std::vector<std::string> tags;
  const Descriptor* found = nullptr;
  for (const auto& d : index_.manifests) {
    auto it = d.annotations.find(std::string(kRefName));
    if (it == d.annotations.end()) continue;
    if (it->second == tag) found = &d;
    tags.push_back(it->second);
  }
  if (tag.empty()) {
    if (index_.manifests.size() == 1) return &index_.manifests.front();
    return make_error("{} holds {} images; name one with oci:{}:TAG (tags: {})", describe(), index_.manifests.size(),
                      dir_.string(), tags.empty() ? "none" : fmt::format("{}", fmt::join(tags, ", ")));
  }
  if (found) return found;
  Error e = make_error("{} has no image tagged '{}' (its tags: {})", describe(), tag,
                       tags.empty() ? "none" : fmt::format("{}", fmt::join(tags, ", ")));
  e.kind = ErrorKind::not_found;
  return e;
}

Result<FetchedManifest> OciLayoutSource::manifest(const std::string& reference) {
  std::string digest = reference;
  uint64_t size = kMaxManifestBytes;
  std::string media_type;
  if (!is_sha256_digest(reference)) {
    KILN_ASSIGN_OR_RETURN(const Descriptor* d, find_tag(reference));
    digest = d->digest;
    size = d->size;
    media_type = d->media_type;
  }
  auto bytes = fs::read_file(blob_path(digest), kMaxManifestBytes);
  if (!bytes) {
    Error e = make_error("{}: manifest {} is missing or unreadable: {}", describe(), digest, bytes.error().message);
    e.kind = ErrorKind::not_found;
    return e;
  }
  if (auto got = sha256_digest(*bytes); got != digest)
    return make_error("{}: blob {} is damaged (its bytes hash to {})", describe(), digest, got);
  if (!is_sha256_digest(reference) && bytes->size() != size)
    return make_error("{}: manifest {} is {} bytes, index.json says {}", describe(), digest, bytes->size(), size);
  return FetchedManifest{std::move(*bytes), std::move(media_type)};
}

Result<void> OciLayoutSource::blob(const std::string& digest, uint64_t size, const std::filesystem::path& dest,
                                   const BlobProgress& progress) {
  if (!is_sha256_digest(digest)) return make_error("\"{}\" is not a sha256 digest", digest);
  auto path = blob_path(digest);
  UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) {
    Error e = make_error("{} has no blob {} ({}: {})", describe(), digest, path.string(), std::strerror(errno));
    e.kind = ErrorKind::not_found;
    return e;
  }
  KILN_ASSIGN_OR_RETURN(UniqueFd out, open_blob_dest(dest));
  auto read = [&](char* buf, size_t n) -> Result<size_t> {
    for (;;) {
      ssize_t r = ::read(in.get(), buf, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR) return make_error("cannot read {}: {}", path.string(), std::strerror(errno));
    }
  };
  return copy_blob(read, out.get(), size, progress);
}

}  // namespace kiln::image
