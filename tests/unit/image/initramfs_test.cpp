#include "image/initramfs.h"

#include "common/digest.h"
#include "common/fs.h"
#include "image/elf_interp.h"
#include "image/module_deps.h"
#include "image_test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>

namespace kiln::image {
namespace {

namespace stdfs = std::filesystem;

struct Member {
  mode_t type = 0;
  mode_t perm = 0;
  int64_t uid = -1, gid = -1, mtime = -1;
  std::string data;
  std::string link;
  unsigned major = 0, minor = 0;
};

struct Archive {
  std::vector<std::string> order;
  std::map<std::string, Member> members;
};

// Read a cpio back with libarchive, independently of the writer.
Archive read_back(const stdfs::path& file) {
  Archive out;
  archive* a = archive_read_new();
  archive_read_support_format_cpio(a);
  EXPECT_EQ(archive_read_open_filename(a, file.c_str(), 1 << 16), ARCHIVE_OK) << archive_error_string(a);
  archive_entry* e = nullptr;
  while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
    Member m;
    m.type = archive_entry_filetype(e);
    m.perm = archive_entry_perm(e);
    m.uid = archive_entry_uid(e);
    m.gid = archive_entry_gid(e);
    m.mtime = archive_entry_mtime(e);
    if (const char* l = archive_entry_symlink(e)) m.link = l;
    m.major = archive_entry_rdevmajor(e);
    m.minor = archive_entry_rdevminor(e);
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) m.data.append(buf, static_cast<size_t>(n));
    std::string name = archive_entry_pathname(e);
    out.order.push_back(name);
    out.members[name] = std::move(m);
  }
  archive_read_free(a);
  return out;
}

std::string slurp(const stdfs::path& p) {
  auto r = fs::read_file(p, 1ull << 30);
  return r ? *r : std::string();
}

bool static_busybox_available() {
  auto r = elf_interpreter("/bin/busybox");
  return r && !r->has_value();
}

class InitramfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path();
    testing::write(root_ / "kiln-agent", testing::make_elf(std::nullopt, 100000));
    modules_ = root_ / "lib/modules/6.1.0-test";
    testing::write(modules_ / "modules.dep",
                   "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n"
                   "kernel/drivers/virtio/virtio_ring.ko:\n"
                   "kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko "
                   "kernel/drivers/virtio/virtio_ring.ko\n"
                   "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko "
                   "kernel/drivers/virtio/virtio_ring.ko\n"
                   "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko "
                   "kernel/drivers/virtio/virtio_ring.ko\n"
                   "kernel/drivers/net/dummy.ko:\n");
    for (const char* m : {"virtio/virtio.ko", "virtio/virtio_ring.ko", "virtio/virtio_mmio.ko",
                          "char/virtio_console.ko", "block/virtio_blk.ko", "net/dummy.ko"})
      testing::write(modules_ / "kernel/drivers" / m, std::string("module ") + m);
    auto order = guest_module_load_order(modules_);
    ASSERT_TRUE(order) << order.error().message;
    inputs_.agent = root_ / "kiln-agent";
    inputs_.kernel = GuestKernel{root_ / "vmlinuz", modules_, "6.1.0-test"};
    inputs_.modules = *order;
    inputs_.cache_dir = root_ / "cache";
  }

  Initramfs build(const InitramfsInputs& in) {
    auto r = build_initramfs(in);
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : Initramfs{};
  }

  fs::TempDir tmp_ = testing::temp_dir();
  stdfs::path root_, modules_;
  InitramfsInputs inputs_;
};

TEST_F(InitramfsTest, Contents) {
  auto out = build(inputs_);
  EXPECT_EQ(out.file, inputs_.cache_dir / "initramfs" / (out.digest + ".cpio"));
  auto ar = read_back(out.file);
  auto& m = ar.members;

  for (const char* d : {"proc", "sys", "dev", "run", "etc", "root", "mnt", "kiln", "usr/bin", "usr/sbin", "usr/lib",
                        "usr/lib64"}) {
    ASSERT_EQ(m.count(d), 1u) << d;
    EXPECT_EQ(m[d].type, AE_IFDIR) << d;
    EXPECT_EQ(m[d].perm, 0755u) << d;
  }
  EXPECT_EQ(m["tmp"].perm, 01777u);
  for (const char* l : {"bin", "sbin", "lib", "lib64"}) {
    EXPECT_EQ(m[l].type, AE_IFLNK) << l;
    EXPECT_EQ(m[l].link, std::string("usr/") + l);
  }
  EXPECT_EQ(m["dev/console"].type, AE_IFCHR);
  EXPECT_EQ(m["dev/console"].perm, 0600u);
  EXPECT_EQ(m["dev/console"].major, 5u);
  EXPECT_EQ(m["dev/console"].minor, 1u);
  EXPECT_EQ(m["init"].type, AE_IFREG);
  EXPECT_EQ(m["init"].perm, 0755u);
  EXPECT_EQ(m["init"].data, slurp(inputs_.agent));
  EXPECT_EQ(m["etc/passwd"].data, "root:x:0:0:root:/root:/bin/sh\n");
  EXPECT_EQ(m["etc/group"].data, "root:x:0:\n");
  EXPECT_EQ(m["etc/hostname"].data, "kiln\n");
  EXPECT_EQ(m["kiln/modules"].data,
            "/usr/lib/modules/6.1.0-test/kernel/drivers/virtio/virtio_ring.ko\n"
            "/usr/lib/modules/6.1.0-test/kernel/drivers/virtio/virtio.ko\n"
            "/usr/lib/modules/6.1.0-test/kernel/drivers/virtio/virtio_mmio.ko\n"
            "/usr/lib/modules/6.1.0-test/kernel/drivers/char/virtio_console.ko\n"
            "/usr/lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko\n"
            "/usr/lib/modules/6.1.0-test/kernel/drivers/net/dummy.ko\n");
  EXPECT_EQ(m["usr/lib/modules/6.1.0-test/kernel/drivers/char/virtio_console.ko"].data,
            "module char/virtio_console.ko");
  EXPECT_EQ(m["usr/lib/modules/6.1.0-test/kernel/drivers"].type, AE_IFDIR);
  EXPECT_EQ(m.count("usr/bin/busybox"), 0u);

  // Deterministic metadata, and every member's parent directory comes before it.
  std::set<std::string> seen;
  for (const auto& name : ar.order) {
    EXPECT_EQ(m[name].uid, 0) << name;
    EXPECT_EQ(m[name].gid, 0) << name;
    EXPECT_EQ(m[name].mtime, 0) << name;
    if (auto slash = name.rfind('/'); slash != std::string::npos) {
      EXPECT_TRUE(seen.count(name.substr(0, slash))) << name << " precedes its directory";
    }
    seen.insert(name);
  }
  EXPECT_TRUE(std::is_sorted(ar.order.begin(), ar.order.end()));
}

