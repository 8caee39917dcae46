#include "vmm/engine.h"

#include "common/log.h"
#include "vmm/accel.h"
#include "vmm/kvm/kvm_engine.h"
#include "vmm/qemu/qemu_engine.h"

#include <fmt/format.h>

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

constexpr std::string_view kEngineNames[] = {"kvm", "qemu"};

/// What an engine's limits refuse in a request, and what would fit instead.
struct LimitExceeded {
  std::string what;     ///< "--memory 4096: the kvm engine supports at most 3328 MiB"
  std::string instead;  ///< "--memory 3328 or less"
};

/// Which of `spec`'s sizes engine `name` (limits `l`) cannot boot; nullopt if it can.
std::optional<LimitExceeded> exceeded(std::string_view name, const EngineLimits& l, const GuestSpec& spec) {
  if (spec.memory_mib > l.max_memory_mib)
    return LimitExceeded{fmt::format("--memory {}: the {} engine supports at most {} MiB", spec.memory_mib, name,
                                     l.max_memory_mib),
                         fmt::format("--memory {} or less", l.max_memory_mib)};
  if (spec.memory_mib < l.min_memory_mib)
    return LimitExceeded{fmt::format("--memory {}: the {} engine needs at least {} MiB", spec.memory_mib, name,
                                     l.min_memory_mib),
                         fmt::format("--memory {} or more", l.min_memory_mib)};
  if (spec.vcpus > l.max_vcpus)
    return LimitExceeded{
        fmt::format("--cpus {}: the {} engine supports at most {} vCPUs", spec.vcpus, name, l.max_vcpus),
        fmt::format("--cpus {} or fewer", l.max_vcpus)};
  if (spec.vcpus < 1) return LimitExceeded{"--cpus 0: a guest needs at least one vCPU", "--cpus 1 or more"};
  return std::nullopt;
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

std::optional<EngineLimits> engine_limits(std::string_view name) {
  if (name == "kvm") return kvm::KvmEngine::limits();
  if (name == "qemu") return qemu::QemuEngine::limits();
  return std::nullopt;
}

Result<void> check_engine_limits(const EngineOptions& options, const GuestSpec& spec) {
  if (options.name == "auto") {
    // Either engine will do (make_engine then picks one that fits). qemu serves the
    // widest range, so when neither fits, its refusal is the useful one.
    if (!exceeded("kvm", kvm::KvmEngine::limits(), spec)) return {};
    return check_engine_limits(EngineOptions{"qemu", options.accel, options.verbose}, spec);
  }
  auto limits = engine_limits(options.name);
  if (!limits) return make_error("unknown engine '{}': use kvm, qemu or auto", options.name);
  auto over = exceeded(options.name, *limits, spec);
  if (!over) return {};
  std::string advice;  // another engine that serves the request, if one does
  for (std::string_view other : kEngineNames)
    if (other != options.name && !exceeded(other, *engine_limits(other), spec))
      advice += fmt::format("--engine {} or ", other);
  return make_error("{}; use {}{}", over->what, advice, over->instead);
}

Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options, const GuestSpec& spec) {
  KILN_TRY(check_engine_limits(options, spec));
  if (options.name == "qemu") return make_qemu(options);
  if (options.name == "kvm") {
    auto engine = make_kvm(options);
    if (!engine) return make_error("--engine kvm cannot be used: {}", engine.error().message);
    return engine;
  }
  if (options.name == "auto") {
    // A request only qemu serves goes to qemu without a look at /dev/kvm: the kvm
    // engine's refusal says nothing about KVM, so it must never reach a bake.
    if (auto over = exceeded("kvm", kvm::KvmEngine::limits(), spec)) {
      log::verbose("engine auto: qemu, because {}", over->what);
      return make_qemu(options);
    }
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
