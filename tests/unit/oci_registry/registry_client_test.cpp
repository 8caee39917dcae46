#include "image/oci/registry_client.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace kiln::image {
namespace {

TEST(RegistryClient, DockerHubNamesMapToItsApiHost) {
  EXPECT_EQ(registry_api_host("docker.io"), "registry-1.docker.io");
  EXPECT_EQ(registry_api_host("index.docker.io"), "registry-1.docker.io");
  EXPECT_EQ(registry_api_host("Quay.IO"), "quay.io");
  EXPECT_EQ(registry_api_host("127.0.0.1:5000"), "127.0.0.1:5000");
}

TEST(RegistryClient, InsecureMeansExactlyTheListedHostAndPort) {
  ::unsetenv("KILN_INSECURE_REGISTRIES");
  RegistryOptions o;
  o.insecure_hosts = {"127.0.0.1:5000"};
  EXPECT_TRUE(is_insecure_registry("127.0.0.1:5000", o));
  EXPECT_FALSE(is_insecure_registry("127.0.0.1:5001", o));
  EXPECT_FALSE(is_insecure_registry("127.0.0.1", o));
  ::setenv("KILN_INSECURE_REGISTRIES", " localhost:7000 ,127.0.0.1:6000", 1);
  EXPECT_TRUE(is_insecure_registry("127.0.0.1:6000", o));
  EXPECT_TRUE(is_insecure_registry("localhost:7000", o));
  EXPECT_FALSE(is_insecure_registry("localhost", o));
  ::unsetenv("KILN_INSECURE_REGISTRIES");
}

TEST(RegistryClient, NamesAreCheckedBeforeAnyRequest) {
  RegistryOptions o;
  EXPECT_TRUE(make_registry_source("127.0.0.1:5000", "kiln-test/pg", o));
  EXPECT_TRUE(make_registry_source("docker.io", "library/debian", o));
  for (const char* repo : {"", "Upper/case", "a//b", "a/../b", "a?b", "a b", "/a"}) {
    EXPECT_FALSE(make_registry_source("127.0.0.1:5000", repo, o)) << repo;
  }
  for (const char* reg : {"", "host/path", "user@host", "host:port"}) {
    EXPECT_FALSE(make_registry_source(reg, "a/b", o)) << reg;
  }
  o.timeout_s = 0;
  EXPECT_FALSE(make_registry_source("127.0.0.1:5000", "a", o));
}

TEST(RegistryClient, BadReferencesAndDigestsAreRefusedWithoutARequest) {
  RegistryOptions o;
  o.max_retries = 0;
  o.timeout_s = 1;
  // Port 9 on loopback: nothing listens there, so a request would fail differently.
  auto src = make_registry_source("127.0.0.1:9", "a/b", o);
  ASSERT_TRUE(src);
  for (const char* ref : {"", "../x", "a b", "sha256:abc", "tag?x=1"}) {
    auto m = (*src)->manifest(ref);
    ASSERT_FALSE(m) << ref;
    EXPECT_NE(m.error().message.find("neither a tag nor a sha256 digest"), std::string::npos) << m.error().message;
  }
  auto b = (*src)->blob("sha256:../../x", 1, "/nonexistent", {});
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("not a sha256 digest"), std::string::npos);
}

}  // namespace
}  // namespace kiln::image
