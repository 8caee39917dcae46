// copy_sparse_file: the layer's RAM copy must equal its parent byte for byte and keep
// the parent's holes (a 256 MiB guest with 30 MiB touched must not cost 256 MiB).
#include "vmm/qemu/sparse_copy.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/unique_fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kiln::vmm::qemu {
namespace {

namespace stdfs = std::filesystem;

uint64_t allocated(const stdfs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

class SparseCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = fs::TempDir::create(stdfs::temp_directory_path(), "kiln-sparse-copy-");
    ASSERT_TRUE(dir.ok());
    dir_.emplace(std::move(*dir));
  }
  stdfs::path path(const char* name) const { return dir_->path() / name; }
  std::optional<fs::TempDir> dir_;
};

TEST_F(SparseCopy, CopiesDataAndKeepsHoles) {
  constexpr off_t kSize = 64 << 20;
  const auto from = path("parent.ram");
  {
    UniqueFd fd(::open(from.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    ASSERT_TRUE(fd);
    ASSERT_EQ(::ftruncate(fd.get(), kSize), 0);
    // Two data extents, one at the very end: holes before, between and after.
    std::string page(4096 * 3, 'a');
    ASSERT_EQ(::pwrite(fd.get(), page.data(), page.size(), 1 << 20), static_cast<ssize_t>(page.size()));
    std::string tail(4096, 'z');
    ASSERT_EQ(::pwrite(fd.get(), tail.data(), tail.size(), kSize - 4096), 4096);
  }
  const auto to = path("layer.ram");
  ASSERT_TRUE(fs::write_file_atomic(to, std::string(1 << 20, 'x')));  // replaced, not merged
  auto stats = copy_sparse_file(from, to);
  ASSERT_TRUE(stats.ok()) << stats.error().message;
  EXPECT_EQ(stats->size, static_cast<uint64_t>(kSize));
  EXPECT_GE(stats->data_bytes, 4u * 4096);
  EXPECT_EQ(stdfs::file_size(to), static_cast<uint64_t>(kSize));
  EXPECT_EQ(*digest_file(from), *digest_file(to));
  EXPECT_LT(allocated(to), uint64_t{4} << 20) << "the copy filled the parent's holes";
}

TEST_F(SparseCopy, EmptyAndAllHoleFilesCopy) {
  const auto empty = path("empty");
  ASSERT_TRUE(fs::write_file_atomic(empty, ""));
  auto a = copy_sparse_file(empty, path("empty.copy"));
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(stdfs::file_size(path("empty.copy")), 0u);

  const auto holes = path("holes");
  {
    UniqueFd fd(::open(holes.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    ASSERT_EQ(::ftruncate(fd.get(), 8 << 20), 0);
  }
  auto b = copy_sparse_file(holes, path("holes.copy"));
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->data_bytes, 0u);
  EXPECT_EQ(stdfs::file_size(path("holes.copy")), uint64_t{8} << 20);
}

TEST_F(SparseCopy, MissingSourceOrUnwritableTargetIsAnError) {
  auto missing = copy_sparse_file(path("nope"), path("out"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos);
  ASSERT_TRUE(fs::write_file_atomic(path("src"), "data"));
  auto bad_target = copy_sparse_file(path("src"), path("no-such-dir") / "out");
  ASSERT_FALSE(bad_target.ok());
  EXPECT_NE(bad_target.error().message.find("no-such-dir"), std::string::npos);
  auto dir_source = copy_sparse_file(dir_->path(), path("out2"));
  ASSERT_FALSE(dir_source.ok());
}

}  // namespace
}  // namespace kiln::vmm::qemu
