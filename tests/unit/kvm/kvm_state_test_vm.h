// A bare KVM VM for the state tests, built from raw ioctls so these tests depend
// only on the state code: in-kernel irqchip and PIT, a little real-mode RAM,
// vCPUs with the guest CPUID and boot MSRs. Tests that use it need a usable
// /dev/kvm (label `kvm`, run in the nested-KVM lab); without one they FAIL.
#pragma once

#include "common/unique_fd.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/kvm/cpuid.h"
#include "vmm/kvm/msr_list.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include "vmm/kvm/linux_kvm.h"
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln::vmm::kvm::testing {

inline constexpr size_t kTestRamBytes = 1 << 20;

struct TestVcpu {
  UniqueFd fd;
  kvm_run* run = nullptr;
  size_t run_size = 0;
  ~TestVcpu() {
    if (run) ::munmap(run, run_size);
  }
};

struct TestVm {
  UniqueFd kvm, vm;
  KvmCaps caps;
  uint8_t* ram = nullptr;  // kTestRamBytes at guest-physical 0
  std::vector<std::unique_ptr<TestVcpu>> vcpus;
  std::vector<uint32_t> msrs_to_save;

  TestVm() = default;
  TestVm(const TestVm&) = delete;
  TestVm& operator=(const TestVm&) = delete;
  ~TestVm() {
    vcpus.clear();
    vm.reset();
    if (ram) ::munmap(ram, kTestRamBytes);
  }

  /// `configure`: give each vCPU the guest CPUID and boot MSRs and probe the MSR
  /// list (what a cold boot does); false leaves them fresh (what a restore wants).
  static Result<std::unique_ptr<TestVm>> create(uint32_t vcpu_count, bool configure) {
    auto t = std::make_unique<TestVm>();
    t->kvm = UniqueFd(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
    if (!t->kvm) return make_error("cannot open /dev/kvm: {}", std::strerror(errno));
    KILN_ASSIGN_OR_RETURN(t->caps, KvmCaps::probe(t->kvm.get()));
    t->vm = UniqueFd(ioctl(t->kvm.get(), KVM_CREATE_VM, 0));
    if (!t->vm) return make_error("KVM_CREATE_VM: {}", std::strerror(errno));
    if (ioctl(t->vm.get(), KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0) return make_error("KVM_SET_TSS_ADDR: {}", std::strerror(errno));
    if (ioctl(t->vm.get(), KVM_CREATE_IRQCHIP, 0) < 0) return make_error("KVM_CREATE_IRQCHIP: {}", std::strerror(errno));
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    if (ioctl(t->vm.get(), KVM_CREATE_PIT2, &pit) < 0) return make_error("KVM_CREATE_PIT2: {}", std::strerror(errno));
    void* ram = ::mmap(nullptr, kTestRamBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ram == MAP_FAILED) return make_error("mmap: {}", std::strerror(errno));
    t->ram = static_cast<uint8_t*>(ram);
    kvm_userspace_memory_region region{};
    region.memory_size = kTestRamBytes;
    region.userspace_addr = reinterpret_cast<uint64_t>(ram);
    if (ioctl(t->vm.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0)
      return make_error("KVM_SET_USER_MEMORY_REGION: {}", std::strerror(errno));
    const int run_size = ioctl(t->kvm.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0) return make_error("KVM_GET_VCPU_MMAP_SIZE: {}", std::strerror(errno));
    KILN_ASSIGN_OR_RETURN(auto supported, supported_cpuid(t->kvm.get()));
    KILN_ASSIGN_OR_RETURN(auto listed, kvm_msr_index_list(t->kvm.get()));
    for (uint32_t i = 0; i < vcpu_count; ++i) {
      auto v = std::make_unique<TestVcpu>();
      v->fd = UniqueFd(ioctl(t->vm.get(), KVM_CREATE_VCPU, i));
      if (!v->fd) return make_error("KVM_CREATE_VCPU {}: {}", i, std::strerror(errno));
      void* run = ::mmap(nullptr, static_cast<size_t>(run_size), PROT_READ | PROT_WRITE, MAP_SHARED, v->fd.get(), 0);
      if (run == MAP_FAILED) return make_error("mmap kvm_run: {}", std::strerror(errno));
      v->run = static_cast<kvm_run*>(run);
      v->run_size = static_cast<size_t>(run_size);
      if (configure) {
        KILN_TRY(set_vcpu_cpuid(v->fd.get(), guest_cpuid(supported, i, vcpu_count)));
        KILN_TRY(set_msrs(v->fd.get(), boot_msrs()));
        if (i == 0) {
          KILN_ASSIGN_OR_RETURN(t->msrs_to_save, probe_msrs_to_save(v->fd.get(), msr_save_candidates(listed)));
        }
      }
      t->vcpus.push_back(std::move(v));
    }
    return t;
  }

  int vcpu(size_t i) const { return vcpus.at(i)->fd.get(); }
};

/// The TestVm, or the test fails saying why.
#define KILN_ASSIGN_TEST_VM(var, count, configure)                                  \
  auto var##_result = ::kiln::vmm::kvm::testing::TestVm::create(count, configure);   \
  if (!var##_result.ok())                                                           \
    FAIL() << "this test needs a working /dev/kvm (run it in the nested-KVM lab, " \
              "tests/lab/kvm-lab): "                                                \
           << var##_result.error().message;                                         \
  auto var = std::move(var##_result).value()

}  // namespace kiln::vmm::kvm::testing
