// QEMU on KVM names the host CPU its guests see (-cpu host) in its identity (label kvm:
// needs a /dev/kvm that opens; no guest runs).
#include "vmm/qemu/qemu_engine.h"

#include "common/fs.h"
#include "common/unique_fd.h"
#include "env_guard.h"
#include "vmm/kvm/cpu_identity.h"
#include "vmm/qemu/qemu_binary.h"

#include <fcntl.h>
#include <gtest/gtest.h>

namespace kiln::vmm {
namespace {

TEST(QemuIdentityKvm, NamesThePassedThroughHostCpuStably) {
  if (auto qemu = qemu::find_qemu_binary(); !qemu) GTEST_SKIP() << qemu.error().message;
  auto dir = fs::TempDir::create("/tmp", "kiln-qemu-identity-kvm-test-");
  ASSERT_TRUE(dir);
  testing::EnvGuard cache("KILN_CACHE_DIR", dir->path().string());
  auto engine = qemu::QemuEngine::create(EngineOptions{"qemu", "kvm", false});
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_TRUE((*engine)->on_kvm());

  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(kvm);
  auto cpu = kvm::probe_passthrough_cpu_identity(kvm.get());
  ASSERT_TRUE(cpu) << cpu.error().message;
  const std::string id = (*engine)->identity();
  EXPECT_EQ(id, qemu::QemuEngine::identity_for((*engine)->version(), Accel::kvm, std::nullopt, cpu->to_string()));
  EXPECT_NE(id.find("/kvm/" + cpu->vendor + "-"), std::string::npos) << id;
  // Asked again (another CPU may answer the ioctls): the same identity.
  auto again = qemu::QemuEngine::create(EngineOptions{"qemu", "kvm", false});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ((*again)->identity(), id);
}

}  // namespace
}  // namespace kiln::vmm
