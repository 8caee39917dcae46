// The snapshot key as the runner builds it holds the engine identity: every host fact a
// snapshot depends on must land in the key's id, or a store shared between machines
// (a CI fleet's registry) would hand one host's snapshot to a host it does not fit.
#include "snapshot/key.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/qemu/qemu_engine.h"

#include "../kvm/cpuid_test_table.h"

#include <gtest/gtest.h>

#include <set>

namespace kiln {
namespace {

using vmm::Accel;
using vmm::qemu::QemuEngine;

snapshot::SnapshotKey key_with(const std::string& engine_identity) {
  snapshot::SnapshotKey k;
  k.image = "default";
  k.image_digest = "0123456789abcdef0123456789abcdef";
  k.kernel_digest = "11111111111111111111111111111111";
  k.initramfs_digest = "22222222222222222222222222222222";
  k.memory_mib = 256;
  k.vcpus = 1;
  k.engine = engine_identity;
  k.baked_by_version = "0.1.0";
  k.cmdline = "console=ttyS0 quiet";
  return k;
}

std::string host_cpu(const vmm::kvm::CpuidTable& cpuid) {
  vmm::kvm::KvmCaps caps;
  caps.api_version = 12;
  caps.xsave_size = 4096;
  return vmm::kvm::make_passthrough_cpu_identity(cpuid, vmm::kvm::testing::amd_epyc_msr_index_list(), caps)
      .to_string();
}

TEST(EngineIdentityInKey, EveryHostFactChangesTheId) {
  auto other_model = vmm::kvm::testing::amd_epyc_supported_cpuid();
  vmm::kvm::find_cpuid(other_model, 1)->eax = 0x00a10f12;  // next stepping
  auto other_features = vmm::kvm::testing::amd_epyc_supported_cpuid();
  vmm::kvm::find_cpuid(other_features, 7, 0)->ebx ^= 1u << 5;  // AVX2
  const std::string cpu = host_cpu(vmm::kvm::testing::amd_epyc_supported_cpuid());
  const std::vector<std::string> identities = {
      QemuEngine::identity_for("7.2.22", Accel::tcg, 2596000, ""),
      QemuEngine::identity_for("8.2.2", Accel::tcg, 2596000, ""),         // another QEMU
      QemuEngine::identity_for("7.2.22", Accel::tcg, 2994000, ""),        // another TSC rate
      QemuEngine::identity_for("7.2.22", Accel::tcg, std::nullopt, ""),   // guest calibrated itself
      QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt, cpu),  // KVM
      QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt, host_cpu(other_model)),
      QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt, host_cpu(other_features)),
  };
  std::set<std::string> ids;
  for (const auto& identity : identities)
    EXPECT_TRUE(ids.insert(key_with(identity).id()).second) << identity << " shares a key with another host";
  // ...and the same host gives the same key.
  EXPECT_EQ(key_with(QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt, cpu)).id(),
            key_with(QemuEngine::identity_for("7.2.22", Accel::kvm, std::nullopt,
                                              host_cpu(vmm::kvm::testing::amd_epyc_supported_cpuid())))
                .id());
}

}  // namespace
}  // namespace kiln
