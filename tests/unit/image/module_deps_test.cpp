#include "image/module_deps.h"

#include "image_test_util.h"

#include <gtest/gtest.h>

namespace kiln::image {
namespace {

using Paths = std::vector<std::string>;

// The shape of a real Debian 6.1 cloud kernel's modules.dep (depmod output).
constexpr std::string_view kDep =
    "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/virtio/virtio_ring.ko:\n"
    "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.zst: kernel/net/vmw_vsock/vsock.ko.xz "
    "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
    "kernel/net/vmw_vsock/vsock.ko.xz:\n";

constexpr std::string_view kBuiltin = "kernel/fs/binfmt_script.ko\nkernel/drivers/char/virtio-rng.ko\n";

Result<Paths> order(std::string_view dep, std::string_view builtin, const Paths& wanted) {
  return resolve_load_order(parse_modules_dep(dep), parse_modules_builtin(builtin), wanted, "/k");
}

TEST(ModuleDeps, NormalizesNames) {
  EXPECT_EQ(normalize_module_name("kernel/drivers/char/virtio-console.ko.zst"), "virtio_console");
  EXPECT_EQ(normalize_module_name("virtio-mmio"), "virtio_mmio");
  EXPECT_EQ(normalize_module_name("a/b/c.ko.xz"), "c");
  EXPECT_EQ(normalize_module_name("vsock.ko.gz"), "vsock");
}

TEST(ModuleDeps, ValidatesPaths) {
  EXPECT_TRUE(is_valid_module_path("kernel/a.ko"));
  EXPECT_TRUE(is_valid_module_path("kernel/a.ko.zst"));
  EXPECT_FALSE(is_valid_module_path("/lib/modules/x/kernel/a.ko"));
  EXPECT_FALSE(is_valid_module_path("kernel/../../../etc/shadow.ko"));
  EXPECT_FALSE(is_valid_module_path("kernel//a.ko"));
  EXPECT_FALSE(is_valid_module_path("kernel/a.txt"));
  EXPECT_FALSE(is_valid_module_path(".ko"));
  EXPECT_FALSE(is_valid_module_path(""));
}

TEST(ModuleDeps, ParsesEntries) {
  auto t = parse_modules_dep(kDep);
  EXPECT_EQ(t.skipped_lines, 0u);
  ASSERT_EQ(t.path_by_name.count("virtio_mmio"), 1u);
  EXPECT_EQ(t.path_by_name.at("virtio_mmio"), "kernel/drivers/virtio/virtio_mmio.ko");
  EXPECT_EQ(t.deps.at("kernel/drivers/virtio/virtio_mmio.ko"),
            (Paths{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"}));
  EXPECT_TRUE(t.deps.at("kernel/drivers/virtio/virtio_ring.ko").empty());
  EXPECT_EQ(t.path_by_name.at("vmw_vsock_virtio_transport"), "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.zst");
}

TEST(ModuleDeps, DependenciesFirstWithoutDuplicates) {
  auto r = order(kDep, "", {"virtio_mmio", "virtio_console"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                       "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/char/virtio_console.ko"}));
}

TEST(ModuleDeps, WantedNamesAreNormalizedAndRepeatsIgnored) {
  auto r = order(kDep, "", {"virtio-console", "virtio_console", "kernel/drivers/virtio/virtio_ring.ko"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                       "kernel/drivers/char/virtio_console.ko"}));
}

TEST(ModuleDeps, CompressedModules) {
  auto r = order(kDep, "", {"vmw_vsock_virtio_transport"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                       "kernel/net/vmw_vsock/vsock.ko.xz", "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.zst"}));
}

TEST(ModuleDeps, BuiltinModulesAreSkipped) {
  auto r = order(kDep, kBuiltin, {"binfmt_script", "virtio_rng", "virtio_ring"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/drivers/virtio/virtio_ring.ko"}));
  // A dependency that is built in is not loaded either.
  auto r2 = order("kernel/a.ko: kernel/b.ko\n", "kernel/b.ko\n", {"a"});
  ASSERT_TRUE(r2) << r2.error().message;
  EXPECT_EQ(*r2, (Paths{"kernel/a.ko"}));
}

TEST(ModuleDeps, MissingModuleIsAClearError) {
  auto r = order(kDep, kBuiltin, {"virtio_mmio", "9pnet_virtio"});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("9pnet_virtio"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("/k/modules.dep"), std::string::npos) << r.error().message;
}

TEST(ModuleDeps, CyclesTerminate) {
  auto r = order("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko: kernel/a.ko\n", "", {"a", "c"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/c.ko", "kernel/b.ko", "kernel/a.ko"}));
  auto self = order("kernel/a.ko: kernel/a.ko\n", "", {"a"});
  ASSERT_TRUE(self);
  EXPECT_EQ(*self, (Paths{"kernel/a.ko"}));
}

TEST(ModuleDeps, LongChainDoesNotRecurse) {
  std::string dep;
  constexpr int kN = 50000;
  for (int i = 0; i < kN; ++i) dep += fmt::format("kernel/m{}.ko: kernel/m{}.ko\n", i, i + 1);
  auto r = order(dep, "", {"m0"});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->size(), size_t{kN} + 1);
  EXPECT_EQ(r->front(), fmt::format("kernel/m{}.ko", kN));
  EXPECT_EQ(r->back(), "kernel/m0.ko");
}

TEST(ModuleDeps, GarbageLinesAreSkippedAndCounted) {
  std::string dep = "# comment\n\n"
                    "this is not a module line\n"
                    "/lib/modules/6.1/kernel/abs.ko:\n"
                    "kernel/evil.ko: ../../etc/shadow.ko\n"
                    "kernel/bad name.ko:\n"
                    ":\n"
                    "kernel/good.ko:   kernel/dep.ko\t\r\n"
                    "kernel/dep.ko:\n"
                    "kernel/good.ko: kernel/other.ko\n";  // duplicate: first wins
  dep.push_back('\0');
  dep += "\xff\xfe garbage";
  auto t = parse_modules_dep(dep);
  EXPECT_EQ(t.skipped_lines, 7u);
  EXPECT_EQ(t.path_by_name.count("evil"), 0u);
  auto r = resolve_load_order(t, {}, {"good"}, "/k");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, (Paths{"kernel/dep.ko", "kernel/good.ko"}));
}

TEST(ModuleDeps, DependencyMissingFromTableIsStillLoaded) {
  auto r = order("kernel/a.ko: kernel/gone.ko\n", "", {"a"});
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, (Paths{"kernel/gone.ko", "kernel/a.ko"}));
}

TEST(ModuleDeps, FromDirectory) {
  auto tmp = testing::temp_dir();
  auto dir = tmp.path() / "lib/modules/6.1.0-test";
  testing::write(dir / "modules.dep", std::string(kDep));
  auto r = module_load_order(dir, {"virtio_console"});
  ASSERT_TRUE(r) << r.error().message;  // modules.builtin is optional
  EXPECT_EQ(r->back(), "kernel/drivers/char/virtio_console.ko");
  testing::write(dir / "modules.builtin", "kernel/drivers/char/virtio_console.ko\n");
  r = module_load_order(dir, {"virtio_console"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->empty());

  auto missing = module_load_order(tmp.path(), {"virtio_console"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("depmod"), std::string::npos) << missing.error().message;
}

TEST(ModuleDeps, GuestModulesNeedTheRequiredOnesAndSkipAMissingOptionalOne) {
  auto tmp = testing::temp_dir();
  auto dir = tmp.path() / "lib/modules/6.1.0-test";
  const std::string blk =
      "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n";
  const Paths virtio = {"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
                        "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/char/virtio_console.ko",
                        "kernel/drivers/block/virtio_blk.ko"};

  testing::write(dir / "modules.dep", std::string(kDep) + blk + "kernel/drivers/net/dummy.ko:\n");
  auto all = guest_module_load_order(dir);
  ASSERT_TRUE(all) << all.error().message;
  Paths with_dummy = virtio;
  with_dummy.push_back("kernel/drivers/net/dummy.ko");
  EXPECT_EQ(*all, with_dummy);

  // A kernel without dummy still runs guests, only without the private addresses.
  testing::write(dir / "modules.dep", std::string(kDep) + blk);
  auto no_dummy = guest_module_load_order(dir);
  ASSERT_TRUE(no_dummy) << no_dummy.error().message;
  EXPECT_EQ(*no_dummy, virtio);
  testing::write(dir / "modules.builtin", "kernel/drivers/net/dummy.ko\n");
  auto builtin = guest_module_load_order(dir);
  ASSERT_TRUE(builtin) << builtin.error().message;
  EXPECT_EQ(*builtin, virtio);

  // The tree shares' modules are optional too, and loaded after the others when the kernel has them.
  testing::write(dir / "modules.dep", std::string(kDep) + blk +
                                          "kernel/fs/overlayfs/overlay.ko:\nkernel/fs/fuse/fuse.ko:\n");
  std::filesystem::remove(dir / "modules.builtin");
  auto shares = guest_module_load_order(dir);
  ASSERT_TRUE(shares) << shares.error().message;
  Paths with_shares = virtio;
  with_shares.push_back("kernel/fs/fuse/fuse.ko");
  with_shares.push_back("kernel/fs/overlayfs/overlay.ko");
  EXPECT_EQ(*shares, with_shares);

  // Without virtio_blk no engine can attach a disk: not a guest kiln can use.
  testing::write(dir / "modules.dep", std::string(kDep) + "kernel/drivers/net/dummy.ko:\n");
  auto no_blk = guest_module_load_order(dir);
  ASSERT_FALSE(no_blk);
  EXPECT_NE(no_blk.error().message.find("virtio_blk"), std::string::npos) << no_blk.error().message;
}

}  // namespace
}  // namespace kiln::image
