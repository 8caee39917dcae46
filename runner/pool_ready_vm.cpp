#include "runner/pool_ready_vm.h"

#include "common/fd_passing.h"

#include <nlohmann/json.hpp>

namespace kiln::runner::pool {
namespace {

class ReadyQemuVm final : public ReadyVm {
 public:
  explicit ReadyQemuVm(std::unique_ptr<vmm::qemu::QemuVm> vm) : vm_(std::move(vm)) {}
  bool exited() override { return vm_->vmm_exited().has_value(); }
  Result<void> hand_over(int conn) override {
    KILN_ASSIGN_OR_RETURN(auto h, vm_->hand_over());
    nlohmann::json reply = {{"hit", true},
                            {"vm", "qemu"},
                            {"pid", h.pid},
                            {"qmp_next_id", h.qmp.next_id},
                            {"qmp_pending", h.qmp.pending}};
    return send_fd_message(conn, reply.dump(),
                           {h.pidfd.get(), h.qmp.fd.get(), h.agent.get(), h.share.get(), h.console.get(),
                            h.stderr_log.get()});
  }

 private:
  std::unique_ptr<vmm::qemu::QemuVm> vm_;
};

}  // namespace

std::unique_ptr<ReadyVm> ready_qemu_vm(std::unique_ptr<vmm::qemu::QemuVm> vm) {
  return std::make_unique<ReadyQemuVm>(std::move(vm));
}

}  // namespace kiln::runner::pool