TEST_F(InitramfsTest, DeterministicAndCached) {
  auto first = build(inputs_);
  struct stat st1 {};
  ASSERT_EQ(::stat(first.file.c_str(), &st1), 0);

  auto other = inputs_;
  other.cache_dir = root_ / "cache2";
  auto second = build(other);
  EXPECT_EQ(first.digest, second.digest);
  EXPECT_EQ(slurp(first.file), slurp(second.file));

  // A hit returns the same file without rewriting it.
  auto hit = build(inputs_);
  EXPECT_EQ(hit.file, first.file);
  struct stat st2 {};
  ASSERT_EQ(::stat(hit.file.c_str(), &st2), 0);
  EXPECT_EQ(st1.st_ino, st2.st_ino);
  EXPECT_EQ(st1.st_mtim.tv_nsec, st2.st_mtim.tv_nsec);

  // No temp files left behind.
  size_t files = 0;
  for (auto& e : stdfs::directory_iterator(inputs_.cache_dir / "initramfs")) ++files, (void)e;
  EXPECT_EQ(files, 1u);
}

TEST_F(InitramfsTest, EveryInputChangesTheDigest) {
  auto base = build(inputs_).digest;
  testing::write(modules_ / "kernel/drivers/virtio/virtio.ko", "changed");
  auto changed_module = build(inputs_).digest;
  EXPECT_NE(changed_module, base);
  auto v = inputs_;
  v.kernel.version = "6.1.0-other";
  EXPECT_NE(build(v).digest, changed_module);
  auto fewer = inputs_;
  fewer.modules.pop_back();
  EXPECT_NE(build(fewer).digest, changed_module);
  testing::write(inputs_.agent, testing::make_elf(std::nullopt, 5));
  EXPECT_NE(build(inputs_).digest, changed_module);
}

TEST_F(InitramfsTest, StaticBusyboxWithAppletLinks) {
  if (!static_busybox_available()) GTEST_SKIP() << "no static /bin/busybox (apt-get install busybox-static)";
  auto in = inputs_;
  in.busybox = "/bin/busybox";
  auto out = build(in);
  EXPECT_NE(out.digest, build(inputs_).digest);
  auto m = read_back(out.file).members;
  EXPECT_EQ(m["usr/bin/busybox"].perm, 0755u);
  EXPECT_EQ(m["usr/bin/busybox"].data, slurp("/bin/busybox"));
  for (const char* applet : {"sh", "ls", "cat", "insmod"}) {
    EXPECT_EQ(m[std::string("usr/bin/") + applet].type, AE_IFLNK) << applet;
    EXPECT_EQ(m[std::string("usr/bin/") + applet].link, "busybox") << applet;
  }
}

TEST_F(InitramfsTest, DynamicBusyboxIsLeftOut) {
  auto in = inputs_;
  in.busybox = "/bin/sh";  // dynamically linked on every Debian
  auto out = build(in);
  EXPECT_EQ(out.digest, build(inputs_).digest);
  EXPECT_EQ(read_back(out.file).members.count("usr/bin/busybox"), 0u);
}

TEST_F(InitramfsTest, BadInputsAreErrors) {
  auto in = inputs_;
  in.agent = "/bin/sh";
  auto dynamic = build_initramfs(in);
  ASSERT_FALSE(dynamic);
  EXPECT_NE(dynamic.error().message.find("dynamically linked"), std::string::npos) << dynamic.error().message;

  testing::write(root_ / "script", "#!/bin/sh\n");
  in.agent = root_ / "script";
  EXPECT_FALSE(build_initramfs(in));
  in.agent = root_ / "absent";
  EXPECT_FALSE(build_initramfs(in));

  in = inputs_;
  in.modules.push_back("../../../etc/shadow.ko");
  EXPECT_FALSE(build_initramfs(in));
  in = inputs_;
  in.modules.push_back("kernel/drivers/missing.ko");
  auto missing = build_initramfs(in);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("missing.ko"), std::string::npos) << missing.error().message;
  in = inputs_;
  in.kernel.version = "../x";
  EXPECT_FALSE(build_initramfs(in));
}

}  // namespace
}  // namespace kiln::image
