#include "image/oci/reference.h"

#include <gtest/gtest.h>

#include <filesystem>

namespace kiln::image {
namespace {

const std::string kHex(64, 'a');
const std::string kDigest = "sha256:" + kHex;

struct Case {
  std::string text, registry, repository, tag, digest, canonical;
};

class ValidReference : public ::testing::TestWithParam<Case> {};

TEST_P(ValidReference, ParsesAndNormalises) {
  const auto& c = GetParam();
  auto r = parse_reference(c.text);
  ASSERT_TRUE(r) << c.text << ": " << r.error().message;
  EXPECT_EQ(r->kind, ReferenceKind::registry);
  EXPECT_EQ(r->registry, c.registry);
  EXPECT_EQ(r->repository, c.repository);
  EXPECT_EQ(r->tag, c.tag);
  EXPECT_EQ(r->digest, c.digest);
  EXPECT_EQ(r->canonical(), c.canonical);
  // The canonical form parses back to itself.
  auto again = parse_reference(r->canonical());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->canonical(), c.canonical);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ValidReference,
    ::testing::Values(
        Case{"debian:bookworm", "docker.io", "library/debian", "bookworm", "", "docker.io/library/debian:bookworm"},
        Case{"debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
        Case{"user/x", "docker.io", "user/x", "latest", "", "docker.io/user/x:latest"},
        Case{"docker.io/debian:12", "docker.io", "library/debian", "12", "", "docker.io/library/debian:12"},
        Case{"index.docker.io/user/x:1", "docker.io", "user/x", "1", "", "docker.io/user/x:1"},
        Case{"127.0.0.1:5000/kiln-test/pg:15", "127.0.0.1:5000", "kiln-test/pg", "15", "",
             "127.0.0.1:5000/kiln-test/pg:15"},
        Case{"localhost/a/b", "localhost", "a/b", "latest", "", "localhost/a/b:latest"},
        Case{"localhost:5000/a", "localhost:5000", "a", "latest", "", "localhost:5000/a:latest"},
        Case{"ghcr.io/org/team/img:v1.2.3-rc_1", "ghcr.io", "org/team/img", "v1.2.3-rc_1", "",
             "ghcr.io/org/team/img:v1.2.3-rc_1"},
        Case{"Registry.Example.COM/a", "Registry.Example.COM", "a", "latest", "", "Registry.Example.COM/a:latest"},
        Case{"[::1]:5000/a:t", "[::1]:5000", "a", "t", "", "[::1]:5000/a:t"},
        Case{"a__b/c-d--e/f.g_h", "docker.io", "a__b/c-d--e/f.g_h", "latest", "",
             "docker.io/a__b/c-d--e/f.g_h:latest"},
        Case{"debian@" + kDigest, "docker.io", "library/debian", "", kDigest, "docker.io/library/debian@" + kDigest},
        Case{"debian:bookworm@" + kDigest, "docker.io", "library/debian", "bookworm", kDigest,
             "docker.io/library/debian:bookworm@" + kDigest},
        Case{"reg.io:443/x@" + kDigest, "reg.io:443", "x", "", kDigest, "reg.io:443/x@" + kDigest},
        Case{"x:_tag", "docker.io", "library/x", "_tag", "", "docker.io/library/x:_tag"},
        Case{"x:" + std::string(128, 'T'), "docker.io", "library/x", std::string(128, 'T'), "",
             "docker.io/library/x:" + std::string(128, 'T')}));

class InvalidReference : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(InvalidReference, RefusedWithReason) {
  auto [text, expect] = GetParam();
  auto r = parse_reference(text);
  ASSERT_FALSE(r) << text << " parsed as " << r->canonical();
  EXPECT_NE(r.error().message.find(expect), std::string::npos) << text << ": " << r.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, InvalidReference,
    ::testing::Values(std::pair<std::string, std::string>{"", "empty"},
                      std::pair<std::string, std::string>{"Debian", "lowercase"},
                      std::pair<std::string, std::string>{"user/Debian:1", "lowercase"},
                      std::pair<std::string, std::string>{"a//b", "path component"},
                      std::pair<std::string, std::string>{"a/-b", "path component"},
                      std::pair<std::string, std::string>{"a/b.", "path component"},
                      std::pair<std::string, std::string>{"a___b", "path component"},
                      std::pair<std::string, std::string>{"x:", "tag ''"},
                      std::pair<std::string, std::string>{"x:-t", "not valid"},
                      std::pair<std::string, std::string>{"x:.t", "not valid"},
                      std::pair<std::string, std::string>{"x:" + std::string(129, 'a'), "1-128"},
                      std::pair<std::string, std::string>{"x:t!", "not valid"},
                      std::pair<std::string, std::string>{"x@sha256:abc", "64 lowercase hex"},
                      std::pair<std::string, std::string>{"x@sha256:" + std::string(64, 'A'), "64 lowercase hex"},
                      std::pair<std::string, std::string>{"x@sha512:" + std::string(128, 'a'), "only sha256"},
                      std::pair<std::string, std::string>{"x@" + std::string(64, 'a'), "ALGORITHM:HEX"},
                      std::pair<std::string, std::string>{"x@", "ALGORITHM:HEX"},
                      std::pair<std::string, std::string>{":tag", "no image name"},
                      std::pair<std::string, std::string>{"reg.io/", "no repository"},
                      std::pair<std::string, std::string>{"reg.io:99999/a", "port"},
                      std::pair<std::string, std::string>{"reg.io:abc/a", "port"},
                      std::pair<std::string, std::string>{"-reg.io/a", "host name"},
                      std::pair<std::string, std::string>{"[::1/a", "unclosed"},
                      std::pair<std::string, std::string>{"deb ian", "white space"},
                      std::pair<std::string, std::string>{"deb\nian", "control character"},
                      std::pair<std::string, std::string>{"reg.io/" + std::string(250, 'a'), "longer than 255"},
                      std::pair<std::string, std::string>{"oci:", "needs a directory"},
                      std::pair<std::string, std::string>{"oci::t", "needs a directory"},
                      std::pair<std::string, std::string>{"oci:/x:-bad", "not valid"},
                      std::pair<std::string, std::string>{"docker-archive:", "needs a file"}));

TEST(OciReference, LayoutWithTag) {
  auto r = parse_reference("oci:/var/images/pg:15");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, ReferenceKind::oci_layout);
  EXPECT_EQ(r->path, "/var/images/pg");
  EXPECT_EQ(r->tag, "15");
  EXPECT_EQ(r->canonical(), "oci:/var/images/pg:15");
  EXPECT_EQ(r->manifest_reference(), "15");
}

TEST(OciReference, LayoutWithoutTagAndRelativePath) {
  auto r = parse_reference("oci:some/dir/../layout");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->tag.empty());
  EXPECT_EQ(r->path, (std::filesystem::current_path() / "some/layout").lexically_normal());
  EXPECT_EQ(r->canonical(), "oci:" + r->path.string());
}

TEST(OciReference, DockerArchive) {
  auto r = parse_reference("docker-archive:/tmp/img:v1.tar");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->kind, ReferenceKind::docker_archive);
  EXPECT_EQ(r->path, "/tmp/img:v1.tar");  // the whole rest is the file
  EXPECT_EQ(r->canonical(), "docker-archive:/tmp/img:v1.tar");
}

TEST(OciReference, DigestWinsOverTagForTheManifestRequest) {
  auto r = parse_reference("debian:bookworm@" + kDigest);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->manifest_reference(), kDigest);
  EXPECT_EQ(parse_reference("debian:bookworm")->manifest_reference(), "bookworm");
}

TEST(OciReference, ErrorNamesTheReference) {
  auto r = parse_reference("Debian:bookworm");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "image reference 'Debian:bookworm': repository 'Debian' must be lowercase");
}

}  // namespace
}  // namespace kiln::image
