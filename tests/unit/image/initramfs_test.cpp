#include "image/initramfs.h"

#include "common/digest.h"
#include "common/fs.h"
#include "image/elf_interp.h"
#include "image/module_deps.h"
#include "image_test_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <sstream>

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

// A hosts file's "ADDRESS NAME..." lines: each address with its names.
std::map<std::string, std::set<std::string>> hosts_table(const std::string& text) {
  std::map<std::string, std::set<std::string>> table;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line.substr(0, line.find('#')));
    std::string address, name;
    if (!(words >> address)) continue;
    while (words >> name) table[address].insert(name);
  }
  return table;
}

// An nsswitch.conf's "DATABASE: SOURCES" lines.
std::map<std::string, std::string> nsswitch_table(const std::string& text) {
  std::map<std::string, std::string> table;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::istringstream sources(line.substr(colon + 1));
    std::string all, word;
    while (sources >> word) all += (all.empty() ? "" : " ") + word;
    table[line.substr(0, colon)] = all;
  }
  return table;
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

TEST_F(InitramfsTest, SystemFilesGiveLocalhostUsersAndUtc) {
  auto m = read_back(build(inputs_).file).members;
  for (const char* f : {"etc/hostname", "etc/hosts", "etc/host.conf", "etc/nsswitch.conf", "etc/resolv.conf",
                        "etc/passwd", "etc/group", "usr/share/zoneinfo/Etc/UTC"}) {
    ASSERT_EQ(m.count(f), 1u) << f;
    EXPECT_EQ(m[f].type, AE_IFREG) << f;
    EXPECT_EQ(m[f].perm, 0644u) << f;
  }

  // localhost on both loopback addresses, and the guest's own name on a loopback one.
  auto hosts = hosts_table(m["etc/hosts"].data);
  EXPECT_EQ(hosts["127.0.0.1"].count("localhost"), 1u) << m["etc/hosts"].data;
  EXPECT_EQ(hosts["::1"].count("localhost"), 1u) << m["etc/hosts"].data;
  ASSERT_EQ(m["etc/hostname"].data, "kiln\n");
  std::vector<std::string> kiln_addresses;
  for (const auto& [address, names] : hosts)
    if (names.count("kiln")) kiln_addresses.push_back(address);
  EXPECT_EQ(kiln_addresses, std::vector<std::string>{"127.0.1.1"}) << m["etc/hosts"].data;
  // glibc returns every line naming a host (both localhost lines) only with "multi on".
  EXPECT_EQ(m["etc/host.conf"].data, "multi on\n");

  // Local files only: the guest has no name server (and an empty resolv.conf says so).
  auto nss = nsswitch_table(m["etc/nsswitch.conf"].data);
  for (const char* db : {"passwd", "group", "shadow", "hosts"}) EXPECT_EQ(nss[db], "files") << db;
  EXPECT_EQ(m["etc/resolv.conf"].data, "");

  // root and nobody as glibc's own parsers read them.
  auto dir = testing::temp_dir();
  testing::write(dir.path() / "passwd", m["etc/passwd"].data);
  testing::write(dir.path() / "group", m["etc/group"].data);
  std::map<std::string, std::pair<uid_t, gid_t>> users;
  std::map<std::string, std::string> homes;
  if (FILE* f = std::fopen((dir.path() / "passwd").c_str(), "r")) {
    while (passwd* pw = ::fgetpwent(f)) {
      users[pw->pw_name] = {pw->pw_uid, pw->pw_gid};
      homes[pw->pw_name] = pw->pw_dir;
    }
    std::fclose(f);
  }
  EXPECT_EQ(users["root"], std::make_pair(uid_t{0}, gid_t{0}));
  EXPECT_EQ(homes["root"], "/root");
  EXPECT_EQ(users["nobody"], std::make_pair(uid_t{65534}, gid_t{65534}));
  std::map<std::string, gid_t> groups;
  if (FILE* f = std::fopen((dir.path() / "group").c_str(), "r")) {
    while (group* gr = ::fgetgrent(f)) groups[gr->gr_name] = gr->gr_gid;
    std::fclose(f);
  }
  EXPECT_EQ(groups, (std::map<std::string, gid_t>{{"root", 0}, {"nogroup", 65534}}));

  // /etc/localtime names the zone by its link, and glibc reads the zone file as UTC (a file
  // it cannot parse gives an empty zone name instead).
  EXPECT_EQ(m["etc/localtime"].type, AE_IFLNK);
  EXPECT_EQ(m["etc/localtime"].link, "/usr/share/zoneinfo/Etc/UTC");
  EXPECT_EQ(m["usr/share/zoneinfo/UTC"].link, "Etc/UTC");
  testing::write(dir.path() / "UTC", m["usr/share/zoneinfo/Etc/UTC"].data);
  tm local{};
  std::string zone;
  {
    testing::ScopedEnv tz("TZ", ":" + (dir.path() / "UTC").string());
    ::tzset();
    time_t t = 1'700'000'000;  // 2023-11-14 22:13:20 UTC
    ASSERT_NE(::localtime_r(&t, &local), nullptr);
    zone = local.tm_zone ? local.tm_zone : "";  // glibc's storage: copied before the next tzset
  }
  ::tzset();
  EXPECT_EQ(zone, "UTC");
  EXPECT_EQ(local.tm_gmtoff, 0);
  EXPECT_EQ(local.tm_hour, 22);
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

// Machines share a snapshot only if they build the same initramfs (its digest is a key
// field): the same input bytes elsewhere, later, with other inode numbers, mtimes and
// permission bits on the source files, must give the same archive, byte for byte.
TEST_F(InitramfsTest, ReproducibleFromCopiesElsewhereAndLater) {
  auto first = build(inputs_);
  const std::string bytes = slurp(first.file);
  ASSERT_FALSE(bytes.empty());

  // A second machine: the inputs copied in reverse order (other inodes) under another
  // root, with other mtimes and modes, and its own cache.
  const stdfs::path other_root = root_ / "elsewhere" / "deeper";
  auto other = inputs_;
  other.agent = other_root / "bin" / "kiln-agent";
  other.kernel.modules_dir = other_root / "modules" / other.kernel.version;
  other.cache_dir = other_root / "cache";
  std::vector<std::string> rels = inputs_.modules;
  std::reverse(rels.begin(), rels.end());
  for (const auto& rel : rels) testing::write(other.kernel.modules_dir / rel, slurp(inputs_.kernel.modules_dir / rel));
  testing::write(other.agent, slurp(inputs_.agent));
  const auto later = stdfs::file_time_type::clock::now() + std::chrono::hours(24 * 365);
  for (const auto& p : stdfs::recursive_directory_iterator(other_root)) {
    if (!p.is_regular_file()) continue;
    stdfs::last_write_time(p.path(), later);
    stdfs::permissions(p.path(), stdfs::perms::owner_read | stdfs::perms::owner_write | stdfs::perms::owner_exec);
  }

  auto second = build(other);
  EXPECT_EQ(second.digest, first.digest);
  EXPECT_NE(second.file, first.file);
  EXPECT_TRUE(slurp(second.file) == bytes) << "the archive differs when built from copies of the same inputs";
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
