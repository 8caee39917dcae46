// write_rootfs_disk end to end: layer tarballs made here, the disk written by tar2sqfs,
// read back by sqfs2tar.
#include "image/rootfs/rootfs.h"

#include "rootfs_test_util.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>

namespace kiln::rootfs {
namespace {

namespace stdfs = std::filesystem;
using namespace testing;  // NOLINT: the test helpers

const std::string kCapability("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);

class RootfsDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-rootfs-test-");
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_.emplace(std::move(d).value());
    disk_ = dir_->path() / "image.sqfs";
  }
  Result<RootfsStats> write(const std::vector<image::LayerBlob>& layers, RootfsOptions o = {}) {
    o.progress = [this](const std::string& note) { notes_.push_back(note); };
    return write_rootfs_disk(layers, disk_, o);
  }
  std::optional<fs::TempDir> dir_;
  stdfs::path disk_;
  std::vector<std::string> notes_;
};

TEST_F(RootfsDisk, KeepsContentsOwnersModesSymlinksHardLinksAndXattrs) {
  Member capable = file("usr/bin/ping", "ping!", 0, 0755);
  capable.xattrs = {{"security.capability", kCapability}, {"user.note", "hi"}};
  auto layer = write_layer(dir_->path(), "base",
                           {dir("etc"), dir("var/lib/postgresql", 70, 0700), file("var/lib/postgresql/PG_VERSION", "15\n", 70, 0600),
                            dir("usr"), dir("usr/bin"), file("usr/bin/su", "su", 0, 04755), capable,
                            symlink("usr/bin/sh", "/bin/dash"), symlink("etc/outside", "../../../etc/passwd"),
                            hardlink("usr/bin/ping6", "usr/bin/ping")},
                           Compression::gzip);
  auto stats = write({layer});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->files, 3u);
  EXPECT_EQ(stats->dirs, 4u);  // var and var/lib have no member: tar2sqfs makes them root:root 0755
  EXPECT_EQ(stats->symlinks, 2u);
  EXPECT_EQ(stats->hardlinks, 1u);
  EXPECT_EQ(stats->bytes_in, 3u + 2u + 5u);
  EXPECT_EQ(stats->disk_bytes, stdfs::file_size(disk_));

  auto seen = read_disk(disk_);
  ASSERT_TRUE(seen.count("var/lib/postgresql/PG_VERSION"));
  const Seen& pg = seen["var/lib/postgresql/PG_VERSION"];
  EXPECT_EQ(pg.data, "15\n");
  EXPECT_EQ(pg.uid, 70);  // not the test's uid, not root
  EXPECT_EQ(pg.gid, 70);
  EXPECT_EQ(pg.perm, 0600u);
  EXPECT_EQ(seen["var/lib/postgresql"].uid, 70);
  EXPECT_EQ(seen["var/lib/postgresql"].perm, 0700u);
  EXPECT_EQ(seen["var/lib"].uid, 0);
  EXPECT_EQ(seen["var/lib"].perm, 0755u);
  EXPECT_EQ(seen["usr/bin/su"].perm, 04755u);
  EXPECT_EQ(seen["usr/bin/sh"].type, static_cast<mode_t>(AE_IFLNK));
  EXPECT_EQ(seen["usr/bin/sh"].symlink, "/bin/dash");
  EXPECT_EQ(seen["etc/outside"].symlink, "../../../etc/passwd");  // stored as-is: the guest reads it inside its root
  EXPECT_EQ(seen["usr/bin/ping"].xattrs["security.capability"], kCapability);
  EXPECT_EQ(seen["usr/bin/ping"].xattrs["user.note"], "hi");
  // One inode, two names: sqfs2tar writes the second as a hard link to the first.
  EXPECT_EQ(seen["usr/bin/ping6"].hardlink, "usr/bin/ping");
}

TEST_F(RootfsDisk, ZstdLayersAndHardLinkToALowerLayer) {
  auto base = write_layer(dir_->path(), "base", {dir("lib"), file("lib/libc.so", "libc bytes", 0, 0755)}, Compression::zstd);
  auto top = write_layer(dir_->path(), "top", {dir("usr"), hardlink("usr/libc.so", "lib/libc.so")}, Compression::zstd);
  auto stats = write({base, top});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->hardlinks, 1u);
  auto seen = read_disk(disk_);
  EXPECT_EQ(seen["lib/libc.so"].data, "libc bytes");
  EXPECT_EQ(seen["usr/libc.so"].hardlink, "lib/libc.so");
}

