#include "bench/bench_guest.h"

#include "common/fs.h"
#include "common/log.h"
#include "common/unique_fd.h"
#include "runner/agent_client.h"
#include "runner/layers.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Points stdout at /dev/null while a guest command runs: run_in_vm copies the
// command's output to the host's stdout, where the bench prints its tables.
class QuietStdout {
 public:
  QuietStdout() {
    std::fflush(stdout);
    saved_.reset(::dup(STDOUT_FILENO));
    UniqueFd null(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    if (saved_ && null) ::dup2(null.get(), STDOUT_FILENO);
  }
  ~QuietStdout() {
    if (saved_) ::dup2(saved_.get(), STDOUT_FILENO);
  }
  QuietStdout(const QuietStdout&) = delete;
  QuietStdout& operator=(const QuietStdout&) = delete;

 private:
  UniqueFd saved_;
};

Result<void> require_success(const Result<runner::RunOutcome>& outcome, const runner::RunRequest& request) {
  if (!outcome) return make_error("{} in the guest: {}", request.argv.front(), outcome.error().message);
  if (outcome->exit_code != 0) return make_error("{} in the guest {}", request.argv.front(), outcome->summary);
  return {};
}

}  // namespace

Result<BenchGuest> BenchGuest::create(const vmm::EngineOptions& engine) {
  BenchGuest g;
  KILN_ASSIGN_OR_RETURN(g.guest_, runner::prepare_guest({}));
  g.store_ = std::make_unique<snapshot::Store>(fs::cache_root() / "snapshots");
  runner::Progress progress;
  KILN_ASSIGN_OR_RETURN(g.golden_, runner::ensure_golden(*g.store_, g.guest_, engine, progress));
  return g;
}

Result<snapshot::Snapshot> BenchGuest::payload_layer(const runner::Payload& payload, const std::string& label) {
  runner::LayerRecipe recipe;
  recipe.kind = std::string(snapshot::kLayerKindPayload);
  KILN_ASSIGN_OR_RETURN(recipe.content_digest, payload.content_digest());
  recipe.label = "payload: " + label;
  recipe.doing = "placing the payload of " + label;
  recipe.populate = [&payload](vmm::Vm& vm) { return runner::place_payload(vm, payload); };
  runner::Progress progress;
  KILN_ASSIGN_OR_RETURN(auto layer, runner::ensure_layer(*store_, engine(), spec(), golden(), recipe, progress));
  return std::move(layer.snapshot);
}

Result<std::unique_ptr<vmm::Vm>> BenchGuest::restore(const snapshot::Snapshot& snap) {
  KILN_ASSIGN_OR_RETURN(auto files, store_->restore_files(snap, engine().maps_overlays()));
  return engine().restore(spec(), files);
}

Result<TimedRun> restore_and_run(BenchGuest& guest, const snapshot::Snapshot& snap, const runner::Payload& shipped,
                                 const runner::RunRequest& request, bool keep_vm) {
  QuietStdout quiet;
  const auto start = Clock::now();
  KILN_ASSIGN_OR_RETURN(auto vm, guest.restore(snap));
  runner::AgentClient agent(vm->agent_fd(), [&vm] { return vm->vmm_exited(); });
  KILN_TRY(require_success(runner::run_in_vm(agent, *vm, shipped, request), request));
  TimedRun run{ms_since(start), nullptr};
  if (keep_vm)
    run.vm = std::move(vm);
  else
    vm->destroy();
  return run;
}

Result<TimedRun> cold_boot_and_run(BenchGuest& guest, const runner::Payload& shipped,
                                   const runner::RunRequest& request) {
  QuietStdout quiet;
  KILN_ASSIGN_OR_RETURN(auto tmp, fs::TempDir::create(fs::cache_root(), "bench-cold-"));
  const vmm::SnapshotFiles files{tmp.path() / "state.bin", tmp.path() / "memory.ram"};
  const auto start = Clock::now();
  KILN_ASSIGN_OR_RETURN(auto vm, guest.engine().boot(guest.spec(), files));
  runner::AgentClient agent(vm->agent_fd(), [&vm] { return vm->vmm_exited(); });
  {
    log::ScopedTimer t("bench: boot -> agent ready");
    KILN_TRY(agent.handshake(Clock::now() + std::chrono::seconds(120)));
  }
  KILN_TRY(require_success(runner::run_in_vm(agent, *vm, shipped, request), request));
  TimedRun run{ms_since(start), nullptr};
  vm->destroy();
  return run;
}

}  // namespace kiln::bench
