// Fetching Debian's cloud kernel for real (apt-get download, tens of MB): needs the
// network, so it is labelled `network` and stays out of the fast unit set.
#include "image/guest_kernel.h"

#include "common/fs.h"
#include "image/bzimage.h"
#include "image/initramfs.h"
#include "image/module_deps.h"
#include "image_test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;

TEST(GuestKernelFetch, FetchesDebianCloudKernelOnceForConcurrentCallers) {
  for (const char* tool : {"/usr/bin/apt-get", "/usr/bin/apt-cache", "/usr/bin/dpkg-deb"})
    if (!fs::is_executable_file(tool)) GTEST_SKIP() << tool << " is not available (not a Debian host?)";
  auto tmp = testing::temp_dir();
  testing::ScopedEnv cache("KILN_CACHE_DIR", tmp.path().string());

  std::atomic<int> fetches{0};
  auto progress = [&](const std::string& m) {
    if (m.starts_with("fetching Debian kernel linux-image-")) ++fetches;
  };
  Result<GuestKernel> a = make_error("not run"), b = make_error("not run");
  std::thread t1([&] { a = resolve_guest_kernel({{}, {}, progress}); });
  std::thread t2([&] { b = resolve_guest_kernel({{}, {}, progress}); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_EQ(a->kernel, b->kernel);
  EXPECT_TRUE(a->version.ends_with("-cloud-amd64")) << a->version;
  auto v = bzimage_version(a->kernel);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, a->version);

  // Only the bzImage, the modules and the marker are kept.
  std::vector<std::string> top;
  for (auto& e : stdfs::directory_iterator(tmp.path() / "kernels" / a->version)) top.push_back(e.path().filename());
  std::sort(top.begin(), top.end());
  EXPECT_EQ(top, (std::vector<std::string>{"boot", "kiln-kernel.complete", "lib"}));

  // Every guest module, the optional ones included, comes with Debian's cloud kernel.
  auto order = guest_module_load_order(a->modules_dir);
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_EQ(*order, (std::vector<std::string>{
                        "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                        "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/char/virtio_console.ko",
                        "kernel/drivers/block/virtio_blk.ko", "kernel/drivers/net/dummy.ko", "kernel/fs/fuse/fuse.ko",
                        "kernel/fs/overlayfs/overlay.ko", "kernel/fs/squashfs/squashfs.ko"}));

  // Afterwards: the cache, no subprocess.
  testing::ScopedEnv path("PATH", "/nonexistent");
  auto again = resolve_guest_kernel({});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->kernel, a->kernel);
}

}  // namespace
}  // namespace kiln::image