TEST_F(RootfsDisk, HardLinkKeepsTheDataWhenItsFirstNameIsWhitedOut) {
  auto base = write_layer(dir_->path(), "base", {dir("a"), file("a/orig", "shared inode", 70, 0640)});
  auto mid = write_layer(dir_->path(), "mid", {dir("b"), hardlink("b/link", "a/orig")});
  auto top = write_layer(dir_->path(), "top", {file("a/.wh.orig", "")});
  auto stats = write({base, mid, top});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  auto seen = read_disk(disk_);
  EXPECT_FALSE(seen.count("a/orig"));
  ASSERT_TRUE(seen.count("b/link"));
  EXPECT_EQ(seen["b/link"].data, "shared inode");
  EXPECT_EQ(seen["b/link"].uid, 70);
  EXPECT_EQ(seen["b/link"].perm, 0640u);
  EXPECT_EQ(seen["b/link"].hardlink, "");
  EXPECT_EQ(stats->hardlinks, 0u);
}

TEST_F(RootfsDisk, WhiteoutsAndOpaqueDirectories) {
  auto base = write_layer(dir_->path(), "base",
                          {dir("etc"), file("etc/keep", "k"), file("etc/gone", "g"), dir("etc/gone.d"),
                           file("etc/gone.d/x", "x"), dir("opt", 0, 0755), file("opt/old1", "1"), dir("opt/sub"),
                           file("opt/sub/old2", "2")});
  auto top = write_layer(dir_->path(), "top",
                         {file("etc/.wh.gone", ""), file("etc/.wh.gone.d", ""), file("etc/.wh.never-existed", ""),
                          file(".wh.nothing-here", ""), dir("opt", 70, 0750), file("opt/.wh..wh..opq", ""),
                          file("opt/new", "n"), file("etc/gone", "back in this layer")},
                         Compression::zstd);
  auto stats = write({base, top});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  auto seen = read_disk(disk_);
  EXPECT_EQ(seen["etc/keep"].data, "k");
  // A whiteout hides the lower layers only: the same layer's etc/gone stays.
  EXPECT_EQ(seen["etc/gone"].data, "back in this layer");
  EXPECT_FALSE(seen.count("etc/gone.d"));
  EXPECT_FALSE(seen.count("etc/gone.d/x"));
  EXPECT_FALSE(seen.count("opt/old1"));
  EXPECT_FALSE(seen.count("opt/sub"));
  EXPECT_FALSE(seen.count("opt/sub/old2"));
  EXPECT_EQ(seen["opt/new"].data, "n");
  EXPECT_EQ(seen["opt"].uid, 70);  // the upper directory's attributes
  EXPECT_EQ(seen["opt"].perm, 0750u);
  for (const auto& [path, s] : seen) EXPECT_EQ(path.find(".wh."), std::string::npos) << path;
}

TEST_F(RootfsDisk, UpperDirectoryAttributesOverLowerChildrenAndFileOverDirectory) {
  auto base = write_layer(dir_->path(), "base", {dir("srv"), file("srv/a", "a"), dir("data"), file("data/x", "x")});
  auto top = write_layer(dir_->path(), "top", {dir("srv", 70, 0700), file("data", "now a file")});
  auto stats = write({base, top});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  auto seen = read_disk(disk_);
  EXPECT_EQ(seen["srv"].uid, 70);
  EXPECT_EQ(seen["srv"].perm, 0700u);
  EXPECT_EQ(seen["srv/a"].data, "a");
  EXPECT_EQ(seen["data"].type, static_cast<mode_t>(AE_IFREG));
  EXPECT_EQ(seen["data"].data, "now a file");
  EXPECT_FALSE(seen.count("data/x"));
}

TEST_F(RootfsDisk, AbsoluteAndDotSlashPathsLandInsideTheRoot) {
  auto layer = write_layer(dir_->path(), "abs", {file("/etc/kiln-abs-test", "abs"), file("./etc/dot", "dot")});
  auto stats = write({layer});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  auto seen = read_disk(disk_);
  EXPECT_EQ(seen["etc/kiln-abs-test"].data, "abs");
  EXPECT_EQ(seen["etc/dot"].data, "dot");
  EXPECT_FALSE(stdfs::exists("/etc/kiln-abs-test"));
}

TEST_F(RootfsDisk, DeviceNodesAndFifosAreSkippedAndCounted) {
  Member null{"dev/null", Type::chardev, {}, {}, 0, 0, 0666, {}};
  Member fifo{"run/initctl", Type::fifo, {}, {}, 0, 0, 0600, {}};
  auto layer = write_layer(dir_->path(), "dev", {dir("dev"), null, dir("run"), fifo, file("etc/hostname", "h")});
  auto stats = write({layer});
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->skipped_devices, 2u);
  auto seen = read_disk(disk_);
  EXPECT_TRUE(seen.count("dev"));
  EXPECT_FALSE(seen.count("dev/null"));
  EXPECT_FALSE(seen.count("run/initctl"));
  EXPECT_EQ(std::count_if(notes_.begin(), notes_.end(), [](const std::string& n) { return n.starts_with("skipped /"); }), 2);
}

