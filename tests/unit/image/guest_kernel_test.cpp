#include "image/guest_kernel.h"

#include "common/clock.h"
#include "common/fs.h"
#include "image/debian_kernel.h"
#include "image_test_util.h"

#include <gtest/gtest.h>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;

constexpr std::string_view kDep =
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n";

// A kernel laid out the way fetch_debian_kernel leaves it.
void make_cached(const stdfs::path& kernels, const std::string& version, bool complete = true) {
  auto dir = kernels / version;
  testing::write(dir / "boot" / ("vmlinuz-" + version), testing::make_bzimage(version + " #1"));
  testing::write(dir / "lib/modules" / version / "modules.dep", std::string(kDep));
  if (complete) testing::write(dir / kKernelCompleteMarker, version + "\n");
}

TEST(GuestKernel, CachedKernelNeedsItsMarker) {
  auto tmp = testing::temp_dir();
  auto kernels = tmp.path() / "kernels";
  EXPECT_FALSE(find_cached_kernel(kernels));  // no directory at all
  make_cached(kernels, "6.1.0-9-cloud-amd64", /*complete=*/false);
  EXPECT_FALSE(find_cached_kernel(kernels));
  testing::write(kernels / ".fetch-abc" / kKernelCompleteMarker, ".fetch-abc\n");
  EXPECT_FALSE(find_cached_kernel(kernels));
  make_cached(kernels, "6.1.0-9-cloud-amd64");
  auto k = find_cached_kernel(kernels);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->version, "6.1.0-9-cloud-amd64");
  EXPECT_EQ(k->kernel, kernels / "6.1.0-9-cloud-amd64/boot/vmlinuz-6.1.0-9-cloud-amd64");
  EXPECT_EQ(k->modules_dir, kernels / "6.1.0-9-cloud-amd64/lib/modules/6.1.0-9-cloud-amd64");
}

TEST(GuestKernel, NewestCachedVersionWins) {
  auto tmp = testing::temp_dir();
  auto kernels = tmp.path() / "kernels";
  make_cached(kernels, "6.1.0-9-cloud-amd64");
  make_cached(kernels, "6.1.0-10-cloud-amd64");
  make_cached(kernels, "6.1.0-8-cloud-amd64");
  auto k = find_cached_kernel(kernels);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->version, "6.1.0-10-cloud-amd64");
}

TEST(GuestKernel, MarkerMustNameItsDirectoryAndFilesMustExist) {
  auto tmp = testing::temp_dir();
  auto kernels = tmp.path() / "kernels";
  make_cached(kernels, "6.1.0-1");
  testing::write(kernels / "6.1.0-1" / kKernelCompleteMarker, "something-else\n");
  EXPECT_FALSE(find_cached_kernel(kernels));
  make_cached(kernels, "6.1.0-2");
  stdfs::remove(kernels / "6.1.0-2/lib/modules/6.1.0-2/modules.dep");
  EXPECT_FALSE(find_cached_kernel(kernels));
}

TEST(GuestKernel, DefaultUsesCacheWithoutAnySubprocess) {
  auto tmp = testing::temp_dir();
  testing::ScopedEnv cache("KILN_CACHE_DIR", tmp.path().string());
  make_cached(tmp.path() / "kernels", "6.1.0-5-cloud-amd64");
  // With no PATH, apt-cache and friends cannot run: success proves the fast path ran none.
  testing::ScopedEnv path("PATH", "/nonexistent");
  const auto start = Clock::now();
  auto k = resolve_guest_kernel({});
  const double ms = ms_since(start);
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->version, "6.1.0-5-cloud-amd64");
  RecordProperty("fast_path_ms", std::to_string(ms));
}

TEST(GuestKernel, OverrideWithModules) {
  auto tmp = testing::temp_dir();
  testing::write(tmp.path() / "vmlinuz", testing::make_bzimage("6.1.0-custom (me@host) #1"));
  auto mods = tmp.path() / "root/lib/modules/6.1.0-custom";
  testing::write(mods / "modules.dep", std::string(kDep));
  auto k = resolve_guest_kernel({tmp.path() / "vmlinuz", mods, {}});
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->version, "6.1.0-custom");
  EXPECT_EQ(k->kernel, tmp.path() / "vmlinuz");
  EXPECT_EQ(k->modules_dir, mods);
}

TEST(GuestKernel, OverrideErrorsSayWhatToDo) {
  auto tmp = testing::temp_dir();
  auto err = [](const KernelOptions& o) {
    auto r = resolve_guest_kernel(o);
    EXPECT_FALSE(r);
    return r ? std::string() : r.error().message;
  };
  EXPECT_NE(err({tmp.path() / "absent", {}, {}}).find("does not exist"), std::string::npos);

  testing::write(tmp.path() / "notes.txt", "not a kernel");
  EXPECT_NE(err({tmp.path() / "notes.txt", {}, {}}).find("notes.txt is not a Linux bzImage"), std::string::npos);

  testing::write(tmp.path() / "vmlinuz", testing::make_bzimage("0.0.0-kiln-no-such-release #1"));
  EXPECT_NE(err({tmp.path() / "vmlinuz", {}, {}}).find("--modules"), std::string::npos);

  auto mods = tmp.path() / "root/lib/modules/0.0.0-kiln-no-such-release";
  stdfs::create_directories(mods);
  std::string no_dep = err({tmp.path() / "vmlinuz", mods, {}});
  EXPECT_NE(no_dep.find("depmod -b " + (tmp.path() / "root").string() + " 0.0.0-kiln-no-such-release"),
            std::string::npos)
      << no_dep;
  EXPECT_NE(err({{}, mods, {}}).find("needs --kernel"), std::string::npos);
}

TEST(GuestKernel, ParsesAptCacheDepends) {
  EXPECT_EQ(parse_apt_cache_depends("linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-28-cloud-amd64\n"),
            "linux-image-6.1.0-28-cloud-amd64");
  EXPECT_EQ(parse_apt_cache_depends("linux-image-cloud-amd64\n |Depends: <linux-image-x-cloud-amd64>\n"
                                    "  Depends: linux-image-6.1.0-29-cloud-amd64\n"),
            "linux-image-6.1.0-29-cloud-amd64");
  EXPECT_FALSE(parse_apt_cache_depends(""));
  EXPECT_FALSE(parse_apt_cache_depends("linux-image-cloud-amd64\n"));
  EXPECT_FALSE(parse_apt_cache_depends("  Depends: linux-image-cloud-amd64-signed\n"));
  EXPECT_FALSE(parse_apt_cache_depends("  Depends: linux-image-6.1;rm -rf /-cloud-amd64\n"));
}

}  // namespace
}  // namespace kiln::image
