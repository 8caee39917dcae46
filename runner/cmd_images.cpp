// `kiln images pull|list|rm`: the OCI image store (<cache>/images: blobs and pins).
#include "common/fs.h"
#include "common/log.h"
#include "image/oci/blob_store.h"
#include "image/oci/image_gc.h"
#include "image/oci/pins.h"
#include "image/oci/pull.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "snapshot/store.h"

#include <chrono>
#include <map>
#include <memory>
#include <set>

namespace kiln::runner {
namespace {

/// Image manifest digest -> ids (12 hex) of the snapshots baked from it.
std::map<std::string, std::vector<std::string>> image_users(const snapshot::Store& snapshots) {
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& e : snapshots.list())
    if (e.meta && !e.meta->key.image_digest.empty()) users[e.meta->key.image_digest].push_back(snapshot::short_id(e.id));
  return users;
}

snapshot::Store snapshot_store() { return snapshot::Store(fs::cache_root() / "snapshots"); }

struct PullFlags {
  std::vector<std::string> insecure;
  std::string ca;
};

int pull(const std::string& ref, const PullFlags& flags) {
  image::PullOptions options;
  options.registry.insecure_hosts = flags.insecure;
  options.registry.ca_bundle = flags.ca;
  auto store_root = image::BlobStore::default_root();
  auto before = image::BlobStore(store_root).list();
  auto resolved = image::resolve_image(ref, options);
  if (!resolved) {
    log::error(resolved.error().message);
    return exit_code::kiln_error;
  }
  std::set<std::string> had(before.begin(), before.end());
  uint64_t total = 0, fetched = 0;
  for (const auto& l : resolved->layers) {
    total += l.size;
    if (!had.count(l.digest)) fetched += l.size;
  }
  std::printf("%s %s: %zu layer(s), %s (%s new)\n", resolved->canonical.c_str(), resolved->manifest_digest.c_str(),
              resolved->layers.size(), human_bytes(total).c_str(), human_bytes(fetched).c_str());
  return 0;
}

int list() {
  auto root = image::BlobStore::default_root();
  auto pins = image::PinStore(root).list();
  if (pins.empty()) {
    std::printf("no images in %s\n", root.c_str());
    return 0;
  }
  auto users = image_users(snapshot_store());
  std::printf("%-60s %-19s %10s %9s  %s\n", "REFERENCE", "DIGEST", "SIZE", "PULLED", "USED BY");
  for (const auto& listed : pins) {
    if (!listed.pin) {
      std::printf("%-60s damaged: %s\n", listed.file.filename().c_str(), listed.error.c_str());
      continue;
    }
    const auto& p = *listed.pin;
    auto it = users.find(p.manifest_digest);
    std::string used = it == users.end() ? "-" : fmt::format("{} snapshot(s): {}", it->second.size(),
                                                             fmt::join(it->second, ", "));
    if (!p.replaced_by.empty()) used += " (tag moved on)";
    auto pulled = std::chrono::system_clock::time_point(std::chrono::seconds(p.pulled_at));
    std::printf("%-60s %-19s %10s %9s  %s\n", p.canonical.c_str(), p.manifest_digest.substr(0, 19).c_str(),
                human_bytes(image::pin_bytes(root, p)).c_str(), age(pulled).c_str(), used.c_str());
  }
  return 0;
}

int remove(const std::vector<std::string>& names, bool force) {
  auto root = image::BlobStore::default_root();
  auto users = image_users(snapshot_store());
  std::vector<image::Pin> doomed;
  for (const auto& name : names) {
    auto pins = image::find_pins(root, name);
    if (pins.empty()) {
      log::error(fmt::format("no image {} in {} (kiln images list shows them)", name, root.string()));
      return exit_code::kiln_error;
    }
    for (auto& p : pins) {
      auto it = users.find(p.manifest_digest);
      if (it != users.end() && !force) {
        log::error(fmt::format("{} is in use by snapshot(s) {}; remove those first (kiln snapshots rm ID) or pass "
                               "--force",
                               p.canonical, fmt::join(it->second, ", ")));
        return exit_code::kiln_error;
      }
      doomed.push_back(std::move(p));
    }
  }
  auto report = image::remove_pins(root, doomed);
  if (!report) {
    log::error(report.error().message);
    return exit_code::kiln_error;
  }
  uint64_t freed = 0;
  size_t blobs = 0;
  for (const auto& item : report->removed) {
    if (item.why == "removed") std::printf("removed %s\n", item.name.c_str());
    else ++blobs;
    freed += item.bytes;
  }
  std::printf("removed %zu blob(s), freed %s\n", blobs, human_bytes(freed).c_str());
  return 0;
}

}  // namespace

Result<uint64_t> gc_images(const snapshot::Store& snapshots, bool dry_run) {
  std::set<std::string> in_use;
  for (const auto& [digest, ids] : image_users(snapshots)) in_use.insert(digest);
  KILN_ASSIGN_OR_RETURN(auto report, image::gc_images(image::BlobStore::default_root(), in_use, dry_run));
  for (const auto& item : report.removed)
    std::printf("%s image %s (%s): %s\n", dry_run ? "would remove" : "removed", item.name.c_str(),
                human_bytes(item.bytes).c_str(), item.why.c_str());
  for (const auto& item : report.kept) std::printf("kept image %s: %s\n", item.name.c_str(), item.why.c_str());
  return report.bytes_freed;
}

void register_images(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("images", "Pull, list and remove OCI images (the image store)");
  cmd->require_subcommand(1);
  cmd->footer(fmt::format("Store: {} (set KILN_CACHE_DIR to move it)", image::BlobStore::default_root().string()));

  auto ref = std::make_shared<std::string>();
  auto flags = std::make_shared<PullFlags>();
  auto* p = cmd->add_subcommand("pull", "Pull an image into the store and pin its digest");
  p->add_option("ref", *ref,
                "REGISTRY/NAME[:TAG][@sha256:HEX], NAME[:TAG] (Docker Hub), oci:DIR[:TAG] or docker-archive:FILE")
      ->required();
  p->add_option("--insecure-registry", flags->insecure,
                "Talk plain HTTP (no TLS at all) to this host[:port]; repeatable. For loopback test registries")
      ->allow_extra_args(false)
      ->take_all();
  p->add_option("--registry-ca", flags->ca, "Verify registries' TLS certificates with these CA certificates (PEM)")
      ->check(CLI::ExistingFile);
  p->callback([ref, flags, &exit_code] { exit_code = pull(*ref, *flags); });

  auto* ls = cmd->add_subcommand("list", "List pulled images: reference, digest, size, when pulled, snapshots using it");
  ls->callback([&exit_code] { exit_code = list(); });

  auto names = std::make_shared<std::vector<std::string>>();
  auto force = std::make_shared<bool>(false);
  auto* rm = cmd->add_subcommand(
      "rm", "Remove images (their pins) and the blobs no other image uses");
  rm->add_option("ref", *names, "Reference as pulled, or a manifest digest (sha256:...)")->required();
  rm->add_flag("--force", *force, "Remove an image even if snapshots were baked from it");
  rm->callback([names, force, &exit_code] { exit_code = remove(*names, *force); });
}

}  // namespace kiln::runner
