// The remote cache as one kiln run's StoreRemote (snapshot/store.h): a local miss looks
// in the registry before baking; what the run bakes is pushed in the background, and
// the run waits for those pushes when it ends, at most `push_wait`, then leaves (a
// warning names what is unfinished; its staging directory is gc's to remove). Nothing
// here fails a run: a registry that cannot be reached, refuses a push or sends bytes
// that fail verification is a warning, and the run bakes locally.
#pragma once

#include "remote/remote_cache.h"
#include "snapshot/store.h"

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace kiln::remote {

/// --remote-cache / $KILN_REMOTE_CACHE for a run: set it on `store` (set_remote). nullptr
/// (and no remote) when none is configured. `options.spec` empty: $KILN_REMOTE_CACHE.
/// $KILN_REMOTE_CACHE_PUSH=0 makes the run read-only (pull, never push);
/// $KILN_REMOTE_CACHE_FIXTURES=1 pushes fixture layers too.
Result<std::shared_ptr<snapshot::StoreRemote>> attach_remote_cache(snapshot::Store& store, RemoteCacheOptions options,
                                                                   std::chrono::seconds push_wait);

}  // namespace kiln::remote
