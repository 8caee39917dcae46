// The registry client against real registries on loopback: plain HTTP, TLS with a
// private CA and Basic auth, token mode with the Bearer flow.
#include "tests/registry/registry_fixture.h"

#include "common/sha256.h"

namespace kiln::registry_test {
namespace {

constexpr const char* kOciManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr const char* kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";

image::RegistryOptions insecure(const Registry& r) {
  image::RegistryOptions o;
  o.insecure_hosts = {r.addr()};
  o.timeout_s = 5;
  o.max_retries = 2;
  return o;
}

class PlainRegistry : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto r = Registry::start({});
    ASSERT_TRUE(r) << r.error().message;
    registry_ = std::move(*r);
    ASSERT_TRUE(push(layout_, registry_->addr() + "/kiln-test/small:1"));
    ASSERT_TRUE(push(layout_, registry_->addr() + "/kiln-test/small:v2s2", {"--format", "v2s2"}));
  }
  std::unique_ptr<Registry> registry_;
};

TEST_F(PlainRegistry, ManifestByTagIsTheRegistrysBytesWithTheOciMediaType) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->media_type, kOciManifest);
  auto expected = raw_manifest(registry_->addr() + "/kiln-test/small:1");
  ASSERT_TRUE(expected) << expected.error().message;
  EXPECT_EQ(m->bytes, *expected);
}

TEST_F(PlainRegistry, ManifestByDigestIsTheSameManifest) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto by_tag = src->manifest("1");
  ASSERT_TRUE(by_tag) << by_tag.error().message;
  auto by_digest = src->manifest(sha256_digest(by_tag->bytes));
  ASSERT_TRUE(by_digest) << by_digest.error().message;
  EXPECT_EQ(by_digest->bytes, by_tag->bytes);
  EXPECT_EQ(by_digest->media_type, kOciManifest);
}

TEST_F(PlainRegistry, DockerV2ManifestKeepsItsMediaType) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("v2s2");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->media_type, kDockerManifest);
  EXPECT_NE(m->bytes.find(kDockerManifest), std::string::npos);
}

TEST_F(PlainRegistry, BlobsDownloadAndMatchTheirDigests) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  expect_blobs_verify(*src, m->bytes);
}

TEST_F(PlainRegistry, BlobResumesAfterThePrefixTheFileHolds) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  auto layer = nlohmann::json::parse(m->bytes)["layers"][1];
  std::string digest = layer["digest"];
  uint64_t size = layer["size"];
  // A first download, cut to its first half: what an interrupted attempt leaves.
  std::filesystem::path whole = scratch_->path() / "whole", part = scratch_->path() / "part";
  ASSERT_TRUE(fs::create_new_file(whole, 0644));
  ASSERT_TRUE(src->blob(digest, size, whole, {}));
  auto bytes = fs::read_file(whole, size);
  ASSERT_TRUE(bytes);
  ASSERT_TRUE(fs::write_file_atomic(part, bytes->substr(0, size / 2)));
  uint64_t first_progress = 0;
  auto r = src->blob(digest, size, part, [&](uint64_t done, uint64_t) {
    if (!first_progress) first_progress = done;
  });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_GT(first_progress, size / 2) << "the download continued after the prefix (Range), not from 0";
  EXPECT_EQ(*sha256_file(part), digest);
}

TEST_F(PlainRegistry, UnknownTagIsNotFoundAndNamesTheTag) {
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("no-such-tag");
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().kind, ErrorKind::not_found);
  EXPECT_NE(m.error().message.find("no-such-tag"), std::string::npos) << m.error().message;
}

TEST_F(PlainRegistry, InsecureHostsFromTheEnvironment) {
  ::setenv("KILN_INSECURE_REGISTRIES", ("example.invalid:1," + registry_->addr()).c_str(), 1);
  image::RegistryOptions o;
  o.timeout_s = 5;
  auto src = source(registry_->addr(), "kiln-test/small", o);
  auto m = src->manifest("1");
  ::unsetenv("KILN_INSECURE_REGISTRIES");
  ASSERT_TRUE(m) << m.error().message;
}

