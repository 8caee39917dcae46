#include "remote/store_remote.h"

#include "common/env.h"
#include "common/log.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <thread>

namespace kiln::remote {
namespace {

/// The pushes of one run, in order, by one thread. Shared with that thread, which may
/// outlive the run's wait (then the process exits under it).
struct PushQueue {
  PushQueue(snapshot::Store own_store, RemoteCacheOptions push_options)
      : store(std::move(own_store)), options(std::move(push_options)) {}
  snapshot::Store store;  ///< the same root, without a remote
  RemoteCacheOptions options;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<snapshot::Snapshot> pending;
  bool busy = false;
  bool closed = false;

  void work() {
    auto cache = RemoteCache::open(options, store);
    for (;;) {
      std::unique_lock lock(mutex);
      changed.wait(lock, [&] { return closed || !pending.empty(); });
      if (pending.empty()) return;
      snapshot::Snapshot next = std::move(pending.front());
      pending.pop_front();
      busy = true;
      lock.unlock();
      push_one(cache, next);
      lock.lock();
      busy = false;
      changed.notify_all();
    }
  }

  void push_one(Result<RemoteCache>& cache, const snapshot::Snapshot& s) {
    if (!cache) {
      log::info("warning: snapshot {} not pushed: {}", s.id().substr(0, 12), cache.error().message);
      return;
    }
    auto r = cache->push(s);
    if (!r) log::info("warning: snapshot {} not pushed (the run is not affected): {}", s.id().substr(0, 12),
                      r.error().message);
  }
};

class RunRemote final : public snapshot::StoreRemote {
 public:
  RunRemote(RemoteCache pulls, std::shared_ptr<PushQueue> pushes, std::chrono::seconds push_wait)
      : pulls_(std::move(pulls)), pushes_(std::move(pushes)), push_wait_(push_wait) {
    if (pushes_) worker_ = std::thread([q = pushes_] { q->work(); });
  }
  ~RunRemote() override { finish(); }
  RunRemote(const RunRemote&) = delete;
  RunRemote& operator=(const RunRemote&) = delete;

  std::optional<snapshot::Snapshot> pull(const std::string& id) override {
    if (unreachable_) return std::nullopt;
    auto r = pulls_.pull(id);
    if (r) return std::move(*r);
    log::info("warning: {}; baking it here instead", r.error().message);
    // A registry that cannot be reached is not asked again by this run (each try costs
    // its retries); one that answered with something wrong is, for other snapshots.
    if (r.error().kind != ErrorKind::corrupt) unreachable_ = true;
    return std::nullopt;
  }

  void offer(const snapshot::Snapshot& s) override {
    if (!pushes_) return;
    std::lock_guard lock(pushes_->mutex);
    pushes_->pending.push_back(s);
    pushes_->changed.notify_all();
  }

 private:
  // Wait for the queued pushes, at most push_wait_; then leave the thread to the exit.
  void finish() {
    if (!pushes_) return;
    std::unique_lock lock(pushes_->mutex);
    pushes_->closed = true;
    pushes_->changed.notify_all();
    bool done = pushes_->changed.wait_for(lock, push_wait_, [&] { return pushes_->pending.empty() && !pushes_->busy; });
    if (!done)
      log::info("warning: pushing to remote cache {} did not finish within {} s; left unfinished ({} more queued)",
                pulls_.name(), push_wait_.count(), pushes_->pending.size());
    lock.unlock();
    if (done)
      worker_.join();
    else
      worker_.detach();
  }

  RemoteCache pulls_;
  std::shared_ptr<PushQueue> pushes_;
  std::chrono::seconds push_wait_;
  std::thread worker_;
  bool unreachable_ = false;
};

}  // namespace

Result<std::shared_ptr<snapshot::StoreRemote>> attach_remote_cache(snapshot::Store& store, RemoteCacheOptions options,
                                                                   std::chrono::seconds push_wait) {
  if (options.spec.empty()) {
    auto env = remote_cache_from_env();
    if (!env) return std::shared_ptr<snapshot::StoreRemote>{};
    options.spec = *env;
  }
  if (env_flag("KILN_REMOTE_CACHE_FIXTURES")) options.push_fixtures = true;
  const char* push_env = std::getenv("KILN_REMOTE_CACHE_PUSH");
  const bool push = !(push_env && std::string(push_env) == "0");
  // A run must not hang on a registry that is gone: few retries, a short stall limit.
  options.registry.max_retries = std::min(options.registry.max_retries, 2);
  options.registry.timeout_s = std::min(options.registry.timeout_s, 10.0);
  options.registry.progress_on_terminal = false;
  RemoteCacheOptions pull_options = options;
  pull_options.push = false;
  KILN_ASSIGN_OR_RETURN(RemoteCache pulls, RemoteCache::open(pull_options, store));
  std::shared_ptr<PushQueue> pushes;
  if (push) {
    options.push = true;
    pushes = std::make_shared<PushQueue>(snapshot::Store(store.root()), options);
  }
  auto remote = std::make_shared<RunRemote>(std::move(pulls), std::move(pushes), push_wait);
  store.set_remote(remote);
  return std::shared_ptr<snapshot::StoreRemote>(remote);
}

}  // namespace kiln::remote
