#include "runner/golden.h"

#include "common/log.h"
#include "runner/agent_client.h"
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

std::string console_tail(vmm::Vm& vm) {
  std::string console = vm.console_output();
  if (console.size() > 3000) console = "..." + console.substr(console.size() - 3000);
  return console.empty() ? "(the guest printed nothing)" : console;
}

Result<snapshot::Snapshot> bake(snapshot::Store& store, const snapshot::SnapshotKey& key, vmm::Engine& engine,
                                const vmm::GuestSpec& spec, Progress& progress, std::chrono::seconds timeout,
                                bool verbose) {
  log::ScopedTimer total("bake total");
  KILN_ASSIGN_OR_RETURN(auto dir, store.begin_bake(key));
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
      return make_error("the guest did not come up: {}\n--- guest console (tail) ---\n{}", hello.error().message,
                        console_tail(*vm));
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
  log::ScopedTimer t("bake: publish");
  return store.publish(std::move(dir), key);
}

}  // namespace

Result<Golden> ensure_golden(snapshot::Store& store, const PreparedGuest& guest,
                             const vmm::EngineOptions& engine_options, Progress& progress, bool force, bool verbose) {
  log::ScopedTimer timer("find golden snapshot");
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Limits first (make_engine): a request the engine cannot serve fails here, before any lock or VM.
    KILN_ASSIGN_OR_RETURN(auto engine, vmm::make_engine(engine_options, guest.spec));
    snapshot::SnapshotKey key = guest.key;
    key.engine = engine->identity();
    auto look = [&]() -> std::optional<snapshot::Snapshot> {
      if (force) return std::nullopt;
      auto found = store.lookup(key);
      if (found.found()) return std::move(found.snapshot);
      if (found.status == snapshot::LookupStatus::unusable)
        log::info("snapshot {} is unusable ({}); rebaking it", key.id().substr(0, 12), found.reason);
      return std::nullopt;
    };
    if (auto snap = look()) return Golden{std::move(engine), std::move(*snap), false};

    KILN_ASSIGN_OR_RETURN(auto lock, store.lock_for_bake(key, [&progress] {
                            progress.step("waiting for another kiln to finish baking the golden snapshot");
                          }));
    // Whoever held the lock may have baked it meanwhile.
    if (!force) {
      auto again = store.lookup(key);
      if (again.found()) return Golden{std::move(engine), std::move(*again.snapshot), false};
    }
    // KVM picked by "auto" (the kvm engine, or qemu's accelerator) must prove itself with this bake.
    bool auto_kvm = (engine_options.name == "auto" && engine->name() == "kvm") ||
                    (engine_options.accel == "auto" && engine->identity().ends_with("/kvm"));
    // Another kiln may have found KVM unusable while we waited for its lock.
    if (auto_kvm && vmm::kvm_marked_unusable() && attempt == 0) continue;
    auto snap = bake(store, key, *engine, guest.spec, progress, auto_kvm ? kAutoKvmBootTimeout : kBootTimeout,
                     verbose);
    if (snap) return Golden{std::move(engine), std::move(*snap), true};
    if (auto_kvm && attempt == 0 && snap.error().kind != ErrorKind::interrupted) {
      vmm::mark_kvm_unusable(snap.error().message.substr(0, snap.error().message.find('\n')));
      log::info("KVM is present but could not boot the guest on this host; using TCG instead (remembered until reboot)");
      continue;
    }
    return with_context("baking the golden snapshot", snap.error());
  }
  return make_error("could not settle on an accelerator for the golden snapshot; pass --accel tcg");
}

}  // namespace kiln::runner
