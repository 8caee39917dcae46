// The remote cache: snapshots and layers shared between machines through an OCI registry
// (remote/artifact.h says how one is stored). Configured by `--remote-cache` or
// $KILN_REMOTE_CACHE as `host[:port]/repository`; nothing is contacted otherwise.
//
// Pull: by store id, the tag `kiln-<id>`. The config's metadata must be for that id
// before the files are fetched; every blob is checked against its digest; the snapshot
// enters the store through Store::publish_import (verified in full, like a local bake).
// A layer whose base chain is not here pulls the chain first.
// Push: a snapshot and every base under it the registry lacks. Fixture layers (their
// RAM can hold a setup's secrets) only when asked.
// Trust: a digest proves the bytes are the ones the manifest names, not who made them.
// Whoever can push to the repository hands this machine's VMM a state to load: point
// the cache only at a registry whose pushers you trust (docs/fleet.md).
#pragma once

#include "common/result.h"
#include "image/oci/registry_client.h"
#include "snapshot/store.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace kiln::remote {

struct RemoteCacheOptions {
  std::string spec;                 ///< host[:port]/repository
  bool push = false;                ///< ask the registry for push access
  bool push_fixtures = false;       ///< also push fixture layers
  image::RegistryOptions registry;  ///< insecure hosts, CA bundle, timeouts
};

/// The remote cache named by $KILN_REMOTE_CACHE, or nullopt when it is unset or empty.
std::optional<std::string> remote_cache_from_env();

struct PushReport {
  int pushed = 0;          ///< snapshots uploaded
  int present = 0;         ///< already in the registry
  int skipped = 0;         ///< fixture layers not pushed (not asked)
  uint64_t bytes = 0;      ///< bytes of blobs uploaded
};

class RemoteCache {
 public:
  /// Check the spec; contacts nothing yet.
  static Result<RemoteCache> open(const RemoteCacheOptions& options, const snapshot::Store& store);

  /// "127.0.0.1:5000/kiln/cache", for messages.
  const std::string& name() const { return name_; }

  /// Push `snap` and the bases under it that the registry lacks.
  Result<PushReport> push(const snapshot::Snapshot& snap);

  /// Pull the snapshot `id` into the store. nullopt: the registry has no such snapshot.
  /// The caller holds `id`'s store lock; bases are locked here as they are pulled.
  Result<std::optional<snapshot::Snapshot>> pull(const std::string& id);

 private:
  RemoteCache(RemoteCacheOptions options, const snapshot::Store& store, std::string name,
              std::unique_ptr<image::RegistryClient> client)
      : options_(std::move(options)), store_(&store), name_(std::move(name)), client_(std::move(client)) {}
  Result<bool> has_tag(const std::string& tag);
  Result<uint64_t> push_one(const snapshot::Snapshot& snap);
  Result<std::optional<snapshot::Snapshot>> pull_chain(const std::string& id, uint32_t hops);

  RemoteCacheOptions options_;
  const snapshot::Store* store_;
  std::string name_;
  std::shared_ptr<image::RegistryClient> client_;
};

}  // namespace kiln::remote
