// OCI images pulled from a real registry on loopback (Debian's docker-registry,
// started by scripts/test-registry), the way a user pulls: `kiln run --image
// 127.0.0.1:PORT/kiln-test/pg:15`. The images are pushed there with skopeo from the
// layouts tests/images/build-test-images made.
#include "vm_test_support.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kiln::vmtest {
namespace {

namespace fs = std::filesystem;


class ImageRegistry : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = run_argv({TEST_REGISTRY, "--watch", std::to_string(::getpid())});
    ASSERT_EQ(started.exit_code, 0) << started.err;
    addr_ = value_of(started.out, "ADDR");
    dir_ = value_of(started.out, "DIR");
    ASSERT_FALSE(addr_.empty()) << started.out;
    for (const char* name : {"pg", "pg-seeded"}) {
      auto pushed = run_argv({"skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                              "oci:" + (fs::path(KILN_TEST_IMAGES) / name).string() + ":15",
                              "docker://" + addr_ + "/kiln-test/" + name + ":15"});
      ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
    }
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) run_argv({TEST_REGISTRY, "--stop", dir_});
  }

  static KilnRun run(std::vector<std::string> args, const PrivateCache& cache) {
    std::vector<std::string> argv = {"run"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_kiln(argv, cache, {"KILN_INSECURE_REGISTRIES=" + addr_});
  }

  static inline std::string addr_;
  static inline std::string dir_;
};

TEST_F(ImageRegistry, RunsTheImagesPsqlFromTheRegistry) {
  PrivateCache cache;
  auto r = run({"--image", addr_ + "/kiln-test/pg:15", "--", "psql", "--version"}, cache);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("psql (PostgreSQL) 15."), std::string::npos) << r.out;
  // Pulled once: a second run needs no registry round trip for blobs it has.
  auto again = run({"--image", addr_ + "/kiln-test/pg:15", "--", "true"}, cache);
  EXPECT_EQ(again.exit_code, 0) << again.err;
  // (leftovers() would count the registry, a child of this test: look for kiln's own.)
  EXPECT_EQ(processes_mentioning(cache.path().string()), 0);
}

uintmax_t bytes_under(const fs::path& dir) {
  uintmax_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) bytes += e.file_size();
  return bytes;
}

// Two images sharing their base layer store it once: pulling the second adds only
// what it does not share (its small seed layer, config, manifest) to the blob store.
TEST_F(ImageRegistry, TwoImagesSharingABaseLayerStoreItOnce) {
  PrivateCache cache;
  auto pull = [&](const std::string& ref) {
    return run_kiln({"images", "pull", addr_ + ref}, cache, {"KILN_INSECURE_REGISTRIES=" + addr_});
  };
  auto first = pull("/kiln-test/pg:15");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const uintmax_t one = bytes_under(cache.path() / "images" / "blobs");
  auto second = pull("/kiln-test/pg-seeded:15");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  const uintmax_t two = bytes_under(cache.path() / "images" / "blobs");
  EXPECT_GT(one, 20u << 20) << "the base layer is in the store";
  EXPECT_LT(two - one, 1u << 20) << "the second image stored " << (two - one) << " more bytes";
}

TEST_F(ImageRegistry, AMissingTagIsAClearError) {
  PrivateCache cache;
  auto r = run({"--image", addr_ + "/kiln-test/pg:16", "--", "true"}, cache);
  EXPECT_EQ(r.exit_code, 125) << "a kiln error, not the command's not-found 127";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("pg:16"), std::string::npos) << r.err;
  EXPECT_EQ(processes_mentioning(cache.path().string()), 0);
}

std::string base64(const std::string& in) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<uint8_t>(in[i + 1]) << 8;
    if (i + 2 < in.size()) v |= static_cast<uint8_t>(in[i + 2]);
    out += kDigits[(v >> 18) & 63];
    out += kDigits[(v >> 12) & 63];
    out += i + 1 < in.size() ? kDigits[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? kDigits[v & 63] : '=';
  }
  return out;
}

// A registry as a team runs one: TLS with its own CA, Basic auth. kiln verifies the
// certificate against --registry-ca, takes the credentials from $REGISTRY_AUTH_FILE,
// and says what is missing when either is.
TEST(ImageRegistryTls, BasicAuthOverTlsWithTheRegistrysCa) {
  auto started = run_argv({TEST_REGISTRY, "--tls", "--htpasswd", "kiln:s3cret", "--watch", std::to_string(::getpid())});
  ASSERT_EQ(started.exit_code, 0) << started.err;
  const std::string addr = value_of(started.out, "ADDR");
  const std::string dir = value_of(started.out, "DIR");
  auto pushed = run_argv({"skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds", "kiln:s3cret",
                          "oci:" + (fs::path(KILN_TEST_IMAGES) / "bullseye").string() + ":11",
                          "docker://" + addr + "/kiln-test/bullseye:11"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  PrivateCache cache;
  // kiln's runs through a private cache get a /tmp of their own: the CA goes beside the cache.
  const std::string ca = (cache.path() / "ca.crt").string();
  fs::copy_file(value_of(started.out, "CA"), ca);
  const fs::path auth = cache.path() / "auth.json";
  std::ofstream(auth) << R"({"auths": {")" << addr << R"(": {"auth": ")" << base64("kiln:s3cret") << R"("}}})";
  const std::string ref = addr + "/kiln-test/bullseye:11";

  const fs::path no_auth = cache.path() / "no-auth.json";
  std::ofstream(no_auth) << R"({"auths": {}})";
  auto no_creds = run_kiln({"images", "pull", "--registry-ca", ca, ref}, cache, {"REGISTRY_AUTH_FILE=" + no_auth.string()});
  EXPECT_NE(no_creds.exit_code, 0);
  EXPECT_NE(no_creds.err.find("credentials"), std::string::npos) << no_creds.err;
  auto no_ca = run_kiln({"images", "pull", ref}, cache, {"REGISTRY_AUTH_FILE=" + auth.string()});
  EXPECT_NE(no_ca.exit_code, 0) << "TLS is verified: the test CA is nobody's";
  auto pulled = run_kiln({"run", "--registry-ca", ca, "--image", ref, "--", "cat", "/etc/debian_version"}, cache,
                         {"REGISTRY_AUTH_FILE=" + auth.string()});
  EXPECT_EQ(pulled.exit_code, 0) << pulled.err;
  EXPECT_EQ(pulled.out.substr(0, 3), "11.");
  run_argv({TEST_REGISTRY, "--stop", dir});
}

// `docker save` tarballs are images too (skopeo writes one from the layout here).
TEST(ImageArchive, ADockerArchiveRuns) {
  PrivateCache cache;
  const fs::path archive = cache.path() / "bullseye.tar";
  auto saved = run_argv({"skopeo", "copy", "--quiet",
                         "oci:" + (fs::path(KILN_TEST_IMAGES) / "bullseye").string() + ":11",
                         "docker-archive:" + archive.string() + ":kiln-test/bullseye:11"});
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  auto r = run_kiln({"run", "--image", "docker-archive:" + archive.string(), "--", "cat", "/etc/debian_version"}, cache);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 3), "11.");
  EXPECT_EQ(leftovers(cache), "");
}

}  // namespace
}  // namespace kiln::vmtest
