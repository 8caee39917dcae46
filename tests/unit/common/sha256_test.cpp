#include "common/sha256.h"

#include "common/temp_file.h"

#include <gtest/gtest.h>

#include <fstream>

namespace kiln {
namespace {

// FIPS 180-2 test vectors.
TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_digest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_digest("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, StreamEqualsOneShotAndContinuesAfterDigest) {
  Sha256Stream stream;
  stream.update("a");
  EXPECT_EQ(stream.digest(), sha256_digest("a"));
  stream.update("bc");
  EXPECT_EQ(stream.digest(), sha256_digest("abc"));
}

TEST(Sha256, FileDigest) {
  auto dir = fs::make_temp_dir(std::filesystem::temp_directory_path(), "kiln-sha256-test-");
  ASSERT_TRUE(dir) << dir.error().message;
  auto path = *dir / "f";
  std::ofstream(path) << "abc";
  auto digest = sha256_file(path);
  ASSERT_TRUE(digest) << digest.error().message;
  EXPECT_EQ(*digest, sha256_digest("abc"));
  EXPECT_FALSE(sha256_file(*dir / "missing"));
  std::filesystem::remove_all(*dir);
}

TEST(Sha256, DigestSyntax) {
  EXPECT_TRUE(is_sha256_digest(sha256_digest("x")));
  EXPECT_FALSE(is_sha256_digest("sha256:ABC"));
  EXPECT_FALSE(is_sha256_digest("sha512:" + std::string(64, 'a')));
  EXPECT_FALSE(is_sha256_digest("sha256:" + std::string(63, 'a')));
  EXPECT_FALSE(is_sha256_digest("sha256:" + std::string(63, 'a') + "g"));
}

}  // namespace
}  // namespace kiln
