#include "vmm/engine.h"

#include "common/log.h"
#include "vmm/accel.h"
#include "vmm/kvm/kvm_engine.h"
#include "vmm/qemu/qemu_engine.h"

namespace kiln::vmm {
namespace {

Result<std::unique_ptr<Engine>> make_qemu(const EngineOptions& options) {
  KILN_ASSIGN_OR_RETURN(auto engine, qemu::QemuEngine::create(options));
  return std::unique_ptr<Engine>(std::move(engine));
}

Result<std::unique_ptr<Engine>> make_kvm(const EngineOptions& options) {
  KILN_ASSIGN_OR_RETURN(auto engine, kvm::KvmEngine::create(options));
  return std::unique_ptr<Engine>(std::move(engine));
}

/// Why "auto" should not pick the kvm engine here, or nullopt when it should.
std::optional<std::string> kvm_engine_unusable() {
  // The per-boot verdicts first, one stat() each. The negative one wins: it is what a
  // host whose KVM runs the probe but not Linux needs (the runner records it after a
  // failed auto bake). The positive one spares every later run the probe VM.
  if (auto reason = kvm_unusable_reason()) return "KVM was found unusable earlier on this boot (" + *reason + ")";
  if (kvm_ran_a_guest_this_boot()) return std::nullopt;
  if (auto probe = kvm::probe_usable(); !probe) return probe.error().message;
  mark_kvm_ran_a_guest();
  return std::nullopt;
}

}  // namespace

Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options) {
  if (options.name == "qemu") return make_qemu(options);
  if (options.name == "kvm") {
    auto engine = make_kvm(options);
    if (!engine) return make_error("--engine kvm cannot be used: {}", engine.error().message);
    return engine;
  }
  if (options.name == "auto") {
    if (auto why = kvm_engine_unusable()) {
      log::verbose("engine auto: qemu, because {}", *why);
      return make_qemu(options);
    }
    auto engine = make_kvm(options);
    if (engine) {
      log::verbose("engine auto: kvm (/dev/kvm runs guests)");
      return engine;
    }
    log::verbose("engine auto: qemu, because {}", engine.error().message);
    return make_qemu(options);
  }
  return make_error("unknown engine '{}': use kvm, qemu or auto", options.name);
}

}  // namespace kiln::vmm
