#include "vmm/kvm/vcpu.h"

#include "common/log.h"
#include "vmm/kvm/vcpu_kick.h"

#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

namespace kiln::vmm::kvm {
namespace {

std::string segment(const char* name, const kvm_segment& s) {
  return fmt::format(" {}={:#x}/base={:#x}/type={}/l={}/db={}", name, s.selector, s.base, s.type, s.l, s.db);
}

const char* exit_name(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_SHUTDOWN: return "shutdown (triple fault)";
    case KVM_EXIT_FAIL_ENTRY: return "failed VM entry";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM internal error (instruction emulation failed)";
    case KVM_EXIT_HLT: return "halt without an interrupt controller";
    default: return "unexpected exit";
  }
}

}  // namespace

Result<std::unique_ptr<Vcpu>> Vcpu::create(const KvmSystem& sys, const KvmVm& vm, uint32_t index) {
  UniqueFd fd(::ioctl(vm.fd(), KVM_CREATE_VCPU, index));
  if (!fd) return make_error("KVM_CREATE_VCPU {} failed: {}", index, std::strerror(errno));
  void* area = ::mmap(nullptr, sys.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (area == MAP_FAILED) return make_error("mmap of vCPU {}'s kvm_run failed: {}", index, std::strerror(errno));
  vcpu_kick_signal();  // the handler must exist before any kick
  return std::unique_ptr<Vcpu>(new Vcpu(index, std::move(fd), static_cast<kvm_run*>(area), sys.vcpu_mmap_size()));
}

Vcpu::~Vcpu() {
  stop();
  ::munmap(run_, run_size_);
}

void Vcpu::start(IoBus& pio, IoBus& mmio, StopHandler on_stop, bool paused) {
  pio_ = &pio;
  mmio_ = &mmio;
  on_stop_ = std::move(on_stop);
  pause_requested_ = paused;
  thread_ = std::thread([this] { loop(); });
}

bool Vcpu::wait_while_paused() {
  std::unique_lock lock(mutex_);
  if (!pause_requested_ && !stop_requested_) return true;
  parked_ = true;
  changed_.notify_all();
  changed_.wait(lock, [this] { return !pause_requested_ || stop_requested_; });
  parked_ = false;
  if (stop_requested_) return false;
  // Cleared only here, with the pauser gone: a kick can then never be lost (vcpu_kick.h).
  run_->immediate_exit = 0;
  return true;
}

void Vcpu::loop() {
  // Named so that ps, gdb and a host kernel's oops say which thread a vCPU is.
  ::pthread_setname_np(::pthread_self(), fmt::format("kiln-vcpu{}", index_).c_str());
  std::string why;
  // How long the guest runs before it first needs the VMM (--timings): on a restore,
  // roughly when the restored guest is running on its own.
  std::optional<log::ScopedTimer> first_exit;
  if (index_ == 0) first_exit.emplace("kvm: vCPU 0 start -> first exit");
  for (;;) {
    if (!wait_while_paused()) break;
    const int rc = ::ioctl(fd_.get(), KVM_RUN, 0);
    first_exit.reset();
    if (rc < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;  // kicked: look at the flags again
      why = fmt::format("KVM_RUN failed on vCPU {}: {}", index_, std::strerror(errno));
      break;
    }
    if (!handle_exit(why)) break;
  }
  {
    std::lock_guard lock(mutex_);
    finished_ = true;
    parked_ = true;  // a pause() waiting for this thread must not wait forever
    changed_.notify_all();
  }
  if (!why.empty() && on_stop_) on_stop_(index_, why);
}

bool Vcpu::handle_io() {
  const auto& io = run_->io;
  const uint64_t bytes = uint64_t{io.size} * io.count;
  if ((io.size != 1 && io.size != 2 && io.size != 4) || io.data_offset > run_size_ ||
      bytes > run_size_ - io.data_offset) {
    log::debug("kvm: malformed port I/O exit (port {:#x}, size {}, count {}) ignored", io.port, io.size, io.count);
    return true;
  }
  auto* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
  for (uint32_t i = 0; i < io.count; ++i) {
    std::span<uint8_t> item(data + uint64_t{i} * io.size, io.size);
    if (io.direction == KVM_EXIT_IO_OUT)
      pio_->write(io.port, item);
    else
      pio_->read(io.port, item);
  }
  return true;
}

bool Vcpu::handle_exit(std::string& why) {
  switch (run_->exit_reason) {
    case KVM_EXIT_IO:
      return handle_io();
    case KVM_EXIT_MMIO: {
      auto& m = run_->mmio;
      uint32_t len = m.len > sizeof m.data ? sizeof m.data : m.len;
      if (m.is_write)
        mmio_->write(m.phys_addr, std::span<const uint8_t>(m.data, len));
      else
        mmio_->read(m.phys_addr, std::span<uint8_t>(m.data, len));
      return true;
    }
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_INTR:
      return true;
    case KVM_EXIT_SYSTEM_EVENT: {
      uint32_t type = run_->system_event.type;
      why = type == KVM_SYSTEM_EVENT_RESET ? "the guest rebooted" : type == KVM_SYSTEM_EVENT_SHUTDOWN
                                                                       ? "the guest powered off"
                                                                       : fmt::format("guest system event {}", type);
      return false;
    }
    case KVM_EXIT_FAIL_ENTRY:
      why = fmt::format("vCPU {}: {} (hardware reason {:#x}); {}", index_, exit_name(run_->exit_reason),
                        run_->fail_entry.hardware_entry_failure_reason, describe_registers());
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      why = fmt::format("vCPU {}: {} (suberror {}); {}", index_, exit_name(run_->exit_reason),
                        run_->internal.suberror, describe_registers());
      return false;
    default:
      why = fmt::format("vCPU {}: {} (KVM exit reason {}); {}", index_, exit_name(run_->exit_reason),
                        run_->exit_reason, describe_registers());
      return false;
  }
}

void Vcpu::pause() {
  std::unique_lock lock(mutex_);
  if (!thread_.joinable() || finished_) return;
  pause_requested_ = true;
  run_->immediate_exit = 1;
  // Kick until parked: the first signal may land before the thread enters KVM_RUN,
  // where immediate_exit catches it; the repeat covers every other interleaving.
  while (!parked_) {
    kick_thread(thread_.native_handle());
    changed_.wait_for(lock, std::chrono::milliseconds(1));
  }
}

void Vcpu::resume() {
  std::lock_guard lock(mutex_);
  pause_requested_ = false;
  changed_.notify_all();
}

void Vcpu::request_stop() {
  std::lock_guard lock(mutex_);
  if (!thread_.joinable() || finished_) return;
  stop_requested_ = true;
  run_->immediate_exit = 1;
  changed_.notify_all();
  if (std::this_thread::get_id() != thread_.get_id()) kick_thread(thread_.native_handle());
}

void Vcpu::stop() {
  if (!thread_.joinable()) return;
  {
    std::unique_lock lock(mutex_);
    stop_requested_ = true;
    run_->immediate_exit = 1;
    changed_.notify_all();
    while (!finished_) {
      kick_thread(thread_.native_handle());
      changed_.wait_for(lock, std::chrono::milliseconds(1));
    }
  }
  thread_.join();
}

std::string Vcpu::describe_registers() const {
  kvm_regs r{};
  kvm_sregs s{};
  if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0 || ::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0)
    return fmt::format("registers unavailable: {}", std::strerror(errno));
  return fmt::format(
      "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x} "
      "cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}{}{}",
      r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, s.cr0, s.cr2, s.cr3, s.cr4, s.efer,
      segment("cs", s.cs), segment("ss", s.ss));
}

}  // namespace kiln::vmm::kvm
