#include "common/digest.h"
#include "common/fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

using namespace kiln;

namespace {

class TempTree : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-common-test-");
    ASSERT_TRUE(d.ok());
    dir_ = std::make_unique<fs::TempDir>(std::move(*d));
  }
  std::filesystem::path path(const char* name) const { return dir_->path() / name; }
  // A sparse file: `data` written at `offset`, total `size` bytes.
  void sparse(const std::filesystem::path& p, off_t offset, const std::string& data, off_t size) {
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), offset), static_cast<ssize_t>(data.size()));
    ASSERT_EQ(::ftruncate(fd, size), 0);
    ::close(fd);
  }
  std::unique_ptr<fs::TempDir> dir_;
};

}  // namespace

TEST_F(TempTree, FileDigestIsStableAndContentSensitive) {
  std::ofstream(path("a")) << "hello";
  std::ofstream(path("b")) << "hello";
  std::ofstream(path("c")) << "hellO";
  EXPECT_EQ(*digest_file(path("a")), *digest_file(path("b")));
  EXPECT_NE(*digest_file(path("a")), *digest_file(path("c")));
  EXPECT_EQ(*digest_file(path("a")), digest_bytes("hello"));
  EXPECT_EQ(digest_file(path("a"))->size(), 32u);
}

TEST_F(TempTree, SparseDigestSeesMovedDataAndSize) {
  sparse(path("x"), 1 << 20, std::string(4096, 'k'), 8 << 20);
  sparse(path("y"), 1 << 20, std::string(4096, 'k'), 8 << 20);
  sparse(path("moved"), 2 << 20, std::string(4096, 'k'), 8 << 20);
  sparse(path("longer"), 1 << 20, std::string(4096, 'k'), 9 << 20);
  EXPECT_EQ(*digest_sparse_file(path("x")), *digest_sparse_file(path("y")));
  EXPECT_NE(*digest_sparse_file(path("x")), *digest_sparse_file(path("moved")));
  EXPECT_NE(*digest_sparse_file(path("x")), *digest_sparse_file(path("longer")));
}

// tmpfs allocates hole pages that a private mapping merely reads: same bytes,
// other extents. The digest must not change (a base would look "changed").
TEST_F(TempTree, SparseDigestIgnoresHowZerosAreStored) {
  sparse(path("holes"), 1 << 20, std::string(4096, 'k'), 8 << 20);
  sparse(path("zeros"), 1 << 20, std::string(4096, 'k'), 8 << 20);
  {
    std::ofstream zeros(path("zeros"), std::ios::in | std::ios::out | std::ios::binary);
    zeros.seekp(3 << 20);
    zeros << std::string(1 << 20, '\0');  // allocated, but zero
    zeros.seekp((1 << 20) + 4096);
    zeros << std::string(4096, '\0');  // zero page right after the data
  }
  EXPECT_EQ(*digest_sparse_file(path("holes")), *digest_sparse_file(path("zeros")));
  sparse(path("one_bit"), 1 << 20, std::string(4096, 'k'), 8 << 20);
  {
    std::ofstream f(path("one_bit"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5 << 20);
    f << '\1';
  }
  EXPECT_NE(*digest_sparse_file(path("holes")), *digest_sparse_file(path("one_bit")));
}

TEST_F(TempTree, MissingFilesAreErrorsNamingThePath) {
  auto d = digest_file(path("nope"));
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().message.find("nope"), std::string::npos);
  EXPECT_FALSE(digest_sparse_file(path("nope")).ok());
}

TEST_F(TempTree, StreamedDigestIsTheDigestOfTheWholeFile) {
  const std::string text = std::string(300000, 'x') + "tail";
  std::ofstream(path("f")) << text;
  DigestStream stream;
  for (size_t at = 0; at < text.size(); at += 65536) stream.update(std::string_view(text).substr(at, 65536));
  EXPECT_EQ(stream.hex(), *digest_file(path("f")));
  EXPECT_EQ(stream.hex(), digest_bytes(text));
  EXPECT_EQ(DigestStream().hex(), digest_bytes(""));
}

TEST_F(TempTree, ReadFileRefusesMoreThanItsCap) {
  std::ofstream(path("big")) << std::string(1000, 'x');
  EXPECT_TRUE(fs::read_file(path("big"), 1000).ok());
  auto r = fs::read_file(path("big"), 999);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("larger than"), std::string::npos);
  EXPECT_EQ(fs::read_file_prefix(path("big"), 10)->size(), 10u);
}

TEST_F(TempTree, AtomicWriteReplacesWholeFiles) {
  ASSERT_TRUE(fs::write_file_atomic(path("f"), "one").ok());
  ASSERT_TRUE(fs::write_file_atomic(path("f"), "two").ok());
  EXPECT_EQ(*fs::read_file(path("f"), 100), "two");
  size_t entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir_->path())) ++entries;
  EXPECT_EQ(entries, 1u) << "a temp file was left behind";
}

TEST(TempDir, IsRemovedWithItsContents) {
  std::filesystem::path kept;
  {
    auto d = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-tempdir-test-");
    ASSERT_TRUE(d.ok());
    kept = d->path();
    std::ofstream(kept / "file") << "x";
  }
  EXPECT_FALSE(std::filesystem::exists(kept));
}
