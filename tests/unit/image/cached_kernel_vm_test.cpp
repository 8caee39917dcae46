// The parsers against the real thing: the Debian kernel the VM suite's fixture
// (vm.setup.bake) fetched into $KILN_TEST_CACHE, which ctest sets for *_vm_test.cpp.
#include "image/bzimage.h"
#include "image/guest_kernel.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace kiln::image {
namespace {

TEST(BzImage, RealCachedKernel) {
  const char* cache = std::getenv("KILN_TEST_CACHE");
  ASSERT_NE(cache, nullptr) << "KILN_TEST_CACHE is not set: run this test through ctest (fixture vm.setup.bake)";
  auto k = find_cached_kernel(std::filesystem::path(cache) / "kernels");
  ASSERT_TRUE(k) << "no kernel in " << cache << "/kernels: the vm.setup.bake fixture fetches it";
  // The version in the directory name comes from the Debian package, not from the file.
  auto v = bzimage_version(k->kernel);
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, k->version);
  EXPECT_TRUE(check_bzimage(k->kernel));
}

}  // namespace
}  // namespace kiln::image
