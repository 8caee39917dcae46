#include "image/oci/pull.h"

#include "common/log.h"
#include "common/sha256.h"
#include "image/oci/blob_store.h"
#include "image/oci/docker_archive.h"
#include "image/oci/image_config.h"
#include "image/oci/manifest.h"
#include "image/oci/oci_layout.h"
#include "image/oci/pins.h"

#include <chrono>
#include <optional>

namespace kiln::image {
namespace {

/// What the source said the reference is now.
struct Resolution {
  std::string top_digest;       ///< of what the tag/digest named (index or manifest)
  std::string manifest_bytes;   ///< the linux/amd64 image manifest
  std::string manifest_digest;
  ImageManifest manifest;
};

std::string short_digest(const std::string& digest) { return digest.substr(0, 7 + 12) + "…"; }

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class Puller {
 public:
  Puller(std::string text, Reference ref, const PullOptions& options)
      : text_(std::move(text)),
        ref_(std::move(ref)),
        options_(options),
        store_(options.store_root.empty() ? BlobStore::default_root() : options.store_root),
        pins_(store_.root()) {}

  Result<ResolvedImage> run(const RegistrySourceFactory& registry);

 private:
  void note(const std::string& line) const {
    if (options_.note) options_.note(line);
    else log::info("{}", line);
  }
  std::optional<Pin> read_pin() const;
  bool pin_complete(const Pin& pin) const;
  Result<std::unique_ptr<BlobSource>> open_source(const RegistrySourceFactory& registry) const;
  Result<Resolution> fetch_manifest(BlobSource& source) const;
  Result<ImageConfig> fetch_config(BlobSource& source, const ImageManifest& manifest) const;
  Result<std::vector<LayerBlob>> fetch_layers(BlobSource& source, const ImageManifest& manifest) const;
  Result<ResolvedImage> from_pin(const Pin& pin) const;
  Result<ResolvedImage> from_source_or_pin(const RegistrySourceFactory& registry, const std::optional<Pin>& pin);
  void keep_replaced(const Pin& old, const std::string& new_digest) const;
  ResolvedImage resolved(const Pin& pin, ImageRunConfig config) const;

  std::string text_;
  Reference ref_;
  const PullOptions& options_;
  BlobStore store_;
  PinStore pins_;
};

std::optional<Pin> Puller::read_pin() const {
  auto pin = pins_.read(ref_.canonical());
  if (!pin) {
    note(fmt::format("ignoring a damaged pin ({})", pin.error().message));
    return std::nullopt;
  }
  return *pin;
}

bool Puller::pin_complete(const Pin& pin) const {
  for (const auto& b : pin.blobs())
    if (!store_.has(b.digest, b.size)) return false;
  return true;
}

Result<std::unique_ptr<BlobSource>> Puller::open_source(const RegistrySourceFactory& registry) const {
  switch (ref_.kind) {
    case ReferenceKind::oci_layout: {
      KILN_ASSIGN_OR_RETURN(auto s, OciLayoutSource::open(ref_.path));
      return std::unique_ptr<BlobSource>(std::move(s));
    }
    case ReferenceKind::docker_archive: {
      KILN_ASSIGN_OR_RETURN(auto s, DockerArchiveSource::open(ref_.path));
      return std::unique_ptr<BlobSource>(std::move(s));
    }
    case ReferenceKind::registry:
      break;
  }
  if (!registry) return make_error("no registry client to pull {} with", ref_.canonical());
  return registry(ref_);
}

// The tag or digest -> (an index -> the linux/amd64 entry) -> the image manifest.
Result<Resolution> Puller::fetch_manifest(BlobSource& source) const {
  Resolution r;
  KILN_ASSIGN_OR_RETURN(FetchedManifest top, source.manifest(ref_.manifest_reference()));
  r.top_digest = sha256_digest(top.bytes);
  if (!ref_.digest.empty() && r.top_digest != ref_.digest)
    return make_error("{} returned a manifest whose digest is {}, not the {} asked for; refusing it",
                      source.describe(), r.top_digest, ref_.digest);
  KILN_ASSIGN_OR_RETURN(ManifestKind kind, classify_manifest(top));
  if (kind == ManifestKind::index) {
    KILN_ASSIGN_OR_RETURN(ImageIndex index, parse_index(top.bytes));
    KILN_ASSIGN_OR_RETURN(Descriptor entry, select_platform(index));
    KILN_ASSIGN_OR_RETURN(FetchedManifest m, source.manifest(entry.digest));
    if (auto got = sha256_digest(m.bytes); got != entry.digest || m.bytes.size() != entry.size)
      return make_error("{} returned a linux/amd64 manifest of {} bytes hashing to {}; the index names {} ({} bytes)",
                        source.describe(), m.bytes.size(), got, entry.digest, entry.size);
    if (m.media_type.empty()) m.media_type = entry.media_type;
    KILN_ASSIGN_OR_RETURN(ManifestKind inner, classify_manifest(m));
    if (inner != ManifestKind::manifest)
      return make_error("the image index's linux/amd64 entry {} is another index; kiln follows one level",
                        entry.digest);
    top = std::move(m);
  }
  r.manifest_bytes = std::move(top.bytes);
  r.manifest_digest = sha256_digest(r.manifest_bytes);
  KILN_ASSIGN_OR_RETURN(r.manifest, parse_manifest(r.manifest_bytes));
  return r;
}

Result<ImageConfig> Puller::fetch_config(BlobSource& source, const ImageManifest& manifest) const {
  const Descriptor& d = manifest.config;
  auto fetch = [&](const std::filesystem::path& dest) { return source.blob(d.digest, d.size, dest, {}); };
  KILN_TRY(store_.ensure(d.digest, d.size, fetch, "the image config of " + ref_.canonical()));
  auto bytes = store_.read_verified(d.digest, kMaxConfigBytes);
  if (!bytes && bytes.error().kind == ErrorKind::corrupt) {  // damaged since it was stored: fetch anew
    KILN_TRY(store_.remove(d.digest));
    KILN_TRY(store_.ensure(d.digest, d.size, fetch, "the image config of " + ref_.canonical()));
    bytes = store_.read_verified(d.digest, kMaxConfigBytes);
  }
  if (!bytes) return bytes.take_error();
  KILN_ASSIGN_OR_RETURN(ImageConfig config, parse_image_config(*bytes));
  KILN_TRY(check_config_matches(config, manifest));
  return config;
}

Result<std::vector<LayerBlob>> Puller::fetch_layers(BlobSource& source, const ImageManifest& manifest) const {
  std::vector<LayerBlob> out;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& d = manifest.layers[i];
    std::string what = fmt::format("layer {}/{} of {}", i + 1, manifest.layers.size(), ref_.canonical());
    BlobProgress progress;
    if (options_.progress) {
      std::string label = fmt::format("layer {}/{} {}", i + 1, manifest.layers.size(), short_digest(d.digest));
      progress = [this, label](uint64_t done, uint64_t total) { options_.progress(label, done, total); };
    }
    auto fetch = [&](const std::filesystem::path& dest) { return source.blob(d.digest, d.size, dest, progress); };
    KILN_ASSIGN_OR_RETURN(auto path, store_.ensure(d.digest, d.size, fetch, what));
    out.push_back(LayerBlob{d.digest, d.media_type, d.size, std::move(path)});
  }
  return out;
}

ResolvedImage Puller::resolved(const Pin& pin, ImageRunConfig config) const {
  ResolvedImage image;
  image.reference = text_;
  image.canonical = ref_.canonical();
  image.manifest_digest = pin.manifest_digest;
  image.config_digest = pin.config.digest;
  image.config = std::move(config);
  for (const auto& l : pin.layers)
    image.layers.push_back(LayerBlob{l.digest, l.media_type, l.size, store_.path_of(l.digest)});
  return image;
}

Result<ResolvedImage> Puller::from_pin(const Pin& pin) const {
  for (const auto& b : pin.blobs())
    if (!store_.has(b.digest, b.size))
      return make_error("{} is pinned to {} but blob {} is missing from {}; pull it again (kiln images pull {})",
                        text_, pin.manifest_digest, b.digest, store_.blob_dir().string(), text_);
  KILN_ASSIGN_OR_RETURN(std::string bytes, store_.read_verified(pin.config.digest, kMaxConfigBytes));
  KILN_ASSIGN_OR_RETURN(ImageConfig config, parse_image_config(bytes));
  if (config.diff_ids.size() != pin.layers.size())
    return make_error("the pin of {} lists {} layers, its config {}", text_, pin.layers.size(), config.diff_ids.size());
  return resolved(pin, std::move(config.run));
}

// A moved tag leaves its old image behind as "<name>@<old digest>", so that snapshots
// baked from it keep it (gc removes it once none does).
void Puller::keep_replaced(const Pin& old, const std::string& new_digest) const {
  Pin kept = old;
  std::string base = ref_.kind == ReferenceKind::registry ? ref_.registry + "/" + ref_.repository : ref_.canonical();
  kept.canonical = base + "@" + old.manifest_digest;
  kept.replaced_by = ref_.canonical() + "@" + new_digest;
  if (auto w = pins_.write(kept); !w) note(fmt::format("cannot keep the old pin of {}: {}", text_, w.error().message));
}

Result<ResolvedImage> Puller::from_source_or_pin(const RegistrySourceFactory& registry, const std::optional<Pin>& pin) {
  bool usable = pin && pin_complete(*pin);
  auto fall_back = [&](const Error& e) -> Result<ResolvedImage> {
    if (!usable) return e;
    note(fmt::format("{}: {}; using the pinned {}", text_, e.message, pin->manifest_digest));
    return from_pin(*pin);
  };
  auto source = open_source(registry);
  if (!source) return fall_back(source.error());
  auto resolution = fetch_manifest(**source);
  if (!resolution) return fall_back(resolution.error());
  if (pin && pin->manifest_digest != resolution->manifest_digest) {
    note(fmt::format("{} moved from {} to {}", text_, short_digest(pin->manifest_digest),
                     short_digest(resolution->manifest_digest)));
    keep_replaced(*pin, resolution->manifest_digest);
  }
  const ImageManifest& m = resolution->manifest;
  KILN_TRY(store_.put(resolution->manifest_digest, resolution->manifest_bytes));
  KILN_ASSIGN_OR_RETURN(ImageConfig config, fetch_config(**source, m));
  KILN_ASSIGN_OR_RETURN(auto layers, fetch_layers(**source, m));
  Pin fresh;
  fresh.canonical = ref_.canonical();
  fresh.top_digest = resolution->top_digest;
  fresh.manifest_digest = resolution->manifest_digest;
  fresh.manifest_size = resolution->manifest_bytes.size();
  fresh.config = PinnedBlob{m.config.digest, m.config.size, m.config.media_type};
  for (const auto& l : layers) fresh.layers.push_back(PinnedBlob{l.digest, l.size, l.media_type});
  fresh.pulled_at = now_seconds();
  fresh.source = (*source)->describe();
  KILN_TRY(pins_.write(fresh));
  return resolved(fresh, std::move(config.run));
}

Result<ResolvedImage> Puller::run(const RegistrySourceFactory& registry) {
  KILN_ASSIGN_OR_RETURN(UniqueFd lock, store_.lock(/*exclusive=*/false));
  std::optional<Pin> pin = read_pin();
  bool usable = pin && pin_complete(*pin);
  const bool registry_tag = ref_.kind == ReferenceKind::registry && ref_.digest.empty();
  const bool pin_suffices = !ref_.digest.empty() || options_.policy == PullPolicy::never ||
                            (registry_tag && options_.policy == PullPolicy::missing);
  if (usable && pin_suffices) return from_pin(*pin);
  if (options_.policy == PullPolicy::never) {
    if (pin) return from_pin(*pin);  // names the missing blob
    return make_error("{} is not in the image store ({}) and --pull never forbids fetching it; run `kiln images pull {}`",
                      text_, store_.root().string(), text_);
  }
  return from_source_or_pin(registry, pin);
}

}  // namespace

Result<ResolvedImage> resolve_image_with(const std::string& text, const PullOptions& options,
                                         const RegistrySourceFactory& registry) {
  KILN_ASSIGN_OR_RETURN(Reference ref, parse_reference(text));
  Puller puller(text, std::move(ref), options);
  return puller.run(registry);
}

Result<ResolvedImage> resolve_image(const std::string& text, const PullOptions& options) {
  RegistryOptions registry_options = options.registry;
  return resolve_image_with(text, options, [registry_options](const Reference& ref) {
    return make_registry_source(ref.registry, ref.repository, registry_options);
  });
}

}  // namespace kiln::image
