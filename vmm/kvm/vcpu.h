// One virtual CPU: its fd, the mmap'd kvm_run area and the thread that runs it.
// Port and MMIO exits go to the buses; exits that end the guest (shutdown, a
// failed entry, an emulation error) stop this vCPU and are reported once with
// the registers, never crash kiln. pause() brings the thread out of KVM_RUN and
// parks it (for snapshots); stop() ends it.
#pragma once

#include "common/result.h"
#include "common/unique_fd.h"
#include "vmm/kvm/io_bus.h"
#include "vmm/kvm/kvm_system.h"
#include "vmm/kvm/kvm_vm.h"

#include "vmm/kvm/linux_kvm.h"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace kiln::vmm::kvm {

class Vcpu {
 public:
  /// Called once, on the vCPU thread, when the guest can no longer run (`why` is for users).
  using StopHandler = std::function<void(uint32_t index, const std::string& why)>;

  static Result<std::unique_ptr<Vcpu>> create(const KvmSystem& sys, const KvmVm& vm, uint32_t index);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  uint32_t index() const { return index_; }
  int fd() const { return fd_.get(); }

  /// Start the thread, running the guest (or parked first when `paused`).
  void start(IoBus& pio, IoBus& mmio, StopHandler on_stop, bool paused = false);
  /// Out of KVM_RUN and parked on return (state ioctls are safe then). Idempotent.
  void pause();
  void resume();
  /// End the thread and join it. Idempotent; the fd stays open until destruction.
  /// Never from this vCPU's own thread (StopHandler): use request_stop() there.
  void stop();
  /// Ask the thread to end without waiting for it (safe from any thread).
  void request_stop();

  /// "rip=... rsp=... cr0=..." for error messages (the vCPU must not be running).
  std::string describe_registers() const;

 private:
  Vcpu(uint32_t index, UniqueFd fd, kvm_run* run, size_t run_size)
      : index_(index), fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  void loop();
  /// Handle one exit; false when the guest cannot continue (`why` set).
  bool handle_exit(std::string& why);
  bool handle_io();
  /// Wait while a pause is requested; false when the thread must end.
  bool wait_while_paused();

  uint32_t index_;
  UniqueFd fd_;
  kvm_run* run_;
  size_t run_size_;
  IoBus* pio_ = nullptr;
  IoBus* mmio_ = nullptr;
  StopHandler on_stop_;
  std::thread thread_;

  std::mutex mutex_;
  std::condition_variable changed_;
  bool pause_requested_ = false;
  bool stop_requested_ = false;
  bool parked_ = false;
  bool finished_ = false;
};

}  // namespace kiln::vmm::kvm
