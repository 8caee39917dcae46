#include "vmm/engine.h"

#include "vmm/qemu/qemu_engine.h"

namespace kiln::vmm {

Result<std::unique_ptr<Engine>> make_engine(const EngineOptions& options) {
  // "auto" will prefer kiln's own KVM engine once it exists; today QEMU serves both.
  if (options.name == "auto" || options.name == "qemu") {
    KILN_ASSIGN_OR_RETURN(auto engine, qemu::QemuEngine::create(options));
    return std::unique_ptr<Engine>(std::move(engine));
  }
  if (options.name == "kvm") return make_error("the kvm engine is not available yet: use --engine qemu or auto");
  return make_error("unknown engine '{}': use qemu or auto", options.name);
}

}  // namespace kiln::vmm
