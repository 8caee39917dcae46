#include "runner/golden.h"

#include "common/log.h"
#include "runner/agent_client.h"
#include "runner/guest_text.h"
#include "vmm/accel.h"

#include <unistd.h>

namespace kiln::runner {
namespace {

using namespace std::chrono_literals;

// A TCG cold boot takes ~3 s on an idle 2-core host; allow for a loaded CI machine.
constexpr auto kBootTimeout = 120s;
// KVM picked automatically gets less: a host whose /dev/kvm opens but cannot run
// Linux (broken nested virtualisation) must fall back to TCG quickly.
constexpr auto kAutoKvmBootTimeout = 25s;

/// Where a bake failed: while the guest ran (starting the VMM, booting, saving: the
/// accelerator may be at fault) or in the store (never the accelerator's doing).
enum class BakeStage { store, guest };

Result<snapshot::Snapshot> bake(snapshot::Store& store, const snapshot::SnapshotKey& key, vmm::Engine& engine,
                                const vmm::GuestSpec& spec, Progress& progress, std::chrono::seconds timeout,
                                bool verbose, BakeStage& stage) {
  log::ScopedTimer total("bake total");
  stage = BakeStage::store;
  KILN_ASSIGN_OR_RETURN(auto dir, store.begin_bake(key));
  stage = BakeStage::guest;
  progress.step("baking the golden snapshot: cold-booting the guest");
  log::verbose("cold-booting {} ({} MiB, {} vCPU) on {}", spec.kernel.filename().string(), spec.memory_mib,
               spec.vcpus, engine.identity());
  std::unique_ptr<vmm::Vm> vm;
  {
    log::ScopedTimer t("bake: start vmm");
    KILN_ASSIGN_OR_RETURN(vm, engine.boot(spec, dir.files()));
  }
  {
    log::ScopedTimer t("bake: boot to agent ready");
    AgentClient agent(vm->agent_fd(), [&vm] { return vm->vmm_exited(); });
    auto hello = agent.handshake(Clock::now() + timeout);
    if (!hello) {
      if (hello.error().kind == ErrorKind::interrupted) return hello.take_error();
      // Never report a boot failure as the test's timeout: it is a VM-level failure.
      return make_error("{}", with_console_tail("the guest did not come up: " + hello.error().message, *vm));
    }
    log::verbose("guest agent {} is ready", hello->agent_version);
  }
  if (verbose) {
    std::string console = vm->console_output();
    (void)!::write(STDERR_FILENO, console.data(), console.size());
  }
  progress.step("baking the golden snapshot: saving");
  {
    log::ScopedTimer t("bake: save");
    KILN_TRY(vm->save_snapshot(dir.files()));
  }
  vm->destroy();
  stage = BakeStage::store;
  log::ScopedTimer t("bake: publish");
  return store.publish(std::move(dir), key);
}

/// Did "auto" pick KVM for `engine`? Only such a KVM is ever judged: one the user named
/// (--engine kvm, --accel kvm) is used as asked, and its failures reported.
bool kvm_picked_by_auto(const vmm::EngineOptions& options, const vmm::Engine& engine) {
  return engine.on_kvm() && (engine.name() == "kvm" ? options.name == "auto" : options.accel == "auto");
}

/// `options` with every "auto" that could pick KVM resolved away from it: what "auto"
/// picks once KVM is marked unusable. An explicit --accel kvm stays (QEMU on KVM).
vmm::EngineOptions without_kvm(vmm::EngineOptions options) {
  if (options.name == "auto") options.name = "qemu";
  if (options.accel == "auto") options.accel = "tcg";
  return options;
}

/// `golden` was found or baked after an auto-picked KVM failed to bake the same guest.
/// If it runs without KVM, that proves KVM (not the guest, not the request) failed:
/// remember it for this boot. Without such a failure, nothing is remembered.
Golden settle(Golden golden, const std::optional<std::string>& kvm_failure) {
  if (!kvm_failure) return golden;
  if (golden.engine->on_kvm()) {
    // Only with --engine auto --accel kvm: kiln's VMM failed where QEMU on KVM works.
    log::info("the kvm engine could not boot the guest but QEMU on KVM could; nothing remembered: pass --engine qemu "
              "to skip the kvm engine");
    return golden;
  }
  vmm::mark_kvm_unusable(*kvm_failure);
  log::info("KVM is present but could not boot the guest on this host; using {} instead (remembered until reboot)",
            golden.engine->identity());
  return golden;
}

}  // namespace

Result<Golden> ensure_golden(snapshot::Store& store, const PreparedGuest& guest,
                             const vmm::EngineOptions& engine_options, Progress& progress, bool force, bool verbose) {
  log::ScopedTimer timer("find golden snapshot");
  vmm::EngineOptions options = engine_options;
  // The first line of an auto-picked KVM's failed bake, until the guest comes up without
  // KVM (settle() then records it) or fails there too (then it was never KVM's fault).
  std::optional<std::string> kvm_failure;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Limits first (make_engine): a request the engine cannot serve fails here, before any lock or VM.
    KILN_ASSIGN_OR_RETURN(auto engine, vmm::make_engine(options, guest.spec));
    snapshot::SnapshotKey key = guest.key;
    key.engine = engine->identity();
    auto look = [&]() -> std::optional<snapshot::Snapshot> {
      if (force) return std::nullopt;
      auto found = store.lookup(key);
      if (found.found()) return std::move(found.snapshot);
      if (found.status == snapshot::LookupStatus::unusable)
        log::info("snapshot {} is unusable ({}); rebaking it", snapshot::short_id(key.id()), found.reason);
      return std::nullopt;
    };
    if (auto snap = look()) return settle(Golden{std::move(engine), std::move(*snap), false}, kvm_failure);

    KILN_ASSIGN_OR_RETURN(auto lock, store.lock_for_bake(key, [&progress] {
                            progress.step("waiting for another kiln to finish baking (or pulling) the golden snapshot");
                          }));
    // Whoever held the lock may have baked it meanwhile.
    if (!force) {
      auto again = store.lookup(key);
      if (again.found()) return settle(Golden{std::move(engine), std::move(*again.snapshot), false}, kvm_failure);
    }
    // Baked by another machine with this exact key: pulled and verified instead of baked.
    if (!force && store.remote())
      if (auto pulled = store.remote()->pull(key.id()))
        return settle(Golden{std::move(engine), std::move(*pulled), false}, kvm_failure);
    // KVM picked by "auto" (the kvm engine, or qemu's accelerator) must prove itself with this bake.
    const bool auto_kvm = kvm_picked_by_auto(options, *engine);
    // Another kiln may have found KVM unusable while we waited for its lock.
    if (auto_kvm && vmm::kvm_marked_unusable() && attempt == 0) continue;
    BakeStage stage = BakeStage::store;
    auto snap = bake(store, key, *engine, guest.spec, progress, auto_kvm ? kAutoKvmBootTimeout : kBootTimeout,
                     verbose, stage);
    if (snap) {
      if (store.remote()) store.remote()->offer(*snap);
      return settle(Golden{std::move(engine), std::move(*snap), true}, kvm_failure);
    }
    const Error& error = snap.error();
    if (auto_kvm && stage == BakeStage::guest && error.kind != ErrorKind::interrupted) {
      // Not remembered yet: a guest that cannot boot at all fails this way on KVM too.
      kvm_failure = error.message.substr(0, error.message.find('\n'));
      options = without_kvm(engine_options);
      log::info("the guest did not come up with KVM ({}); trying {}", *kvm_failure,
                options.accel == "kvm" ? "QEMU on KVM" : "without KVM");
      continue;
    }
    if (kvm_failure && error.kind != ErrorKind::interrupted)
      return with_context(fmt::format("baking the golden snapshot (it failed with KVM too: {})", *kvm_failure), error);
    return with_context("baking the golden snapshot", error);
  }
  return make_error("could not settle on an accelerator for the golden snapshot; pass --accel tcg");
}

}  // namespace kiln::runner
