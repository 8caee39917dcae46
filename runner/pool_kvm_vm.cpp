#include "runner/pool_kvm_vm.h"

#include "common/log.h"
#include "runner/pool_kvm_worker.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

namespace kiln::runner {
namespace {

using nlohmann::json;

/// An answer from a live worker takes microseconds; this bounds a wedged one.
constexpr std::chrono::seconds kAnswerWait{10};

class KvmWorkerVm final : public vmm::Vm {
 public:
  explicit KvmWorkerVm(KvmWorkerHandover h) : h_(std::move(h)) {}
  ~KvmWorkerVm() override { destroy(); }

  Result<void> start() {
    log::ScopedTimer t("pool: start the kvm worker's VM");
    KILN_ASSIGN_OR_RETURN(auto answer, call({{"op", "start"}}, deadline_after(kAnswerWait)));
    if (answer.value("ok", false)) return {};
    return make_error("the kvm worker could not start its VM: {}", answer.value("why", std::string("no reason")));
  }

  int agent_fd() const override { return h_.agent.get(); }
  int share_fd() const override { return h_.share.get(); }

  std::string console_output() override {
    if (worker_gone()) return {};
    auto answer = call({{"op", "console"}}, deadline_after(kAnswerWait));
    if (!answer || !(*answer)["console"].is_string()) return {};
    return (*answer)["console"].get<std::string>();
  }

  std::optional<std::string> vmm_exited() override {
    if (destroyed_) return std::string("the VM was stopped by kiln");
    if (worker_gone()) return fmt::format("the kvm worker process (pid {}) that held the VM exited", h_.pid);
    auto answer = call({{"op", "exited"}}, deadline_after(kAnswerWait));
    if (!answer) return fmt::format("the kvm worker (pid {}) does not answer: {}", h_.pid, answer.error().message);
    if ((*answer)["exited"].is_string()) return (*answer)["exited"].get<std::string>();
    return std::nullopt;
  }

  Result<void> save_snapshot(const vmm::SnapshotFiles&) override {
    return make_error("internal error: a VM from the pool is never saved as a layer");
  }

  Result<void> save_whole(const vmm::SnapshotFiles& files, Deadline deadline) override {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    json request = {{"op", "save_whole"},
                    {"state", files.state.string()},
                    {"memory", files.memory.string()},
                    {"ms", left > 0 ? left : 0}};
    KILN_ASSIGN_OR_RETURN(auto answer, call(request, deadline + kAnswerWait));
    if (answer.value("ok", false)) return {};
    return make_error("{}", answer.value("why", std::string("the kvm worker could not save the VM")));
  }

  void destroy() override {
    if (destroyed_) return;
    destroyed_ = true;
    if (h_.pidfd) ::syscall(SYS_pidfd_send_signal, h_.pidfd.get(), SIGKILL, nullptr, 0);  // the daemon reaps it
    h_.control.reset();
    h_.agent.reset();
    h_.share.reset();
    h_.pidfd.reset();
    h_.lease.reset();
  }

 private:
  Result<json> call(const json& request, Deadline deadline) {
    if (destroyed_) return make_error("the VM was stopped by kiln");
    return pool::worker_call(h_.control.get(), request, deadline);
  }
  bool worker_gone() const {
    if (!h_.pidfd) return true;
    pollfd p{h_.pidfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  KvmWorkerHandover h_;
  bool destroyed_ = false;
};

}  // namespace

Result<std::unique_ptr<vmm::Vm>> adopt_kvm_worker(KvmWorkerHandover handover) {
  auto vm = std::make_unique<KvmWorkerVm>(std::move(handover));
  KILN_TRY(vm->start());
  return std::unique_ptr<vmm::Vm>(std::move(vm));
}

}  // namespace kiln::runner
