// On a filesystem with reflinks (XFS, made in a file here and loop-mounted), a layer's
// flat file shares the golden's extents and its memory.diff's, so a layer costs its diff
// on disk instead of a second copy of the guest's RAM; it still reads as the layer's RAM.
#include "common/subprocess.h"
#include "common/unique_fd.h"
#include "layer_test_util.h"
#include "snapshot/layout.h"
#include "snapshot/sparse_io.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <optional>
#include <thread>

using namespace kiln;
using namespace kiln::snapshot;
using namespace kiln::snapshot::testing;

namespace {

// An XFS filesystem (reflinks on: mkfs.xfs's default) in a sparse file under a TmpRoot,
// loop-mounted at dir() for the test's lifetime. why_not() says why this host cannot.
class XfsMount {
 public:
  XfsMount() {
    if (::geteuid() != 0) {
      why_not_ = "needs root (mount -o loop)";
      return;
    }
    const auto image = tmp_ / "xfs.img";
    {
      UniqueFd fd(::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      if (!fd || ::ftruncate(fd.get(), 512ll << 20) != 0) {
        why_not_ = "cannot make the filesystem's image file";
        return;
      }
    }
    auto made = run_captured({"mkfs.xfs", "-q", "-m", "reflink=1", image.string()});
    if (!made || made->exit_code != 0) {
      why_not_ = "mkfs.xfs (xfsprogs) did not run: " + (made ? made->err : made.error().message);
      return;
    }
    dir_ = tmp_ / "mnt";
    stdfs::create_directory(dir_);
    auto mounted = run_captured({"mount", "-o", "loop", image.string(), dir_.string()});
    if (!mounted || mounted->exit_code != 0) {
      why_not_ = "mount -o loop failed (no loop devices here?): " + (mounted ? mounted->err : mounted.error().message);
      return;
    }
    mounted_ = true;
  }
  ~XfsMount() {
    if (!mounted_) return;
    // publish_layer may still be deleting a discarded image in the background.
    for (int i = 0; i < 100 && ::umount(dir_.c_str()) != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::umount2(dir_.c_str(), MNT_DETACH);
  }
  XfsMount(const XfsMount&) = delete;
  XfsMount& operator=(const XfsMount&) = delete;

  const std::string& why_not() const { return why_not_; }
  const stdfs::path& dir() const { return dir_; }

 private:
  TmpRoot tmp_;
  stdfs::path dir_;
  std::string why_not_;
  bool mounted_ = false;
};

uint64_t owned(const stdfs::path& file) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd) << file;
  auto bytes = sparse::owned_bytes(fd.get(), file);
  EXPECT_TRUE(bytes.ok()) << bytes.error().message;
  return bytes.ok() ? *bytes : 0;
}

Image full_golden() {
  Image img;
  for (uint64_t p = 0; p < kMemBytes / kPage; ++p) img.fill_page(p, static_cast<char>('a' + p % 26));
  return img;
}

constexpr uint64_t kChanged = 64;  // pages a layer writes: 256 KiB of a 16 MiB guest

// A store on XFS holding a golden whose 16 MiB of RAM are all data.
class LayerReflink : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!xfs_.why_not().empty()) GTEST_SKIP() << xfs_.why_not();
    store_.emplace(xfs_.dir() / "snapshots");
    golden_ = publish_golden(*store_, sample_key(), base_);
  }
  XfsMount xfs_;
  std::optional<Store> store_;
  const Image base_ = full_golden();
  Snapshot golden_;
};

TEST_F(LayerReflink, AFlatFileSharesTheGoldensExtentsAndOwnsAboutItsDiff) {
  Store& store = *store_;
  const Image& base = base_;
  const Snapshot& golden = golden_;
  Image mine = base;
  for (uint64_t p = 0; p < kChanged; ++p) mine.fill_page(1000 + p * 3, 'L');
  mine.zero_page(2000);  // zeroed in the layer: a hole in its flat file
  Snapshot layer = publish_layer(store, golden, layer_key(golden, "x"), mine, /*keep_flat=*/true);

  auto files = store.restore_files(layer, /*maps_overlays=*/false);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_EQ(files->memory, layer.dir / layout::kFlatFile);
  EXPECT_TRUE(read_text(files->memory) == mine.bytes) << "the flat file does not read as the layer's RAM";
  EXPECT_TRUE(read_text(golden.dir / layout::kMemoryFile) == base.bytes) << "writing the layer changed the golden";

  // Its unchanged pages are the golden's extents and its changed ones memory.diff's: the
  // layer costs its diff on disk, once.
  const uint64_t flat_owned = owned(files->memory);
  EXPECT_LE(flat_owned, 64u << 10) << "the flat file owns " << flat_owned
                                   << " bytes: a copy of the RAM or of the layer's pages, not reflinks";
  EXPECT_LE(owned(layer.dir / layout::kDiffFile), 64u << 10) << "memory.diff shares no extent with the flat file";
}

// gc evicts flat files first; the restore that needs one again clones it the same way.
TEST_F(LayerReflink, AnEvictedFlatFileIsRebuiltSharingTheGoldensExtents) {
  Store& store = *store_;
  const Snapshot& golden = golden_;
  Image a_ram = base_;
  for (uint64_t p = 0; p < kChanged; ++p) a_ram.fill_page(100 + p, 'A');
  Snapshot a = publish_layer(store, golden, layer_key(golden, "a", "fixture"), a_ram, true);
  Image b_ram = a_ram;
  for (uint64_t p = 0; p < kChanged; ++p) b_ram.fill_page(3000 + p, 'B');
  Snapshot b = publish_layer(store, a, layer_key(a, "b"), b_ram, true);

  // As gc would (derived data): the next restore builds b's again.
  stdfs::remove(b.dir / layout::kFlatFile);
  auto files = store.restore_files(b, false);
  ASSERT_TRUE(files.ok()) << files.error().message;
  EXPECT_TRUE(read_text(files->memory) == b_ram.bytes) << "the rebuilt flat file does not read as the layer's RAM";
  // Rebuilt from the golden and both layers' pages, all of them cloned: it owns nothing.
  EXPECT_LE(owned(files->memory), 64u << 10);
}

TEST(LayerReflinkAbsent, WithoutReflinksTheFlatFileIsTheEnginesImage) {
  TmpRoot tmp;  // /tmp: ext4 or tmpfs here, neither with reflinks
  {
    UniqueFd a(::open((tmp / "a").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    UniqueFd b(::open((tmp / "b").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    auto cloned = sparse::clone_file(a.get(), b.get(), tmp / "a");
    ASSERT_TRUE(cloned.ok()) << cloned.error().message;
    if (*cloned) GTEST_SKIP() << "/tmp has reflinks here: this test is about a filesystem without them";
  }
  Store store(tmp / "snapshots");
  const Image base = full_golden();
  Snapshot golden = publish_golden(store, sample_key(), base);
  Image mine = base;
  mine.fill_page(7, 'L');
  Snapshot layer = publish_layer(store, golden, layer_key(golden, "x"), mine, true);
  const auto flat = layer.dir / layout::kFlatFile;
  EXPECT_TRUE(read_text(flat) == mine.bytes);
  EXPECT_GE(owned(flat), kMemBytes - kPage) << "a filesystem without reflinks stores the whole image";
}

}  // namespace
