#include "remote/remote_cache.h"

#include "common/fs.h"
#include "common/log.h"
#include "common/sha256.h"
#include "common/temp_file.h"
#include "remote/artifact.h"
#include "remote/snapshot_archive.h"
#include "image/oci/media_types.h"
#include "snapshot/layer_key.h"
#include "snapshot/layout.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace kiln::remote {
namespace {


/// What the registry sent does not fit (kind corrupt): a run keeps asking it for other
/// snapshots, unlike after a registry it cannot reach.
Error unfit(const std::string& context, const Error& e) {
  Error out = with_context(context, e);
  out.kind = ErrorKind::corrupt;
  return out;
}

/// A blob kiln is about to upload, described by its bytes on disk.
Result<image::Descriptor> describe_blob(const std::filesystem::path& path, std::string_view media_type) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error("{}: cannot stat it", path.string());
  image::Descriptor d;
  d.media_type = std::string(media_type);
  d.size = static_cast<uint64_t>(st.st_size);
  KILN_ASSIGN_OR_RETURN(d.digest, sha256_file(path));
  return d;
}

/// Fetch blob `d` into `dest` (created here, exclusively) and check its size and digest.
Result<void> fetch_verified(image::RegistryClient& client, const image::Descriptor& d, const std::filesystem::path& dest,
                            const std::string& registry_name, const std::string& what) {
  {
    KILN_ASSIGN_OR_RETURN(UniqueFd fd, fs::create_new_file(dest, 0600));
  }
  KILN_TRY(client.blob(d.digest, d.size, dest, {}));
  struct stat st {};
  if (::stat(dest.c_str(), &st) != 0 || static_cast<uint64_t>(st.st_size) != d.size)
    return Error{fmt::format("registry {} sent {} with the wrong size: refused", registry_name, what),
                 ErrorKind::corrupt};
  KILN_ASSIGN_OR_RETURN(std::string digest, sha256_file(dest));
  if (digest != d.digest)
    return Error{fmt::format("registry {} sent {} whose bytes hash to {}, not {} as its manifest says: refused "
                             "(tampered with or corrupted in the registry)",
                             registry_name, what, digest, d.digest),
                 ErrorKind::corrupt};
  return {};
}

}  // namespace

std::optional<std::string> remote_cache_from_env() {
  const char* v = std::getenv("KILN_REMOTE_CACHE");
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

Result<RemoteCache> RemoteCache::open(const RemoteCacheOptions& options, const snapshot::Store& store) {
  const auto slash = options.spec.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == options.spec.size())
    return make_error("remote cache '{}' is not host[:port]/repository (e.g. registry.example:5000/kiln/cache)",
                      options.spec.substr(0, 200));
  image::RegistryOptions registry = options.registry;
  registry.push = options.push;
  auto client = image::make_registry_client(options.spec.substr(0, slash), options.spec.substr(slash + 1), registry);
  if (!client) return with_context("remote cache " + options.spec, client.error());
  return RemoteCache(options, store, options.spec, std::move(*client));
}

Result<bool> RemoteCache::has_tag(const std::string& tag) {
  auto m = client_->manifest(tag);
  if (m) return true;
  if (m.error().kind == ErrorKind::not_found) return false;
  return m.error();
}

Result<PushReport> RemoteCache::push(const snapshot::Snapshot& snap) {
  // The chain leaf first in this list, root last; pushed root first, so a registry never
  // holds a layer without the bases a pull needs.
  std::vector<snapshot::Snapshot> chain{snap};
  while (chain.back().is_layer()) {
    if (chain.size() > snapshot::kMaxLayerDepth) return make_error("snapshot {}: its chain is too deep", snap.id());
    const std::string parent = *chain.back().meta.parent;
    auto p = store_->lookup_id(parent);
    if (!p.found()) return make_error("cannot push layer {}: its base {} is not usable here", snap.id(), snapshot::short_id(parent));
    chain.push_back(std::move(*p.snapshot));
  }
  PushReport report;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    if (it->is_layer() && it->meta.layer->kind == snapshot::kLayerKindFixture && !options_.push_fixtures) {
      ++report.skipped;
      log::info("fixture layer {} not pushed to {} (fixture RAM can hold a setup's secrets; "
                "push fixtures with --fixtures)",
                snapshot::short_id(it->id()), name_);
      break;  // nothing above a skipped layer can be pulled without it
    }
    KILN_ASSIGN_OR_RETURN(bool present, has_tag(tag_for(it->id())));
    if (present) {
      ++report.present;
      continue;
    }
    KILN_ASSIGN_OR_RETURN(uint64_t bytes, push_one(*it));
    ++report.pushed;
    report.bytes += bytes;
  }
  return report;
}

