#include "vmm/qemu/tcg_tsc.h"

#include "common/clock.h"
#include "common/fs.h"
#include "env_guard.h"
#include "vmm/per_boot_cache.h"

#include <gtest/gtest.h>

namespace kiln::vmm {
namespace {

class PerBoot : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create("/tmp", "kiln-perboot-test-");
    ASSERT_TRUE(dir);
    dir_.emplace(std::move(*dir));
    cache_.emplace("KILN_CACHE_DIR", dir_->path().string());
  }
  std::optional<fs::TempDir> dir_;
  std::optional<testing::EnvGuard> cache_;
};

TEST_F(PerBoot, BootIdLooksLikeOne) {
  std::string id = host_boot_id();
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef-unknow"), std::string::npos) << id;
}

TEST_F(PerBoot, WriteReadAndDropOtherBoots) {
  EXPECT_EQ(read_per_boot("fact-", 100), std::nullopt);
  ASSERT_TRUE(fs::make_dirs(dir_->path() / "host"));
  ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "host" / "fact-old-boot", "stale"));
  ASSERT_TRUE(fs::write_file_atomic(dir_->path() / "host" / "other-old-boot", "kept"));
  ASSERT_TRUE(write_per_boot("fact-", "value"));
  EXPECT_EQ(read_per_boot("fact-", 100), "value");
  EXPECT_EQ(read_per_boot("fact-", 2), std::nullopt);  // larger than allowed: ignored
  EXPECT_FALSE(std::filesystem::exists(dir_->path() / "host" / "fact-old-boot"));
  EXPECT_TRUE(std::filesystem::exists(dir_->path() / "host" / "other-old-boot"));
}

TEST_F(PerBoot, TscFrequencyIsMeasuredOnceAndCached) {
  auto first = qemu::host_tsc_khz();
  if (!first) GTEST_SKIP() << "host TSC is not invariant";
  EXPECT_GE(*first, 100'000u);
  EXPECT_LE(*first, 10'000'000u);
  auto t0 = Clock::now();
  auto second = qemu::host_tsc_khz();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(20)) << "second call must hit the cache";
  EXPECT_EQ(second, first);
  // A garbage cache entry is re-measured, not trusted.
  ASSERT_TRUE(write_per_boot("tsc-khz-", "12"));
  auto third = qemu::host_tsc_khz();
  ASSERT_TRUE(third);
  EXPECT_NEAR(static_cast<double>(*third), static_cast<double>(*first), *first * 0.01);
}

TEST_F(PerBoot, TscFrequencyIsGivenInWholeMegahertz) {
  auto first = qemu::host_tsc_khz();
  if (!first) GTEST_SKIP() << "host TSC is not invariant";
  EXPECT_EQ(*first % 1000, 0u) << *first;
  // The cache holds the measurement; what the guest is told (and the key holds) is rounded.
  ASSERT_TRUE(write_per_boot("tsc-khz-", "2596126\n"));
  EXPECT_EQ(qemu::host_tsc_khz(), 2596000u);
}

TEST(TscHint, RoundsToTheNearestMegahertz) {
  EXPECT_EQ(qemu::tsc_hint_khz(2596126), 2596000u);
  EXPECT_EQ(qemu::tsc_hint_khz(2595500), 2596000u);
  EXPECT_EQ(qemu::tsc_hint_khz(2596499), 2596000u);
  EXPECT_EQ(qemu::tsc_hint_khz(2596500), 2597000u);
  EXPECT_EQ(qemu::tsc_hint_khz(2994000), 2994000u);
}

}  // namespace
}  // namespace kiln::vmm