// Each refusal: the error names the layer and the member, and the directory holds only
// the layer blobs (no disk, no temp file).
class RootfsRefusal : public RootfsDisk {
 protected:
  void expect_refused(const std::vector<Member>& members, const std::string& member_in_error) {
    auto layer = write_layer(dir_->path(), "bad", members);
    auto before = names_in(dir_->path());
    auto stats = write({layer});
    ASSERT_FALSE(stats.ok());
    EXPECT_NE(stats.error().message.find("layer sha256:test-bad"), std::string::npos) << stats.error().message;
    EXPECT_NE(stats.error().message.find(member_in_error), std::string::npos) << stats.error().message;
    EXPECT_EQ(names_in(dir_->path()), before);
  }
};

TEST_F(RootfsRefusal, DotDotPath) { expect_refused({file("ok", "1"), file("../evil", "x")}, "../evil"); }

TEST_F(RootfsRefusal, DotDotInsideAbsolutePath) { expect_refused({file("/abs/../../evil", "x")}, "/abs/../../evil"); }

TEST_F(RootfsRefusal, HardLinkOutsideTheRoot) {
  expect_refused({dir("etc"), hardlink("etc/passwd", "../../etc/passwd")}, "../../etc/passwd");
}

TEST_F(RootfsRefusal, HardLinkToNothing) { expect_refused({hardlink("a", "missing")}, "missing"); }

TEST_F(RootfsRefusal, MemberBelowASymlink) {
  expect_refused({symlink("lib", "usr/lib"), file("lib/x", "x")}, "lib/x");
}

TEST_F(RootfsRefusal, WhiteoutOfDotDot) { expect_refused({file("a/.wh...", "")}, ".wh..."); }

TEST_F(RootfsDisk, OverBudgetIsRefusedBeforeWriting) {
  auto layer = write_layer(dir_->path(), "big", {file("big", std::string(5000, 'x')), file("small", "s")});
  auto before = names_in(dir_->path());
  RootfsOptions o;
  o.max_bytes = 4096;
  auto stats = write({layer}, o);
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("budget"), std::string::npos) << stats.error().message;
  EXPECT_EQ(names_in(dir_->path()), before);
  o.max_bytes = 5001;  // exactly the file data: fits
  EXPECT_TRUE(write({layer}, o).ok());
}

TEST_F(RootfsDisk, DamagedLayerIsAnErrorNamingItAndLeavesNothing) {
  auto layer = write_layer(dir_->path(), "cut", {file("f", std::string(100000, 'y'))});
  stdfs::resize_file(layer.path, layer.size / 2);
  auto before = names_in(dir_->path());
  auto stats = write({layer});
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("sha256:test-cut"), std::string::npos) << stats.error().message;
  EXPECT_EQ(names_in(dir_->path()), before);
}

// tar2sqfs failing (here: a file size limit it inherits, so its writes fail with EFBIG)
// is an error carrying tar2sqfs's own message, and leaves no file behind.
TEST_F(RootfsDisk, Tar2sqfsFailureIsReportedWithItsMessageAndLeavesNothing) {
  std::string noise;
  for (int i = 0; i < 200000; ++i) noise += std::to_string(i * 7919u % 104729u);
  auto layer = write_layer(dir_->path(), "l", {file("noise", noise)});
  auto before = names_in(dir_->path());
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // inherited: tar2sqfs gets EFBIG, not a signal
  rlimit small = old;
  small.rlim_cur = 64 * 1024;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto stats = write({layer});
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("tar2sqfs exited with code"), std::string::npos) << stats.error().message;
  EXPECT_NE(stats.error().message.find("I/O error"), std::string::npos) << stats.error().message;  // tar2sqfs's words
  EXPECT_EQ(names_in(dir_->path()), before);
}

TEST_F(RootfsDisk, UnknownCompressorIsRefused) {
  auto layer = write_layer(dir_->path(), "l", {file("f", "x")});
  RootfsOptions o;
  o.compressor = "lzo";
  auto stats = write({layer}, o);
  ASSERT_FALSE(stats.ok());
  EXPECT_NE(stats.error().message.find("lzo"), std::string::npos);
  EXPECT_FALSE(stdfs::exists(disk_));
}

TEST_F(RootfsDisk, ReplacesAnExistingDiskOnlyWhenComplete) {
  auto good = write_layer(dir_->path(), "good", {file("v", "1")});
  ASSERT_TRUE(write({good}).ok());
  auto first = stdfs::file_size(disk_);
  auto bad = write_layer(dir_->path(), "bad", {file("../x", "1")});
  ASSERT_FALSE(write({good, bad}).ok());
  EXPECT_EQ(stdfs::file_size(disk_), first);
  EXPECT_EQ(read_disk(disk_)["v"].data, "1");
}

}  // namespace
}  // namespace kiln::rootfs
