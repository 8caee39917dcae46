#include "image/bzimage.h"

#include "image_test_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

namespace kiln::image {
namespace {

TEST(BzImage, ReadsReleaseFromSetupHeader) {
  auto img = testing::make_bzimage("6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP Debian 6.1.119-1");
  auto v = bzimage_version_from_bytes(img, "k");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, "6.1.0-28-cloud-amd64");
}

TEST(BzImage, PointerNearTheTopOfItsRange) {
  auto img = testing::make_bzimage("6.9.0-kiln", 0xFF00);
  auto v = bzimage_version_from_bytes(img, "k");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, "6.9.0-kiln");
}

TEST(BzImage, RejectsNonKernels) {
  auto v = bzimage_version_from_bytes(std::string(0x1000, 'A'), "/tmp/notakernel");
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().message.find("/tmp/notakernel is not a Linux bzImage"), std::string::npos) << v.error().message;
  EXPECT_FALSE(bzimage_version_from_bytes("", "k"));
  EXPECT_FALSE(bzimage_version_from_bytes(std::string(0x100, '\0'), "k"));
}

TEST(BzImage, RejectsMalformedVersionFields) {
  auto img = testing::make_bzimage("6.1.0");
  // Pointer past the end of what we have.
  img[0x20E] = '\xF0';
  img[0x20F] = '\xFF';
  EXPECT_FALSE(bzimage_version_from_bytes(img, "k"));
  // Zero pointer: no version recorded.
  img[0x20E] = 0;
  img[0x20F] = 0;
  EXPECT_FALSE(bzimage_version_from_bytes(img, "k"));
  // Unterminated string at the very end.
  std::string unterminated = "6.1.0-unterminated";
  auto cut = testing::make_bzimage(unterminated, static_cast<uint16_t>(0x1000 - 0x200 - unterminated.size() - 1));
  ASSERT_EQ(cut.size(), 0x1000u);
  cut.pop_back();  // the NUL
  EXPECT_FALSE(bzimage_version_from_bytes(cut, "k"));
  // A release that would escape lib/modules/<release>.
  EXPECT_FALSE(bzimage_version_from_bytes(testing::make_bzimage("../../etc"), "k"));
  EXPECT_FALSE(bzimage_version_from_bytes(testing::make_bzimage(".."), "k"));
  EXPECT_FALSE(bzimage_version_from_bytes(testing::make_bzimage(""), "k"));
}

TEST(BzImage, FileFunctions) {
  auto tmp = testing::temp_dir();
  testing::write(tmp.path() / "vmlinuz", testing::make_bzimage("6.1.0-file #1"));
  testing::write(tmp.path() / "garbage", "just text");
  EXPECT_TRUE(check_bzimage(tmp.path() / "vmlinuz"));
  auto v = bzimage_version(tmp.path() / "vmlinuz");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, "6.1.0-file");
  auto bad = check_bzimage(tmp.path() / "garbage");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("is not a Linux bzImage"), std::string::npos);
  EXPECT_FALSE(bzimage_version(tmp.path() / "absent"));
  EXPECT_FALSE(check_bzimage(tmp.path()));  // a directory
  ASSERT_EQ(::mkfifo((tmp.path() / "fifo").c_str(), 0600), 0);
  EXPECT_FALSE(check_bzimage(tmp.path() / "fifo"));  // must not block
  EXPECT_FALSE(bzimage_version(tmp.path() / "fifo"));
}

}  // namespace
}  // namespace kiln::image
