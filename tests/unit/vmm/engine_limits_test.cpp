// Engine limits: what each engine boots, the message a request beyond them gets, and
// how "auto" chooses for a request only one engine serves. No VM starts.
#include "vmm/engine.h"

#include "common/fs.h"
#include "engine_choice_test_util.h"
#include "env_guard.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace kiln::vmm {
namespace {

GuestSpec sized(uint32_t memory_mib, uint32_t vcpus) {
  GuestSpec spec;
  spec.memory_mib = memory_mib;
  spec.vcpus = vcpus;
  return spec;
}

std::string refusal(const std::string& engine, uint32_t memory_mib, uint32_t vcpus) {
  auto r = check_engine_limits(EngineOptions{engine, "auto", false}, sized(memory_mib, vcpus));
  return r ? "" : r.error().message;
}

// The numbers docs/engines.md states, from the kvm engine's memory layout (RAM ends
// below the device window at 0xd0000000) and CPUID topology, and qemu's checks.
TEST(EngineLimits, AreTheDocumentedOnes) {
  auto kvm = engine_limits("kvm");
  ASSERT_TRUE(kvm);
  EXPECT_EQ(kvm->min_memory_mib, 64u);
  EXPECT_EQ(kvm->max_memory_mib, 3328u);
  EXPECT_EQ(kvm->max_vcpus, 64u);
  auto qemu = engine_limits("qemu");
  ASSERT_TRUE(qemu);
  EXPECT_EQ(qemu->min_memory_mib, 32u);
  EXPECT_EQ(qemu->max_memory_mib, 1048576u);
  EXPECT_EQ(qemu->max_vcpus, 255u);
  EXPECT_FALSE(engine_limits("auto"));
  EXPECT_FALSE(engine_limits("vbox"));
}

TEST(EngineLimits, TheEdgesFit) {
  EXPECT_EQ(refusal("kvm", 64, 1), "");
  EXPECT_EQ(refusal("kvm", 3328, 64), "");
  EXPECT_EQ(refusal("qemu", 32, 1), "");
  EXPECT_EQ(refusal("qemu", 1048576, 255), "");
}

TEST(EngineLimits, ARefusalNamesTheOptionTheLimitTheEngineAndWhatFits) {
  EXPECT_EQ(refusal("kvm", 3329, 1),
            "--memory 3329: the kvm engine supports at most 3328 MiB; use --engine qemu or --memory 3328 or less");
  EXPECT_EQ(refusal("kvm", 48, 1),
            "--memory 48: the kvm engine needs at least 64 MiB; use --engine qemu or --memory 64 or more");
  EXPECT_EQ(refusal("kvm", 256, 65),
            "--cpus 65: the kvm engine supports at most 64 vCPUs; use --engine qemu or --cpus 64 or fewer");
  // Nothing serves these: no engine to suggest.
  EXPECT_EQ(refusal("qemu", 256, 256), "--cpus 256: the qemu engine supports at most 255 vCPUs; use --cpus 255 or fewer");
  EXPECT_EQ(refusal("qemu", 16, 1), "--memory 16: the qemu engine needs at least 32 MiB; use --memory 32 or more");
  EXPECT_EQ(refusal("kvm", 256, 0), "--cpus 0: a guest needs at least one vCPU; use --cpus 1 or more");
}

// "auto" accepts what either engine serves; beyond both, qemu's (wider) limit is the one shown.
TEST(EngineLimits, AutoAcceptsWhatEitherEngineServes) {
  EXPECT_EQ(refusal("auto", 4096, 1), "");
  EXPECT_EQ(refusal("auto", 256, 128), "");
  EXPECT_EQ(refusal("auto", 48, 1), "");
  EXPECT_EQ(refusal("auto", 2097152, 1),
            "--memory 2097152: the qemu engine supports at most 1048576 MiB; use --memory 1048576 or less");
  EXPECT_EQ(refusal("vbox", 256, 1), "unknown engine 'vbox': use kvm, qemu or auto");
}

class EngineChoiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-engine-choice-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
  }
  bool timer_ran(const std::string& name) const { return timers_.ran(name); }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
  testing::TimerRecorder timers_;
};

// The limit is checked before the engine is opened: the error is the limit, whatever
// /dev/kvm is like on this host.
TEST_F(EngineChoiceTest, ANamedEngineThatCannotServeTheRequestIsNotOpened) {
  auto engine = make_engine(EngineOptions{"kvm", "auto", false}, sized(4096, 1));
  ASSERT_FALSE(engine);
  EXPECT_EQ(engine.error().message,
            "--memory 4096: the kvm engine supports at most 3328 MiB; use --engine qemu or --memory 3328 or less");
  EXPECT_FALSE(timer_ran("kvm: select engine"));
}

// A request only qemu serves: auto takes qemu without probing /dev/kvm and without
// recording anything about KVM for this boot.
TEST_F(EngineChoiceTest, AutoPicksTheOnlyEngineThatServesTheRequest) {
  auto engine = make_engine(EngineOptions{"auto", "tcg", false}, sized(4096, 1));
  ASSERT_TRUE(engine) << engine.error().message;
  EXPECT_EQ((*engine)->name(), "qemu");
  EXPECT_FALSE(timer_ran("kvm: usability probe"));
  EXPECT_FALSE(timer_ran("kvm: select engine"));
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_->path() / "host", ec))
    EXPECT_FALSE(e.path().filename().string().starts_with("kvm-")) << "recorded: " << e.path().filename();
}

// Where /dev/kvm is missing, a failed probe is not remembered: every auto run probes.
// Run where /dev/kvm is hidden, so it runs on every host.
TEST_F(EngineChoiceTest, AutoWithoutDevKvmPicksQemuAndRecordsNothing) {
  auto r = testing::without_dev_kvm([] {
    std::string out;
    testing::TimerRecorder timers;
    for (int run = 0; run < 2; ++run) {
      auto engine = make_engine(EngineOptions{"auto", "tcg", false});
      out += engine ? (*engine)->name() + " " : "error: " + engine.error().message + " ";
    }
    return out + "probes " + std::to_string(timers.times("kvm: usability probe"));
  });
  if (!r.report) GTEST_SKIP() << r.why_not;
  EXPECT_EQ(*r.report, "qemu qemu probes 2");
  EXPECT_FALSE(std::filesystem::exists(dir_->path() / "host" / ("kvm-ran-a-guest-" + testing::this_boot_id())));
}

}  // namespace
}  // namespace kiln::vmm