TEST_F(PlainRegistry, TlsIsTheDefaultSoAPlainHttpRegistryIsRefused) {
  image::RegistryOptions o;
  o.timeout_s = 5;
  o.max_retries = 0;
  auto src = source(registry_->addr(), "kiln-test/small", o);
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("https://" + registry_->addr()), std::string::npos) << m.error().message;
}

class TlsBasicRegistry : public RegistryTest {
 protected:
  void SetUp() override {
    RegistryTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto r = Registry::start({"--tls", "--htpasswd", "kiln:s3cret"});
    ASSERT_TRUE(r) << r.error().message;
    registry_ = std::move(*r);
    ASSERT_TRUE(push(layout_, registry_->addr() + "/kiln-test/small:1", {"--dest-creds", "kiln:s3cret"}));
    options_.ca_bundle = registry_->get("CA");
    options_.timeout_s = 5;
    options_.max_retries = 1;
  }
  std::unique_ptr<Registry> registry_;
  image::RegistryOptions options_;
};

TEST_F(TlsBasicRegistry, WithoutCredentialsTheErrorSaysHowToLogIn) {
  auto src = source(registry_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("asks for credentials"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("docker login " + registry_->addr()), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("REGISTRY_AUTH_FILE"), std::string::npos) << m.error().message;
}

TEST_F(TlsBasicRegistry, CredentialsAndTheCaPull) {
  set_auth(auth_json(registry_->addr(), "kiln", "s3cret"));
  auto src = source(registry_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->media_type, kOciManifest);
  expect_blobs_verify(*src, m->bytes);
}

TEST_F(TlsBasicRegistry, WithoutTheCaTlsVerificationRefuses) {
  set_auth(auth_json(registry_->addr(), "kiln", "s3cret"));
  options_.ca_bundle.clear();
  auto src = source(registry_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("TLS verification"), std::string::npos) << m.error().message;
}

TEST_F(TlsBasicRegistry, AWrongPasswordIsRefusedClearly) {
  set_auth(auth_json("https://" + registry_->addr() + "/v2/", "kiln", "wrong"));
  auto src = source(registry_->addr(), "kiln-test/small", options_);
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("refused access"), std::string::npos) << m.error().message;
  EXPECT_NE(m.error().message.find("user 'kiln'"), std::string::npos) << m.error().message;
}

class TokenRegistry : public RegistryTest {
 protected:
  void start(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"--token", "--token-user", "pusher:pw"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Registry::start(args);
    ASSERT_TRUE(r) << r.error().message;
    registry_ = std::move(*r);
    ASSERT_TRUE(push(layout_, registry_->addr() + "/kiln-test/small:1", {"--dest-creds", "pusher:pw"}));
  }
  std::unique_ptr<Registry> registry_;
};

TEST_F(TokenRegistry, AnonymousBearerTokenPulls) {
  start({});
  if (HasFatalFailure()) return;
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  expect_blobs_verify(*src, m->bytes);
}

TEST_F(TokenRegistry, TokenServiceGetsTheCredentialsAndAccessTokenFieldWorks) {
  start({"--token-field", "access_token"});
  if (HasFatalFailure()) return;
  set_auth(auth_json(registry_->addr(), "pusher", "pw"));
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_TRUE(m) << m.error().message;
  expect_blobs_verify(*src, m->bytes);
}

TEST_F(TokenRegistry, WrongCredentialsAtTheTokenServiceAreNamed) {
  start({});
  if (HasFatalFailure()) return;
  set_auth(auth_json(registry_->addr(), "pusher", "nope"));
  auto src = source(registry_->addr(), "kiln-test/small", insecure(*registry_));
  auto m = src->manifest("1");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message.find("refused the credentials of user 'pusher'"), std::string::npos)
      << m.error().message;
}

}  // namespace
}  // namespace kiln::registry_test