Result<uint64_t> RemoteCache::push_one(const snapshot::Snapshot& snap) {
  const std::string id = snap.id();
  log::ScopedTimer timer("remote cache: push");
  auto pushed = [&]() -> Result<uint64_t> {
    // Staged in the store like a bake (".tmp-<id>-<pid>-"), so gc removes what a killed push leaves.
    KILN_ASSIGN_OR_RETURN(auto staging, fs::TempDir::create(store_->root(), fmt::format("{}{}-{}-", snapshot::layout::kTmpPrefix,
                                                                                         id, ::getpid())));
    KILN_ASSIGN_OR_RETURN(std::string metadata_json,
                          fs::read_file(snap.dir / snapshot::layout::kMetadataFile, snapshot::kMaxMetadataBytes));
    const auto files_path = staging.path() / "files.tar.zst";
    const auto config_path = staging.path() / "config.json";
    KILN_TRY(pack_snapshot(snap.dir, snap.meta, files_path));
    KILN_TRY(fs::write_file_atomic(config_path, make_config(id, metadata_json)));
    KILN_ASSIGN_OR_RETURN(auto files, describe_blob(files_path, kFilesMediaType));
    KILN_ASSIGN_OR_RETURN(auto config, describe_blob(config_path, kConfigMediaType));
    log::info("pushing snapshot {} to {} ({:.1f} MiB)", snapshot::short_id(id), name_,
              static_cast<double>(files.size) / (1 << 20));
    KILN_TRY(client_->push_blob(files.digest, files.size, files_path));
    KILN_TRY(client_->push_blob(config.digest, config.size, config_path));
    KILN_TRY(client_->push_manifest(tag_for(id), make_manifest(config, files, id), image::media::kOciManifest));
    return files.size + config.size;
  }();
  if (!pushed) return with_context(fmt::format("pushing snapshot {} to remote cache {}", snapshot::short_id(id), name_), pushed.error());
  return pushed;
}

Result<std::optional<snapshot::Snapshot>> RemoteCache::pull(const std::string& id) { return pull_chain(id, 0); }

Result<std::optional<snapshot::Snapshot>> RemoteCache::pull_chain(const std::string& id, uint32_t hops) {
  if (hops > snapshot::kMaxLayerDepth) return make_error("the remote cache's chain of bases is deeper than kiln allows");
  const std::string tag = tag_for(id);
  auto fetched = client_->manifest(tag);
  if (!fetched) {
    if (fetched.error().kind == ErrorKind::not_found) return std::optional<snapshot::Snapshot>{};
    return with_context("remote cache " + name_, fetched.error());
  }
  const std::string where = fmt::format("{}:{}", name_, tag);
  auto manifest = parse_artifact_manifest(fetched->bytes, where);
  if (!manifest) return unfit("remote cache " + name_, manifest.error());
  log::ScopedTimer timer("remote cache: pull");
  KILN_ASSIGN_OR_RETURN(auto import, store_->begin_import(id));
  const auto config_path = import.dir() / ".config.json";
  KILN_TRY(fetch_verified(*client_, manifest->config, config_path, name_, "the config of " + where));
  KILN_ASSIGN_OR_RETURN(std::string config_bytes, fs::read_file(config_path, kMaxConfigBytes));
  auto config = parse_config(config_bytes);
  if (!config) return unfit(where, config.error());
  if (config->id != id)
    return Error{fmt::format("{} holds snapshot {}, not {}: refused (the registry's tag points at another snapshot)",
                             where, snapshot::short_id(config->id), snapshot::short_id(id)),
                 ErrorKind::corrupt};
  if (config->meta.layer) {
    const std::string parent = *config->meta.parent;
    if (!store_->lookup_id(parent).found()) {
      KILN_ASSIGN_OR_RETURN(auto lock, store_->lock_for_id(parent));
      if (!store_->lookup_id(parent).found()) {
        KILN_ASSIGN_OR_RETURN(auto base, pull_chain(parent, hops + 1));
        if (!base) return make_error("{} is a layer over {}, which the remote cache does not have", where, snapshot::short_id(parent));
      }
    }
  }
  log::info("pulling snapshot {} from {} ({:.1f} MiB)", snapshot::short_id(id), name_,
            static_cast<double>(manifest->files.size) / (1 << 20));
  const auto files_path = import.dir() / ".files.tar.zst";
  KILN_TRY(fetch_verified(*client_, manifest->files, files_path, name_, "the files of " + where));
  auto unpacked = unpack_snapshot(files_path, config->metadata_json, import.dir());
  if (!unpacked) return unfit(where, unpacked.error());
  std::error_code ignored;
  std::filesystem::remove(files_path, ignored);
  std::filesystem::remove(config_path, ignored);
  auto snap = store_->publish_import(std::move(import));
  if (!snap) return unfit(fmt::format("{} (pulled from {})", snapshot::short_id(id), name_), snap.error());
  return std::optional<snapshot::Snapshot>(std::move(*snap));
}

}  // namespace kiln::remote
