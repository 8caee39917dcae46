#include "image/oci/registry_auth.h"

#include "common/fs.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace kiln::image {
namespace {

// base64("kiln:s3cret") and base64("hub:pw:with:colons").
constexpr const char* kKiln = "a2lsbjpzM2NyZXQ=";
constexpr const char* kHub = "aHViOnB3OndpdGg6Y29sb25z";

std::string config(const std::string& key, const std::string& auth) {
  return R"({"auths":{")" + key + R"(":{"auth":")" + auth + R"("}}})";
}

TEST(RegistryAuth, HostKeyGivesUserAndPassword) {
  auto c = credentials_from_auth_json(config("127.0.0.1:5000", kKiln), "127.0.0.1:5000", "cfg.json");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(c->has_value());
  EXPECT_EQ((*c)->username, "kiln");
  EXPECT_EQ((*c)->password, "s3cret");
}

TEST(RegistryAuth, KeysWithSchemeAndPathMatchTheHost) {
  auto c = credentials_from_auth_json(config("https://Registry.Example:5000/v2/", kKiln), "registry.example:5000",
                                      "cfg.json");
  ASSERT_TRUE(c && c->has_value());
  EXPECT_EQ((*c)->username, "kiln");
}

TEST(RegistryAuth, DockerHubsLegacyKey) {
  for (const char* name : {"docker.io", "index.docker.io", "registry-1.docker.io"}) {
    auto c = credentials_from_auth_json(config("https://index.docker.io/v1/", kHub), name, "cfg.json");
    ASSERT_TRUE(c && c->has_value()) << name;
    EXPECT_EQ((*c)->username, "hub");
    EXPECT_EQ((*c)->password, "pw:with:colons") << "only the first ':' separates";
  }
}

TEST(RegistryAuth, OtherHostsAndPortsDoNotMatch) {
  for (const char* name : {"127.0.0.1:5001", "127.0.0.1", "docker.io"}) {
    auto c = credentials_from_auth_json(config("127.0.0.1:5000", kKiln), name, "cfg.json");
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->has_value()) << name;
  }
  auto none = credentials_from_auth_json(R"({"credsStore":"desktop"})", "x.io", "cfg.json");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST(RegistryAuth, BadFilesNameTheFile) {
  for (const char* bad : {"{not json", "[]", R"({"auths":[]})", R"({"auths":{"h":{"auth":"!!notbase64"}}})",
                          R"({"auths":{"h":{"auth":"bm9jb2xvbg=="}}})", R"({"auths":{"h":{"identitytoken":"t"}}})"}) {
    auto c = credentials_from_auth_json(bad, "h", "/home/u/.docker/config.json");
    ASSERT_FALSE(c) << bad;
    EXPECT_NE(c.error().message.find("/home/u/.docker/config.json"), std::string::npos) << c.error().message;
  }
}

TEST(RegistryAuth, LoadReadsRegistryAuthFile) {
  auto dir = fs::TempDir::create(std::filesystem::temp_directory_path(), "kiln-auth-test-");
  ASSERT_TRUE(dir);
  auto file = dir->path() / "auth.json";
  ASSERT_TRUE(fs::write_file_atomic(file, config("reg.example", kKiln)));
  ::setenv("REGISTRY_AUTH_FILE", file.c_str(), 1);
  EXPECT_EQ(registry_auth_file(), file);
  auto c = load_registry_credentials("reg.example");
  ASSERT_TRUE(c && c->has_value()) << (c ? "" : c.error().message);
  EXPECT_EQ((*c)->password, "s3cret");

  ::setenv("REGISTRY_AUTH_FILE", (dir->path() / "missing.json").c_str(), 1);
  auto missing = load_registry_credentials("reg.example");
  ASSERT_FALSE(missing) << "a $REGISTRY_AUTH_FILE that does not exist is a mistake worth naming";
  EXPECT_NE(missing.error().message.find("missing.json"), std::string::npos);

  ::unsetenv("REGISTRY_AUTH_FILE");
  ::setenv("HOME", dir->path().c_str(), 1);
  ::unsetenv("DOCKER_CONFIG");
  auto absent = load_registry_credentials("reg.example");
  ASSERT_TRUE(absent) << "no ~/.docker/config.json: no credentials, no error";
  EXPECT_FALSE(absent->has_value());
}

}  // namespace
}  // namespace kiln::image
