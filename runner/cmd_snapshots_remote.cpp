// `kiln snapshots push|pull`: copy snapshots and layers to and from a remote cache (an
// OCI registry repository; remote/remote_cache.h), by hand. Runs do the same on their
// own under --remote-cache / $KILN_REMOTE_CACHE.
#include "common/fs.h"
#include "common/log.h"
#include "remote/artifact.h"
#include "remote/remote_cache.h"
#include "runner/cli.h"
#include "runner/exit_codes.h"
#include "snapshot/store.h"

#include <memory>

namespace kiln::runner {
namespace {

struct TransferFlags {
  std::string cache;
  std::vector<std::string> ids;
  std::vector<std::string> insecure;
  std::string ca;
  bool fixtures = false;
};

int failed(const std::string& message, int code) {
  log::error(message);
  return code;
}

Result<remote::RemoteCache> open_cache(const TransferFlags& flags, const snapshot::Store& store, bool push) {
  remote::RemoteCacheOptions options;
  options.spec = flags.cache;
  options.push = push;
  options.push_fixtures = flags.fixtures;
  options.registry.insecure_hosts = flags.insecure;
  options.registry.ca_bundle = flags.ca;
  return remote::RemoteCache::open(options, store);
}

/// The snapshots `ids` name (an id or a unique prefix), or every usable one.
Result<std::vector<snapshot::Snapshot>> chosen(const snapshot::Store& store, const std::vector<std::string>& ids) {
  std::vector<snapshot::Snapshot> out;
  auto entries = store.list();
  for (const auto& e : entries) {
    bool wanted = ids.empty();
    for (const auto& id : ids) wanted = wanted || e.id.rfind(id, 0) == 0;
    if (!wanted) continue;
    auto found = store.lookup_id(e.id);
    if (!found.found()) {
      if (!ids.empty()) return make_error("snapshot {} is not usable: {}", e.id, found.reason);
      continue;
    }
    out.push_back(std::move(*found.snapshot));
  }
  for (const auto& id : ids) {
    int matches = 0;
    for (const auto& s : out) matches += s.id().rfind(id, 0) == 0;
    if (matches == 0) return make_error("no snapshot matches '{}' (see kiln snapshots list)", id);
    if (matches > 1) return make_error("'{}' matches {} snapshots: give more of the id", id, matches);
  }
  return out;
}

int push(const TransferFlags& flags) {
  snapshot::Store store(fs::cache_root() / "snapshots");
  auto cache = open_cache(flags, store, /*push=*/true);
  if (!cache) return failed(cache.error().message, exit_code::usage);
  auto snaps = chosen(store, flags.ids);
  if (!snaps) return failed(snaps.error().message, exit_code::usage);
  if (snaps->empty()) {
    log::error("the snapshot store holds no usable snapshot to push");
    return exit_code::kiln_error;
  }
  remote::PushReport total;
  for (const auto& s : *snaps) {
    auto r = cache->push(s);
    if (!r) return failed(r.error().message, exit_code::kiln_error);
    total.pushed += r->pushed;
    total.present += r->present;
    total.skipped += r->skipped;
    total.bytes += r->bytes;
  }
  std::printf("pushed %d snapshot(s) (%s) to %s; %d already there; %d fixture layer(s) not pushed\n", total.pushed,
              human_bytes(total.bytes).c_str(), cache->name().c_str(), total.present, total.skipped);
  return 0;
}

int pull(const TransferFlags& flags) {
  snapshot::Store store(fs::cache_root() / "snapshots");
  auto cache = open_cache(flags, store, /*push=*/false);
  if (!cache) return failed(cache.error().message, exit_code::usage);
  for (const auto& name : flags.ids) {
    auto id = remote::id_from_tag(name);
    if (!id) {
      return failed(fmt::format("'{}' is not a snapshot id or a kiln-<id> tag", name.substr(0, 100)), exit_code::usage);
    }
    if (store.lookup_id(*id).found()) {
      std::printf("%s is already here\n", id->c_str());
      continue;
    }
    auto lock = store.lock_for_id(*id, [&] { log::info("waiting for another kiln using snapshot {}", *id); });
    if (!lock) return failed(lock.error().message, exit_code::kiln_error);
    if (store.lookup_id(*id).found()) {  // another kiln pulled or baked it while we waited
      std::printf("%s is already here\n", id->c_str());
      continue;
    }
    auto got = cache->pull(*id);
    if (!got) return failed(got.error().message, exit_code::kiln_error);
    if (!*got) return failed(fmt::format("remote cache {} has no snapshot {}", cache->name(), *id), exit_code::kiln_error);
    std::printf("%s pulled from %s\n", id->c_str(), cache->name().c_str());
  }
  return 0;
}

void add_registry_flags(CLI::App* cmd, TransferFlags& flags) {
  cmd->add_option("--insecure-registry", flags.insecure,
                  "Speak plain HTTP to this registry host[:port] (a loopback test registry; never across a network)")
      ->allow_extra_args(false)
      ->take_all();
  cmd->add_option("--registry-ca", flags.ca, "Verify the registry's TLS certificate with these CA certificates (PEM)")
      ->check(CLI::ExistingFile);
}

}  // namespace

void register_snapshot_transfer(CLI::App& snapshots, int& exit_code) {
  auto flags = std::make_shared<TransferFlags>();
  auto* p = snapshots.add_subcommand(
      "push", "Push snapshots and layers (with the bases under them) to a remote cache: an OCI registry repository");
  p->add_option("cache", flags->cache, "host[:port]/repository")->required();
  p->add_option("id", flags->ids, "Snapshot ids or unique prefixes (default: every usable snapshot)");
  p->add_flag("--fixtures", flags->fixtures,
              "Push fixture layers too (their RAM can hold what a setup command read: keys, passwords)");
  add_registry_flags(p, *flags);
  p->callback([flags, &exit_code] { exit_code = push(*flags); });

  auto pull_flags = std::make_shared<TransferFlags>();
  auto* l = snapshots.add_subcommand("pull", "Pull snapshots or layers (and the bases under them) from a remote cache");
  l->add_option("cache", pull_flags->cache, "host[:port]/repository")->required();
  l->add_option("id", pull_flags->ids, "Full snapshot ids or their kiln-<id> tags")->required();
  add_registry_flags(l, *pull_flags);
  l->callback([pull_flags, &exit_code] { exit_code = pull(*pull_flags); });
}

}  // namespace kiln::runner
